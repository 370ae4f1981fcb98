-- Checking and adding the declared constraints (league_import.constraints); what the database
-- has is read by league_import.pgcatalog.

-- name: duplicate_keys
-- Rows that block a UNIQUE key: how many keys repeat, how many extra rows, and the worst few.
WITH repeated AS (
    SELECT {key_json} AS key, count(*) AS copies
    FROM {table}
    GROUP BY {key}
    HAVING count(*) > 1
)
SELECT count(*), coalesce(sum(copies - 1), 0)::bigint,
       coalesce((SELECT jsonb_agg(jsonb_build_object('key', key, 'copies', copies))
                 FROM (SELECT * FROM repeated ORDER BY copies DESC LIMIT 5) worst), '[]'::jsonb)
FROM repeated;

-- name: orphans
-- Rows whose reference points at no row: they block a foreign key.
SELECT count(*), coalesce((array_agg(t.{column} ORDER BY t.{column}))[1:5], '{{}}')
FROM {table} t
WHERE t.{column} IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.{target_column} = t.{column});

-- name: add_unique
ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE NULLS NOT DISTINCT ({key});

-- name: add_foreign_key
ALTER TABLE {table} ADD CONSTRAINT {name}
    FOREIGN KEY ({column}) REFERENCES {target} ({target_column});

-- name: add_foreign_key_not_valid
ALTER TABLE {table} ADD CONSTRAINT {name}
    FOREIGN KEY ({column}) REFERENCES {target} ({target_column}) NOT VALID;

-- name: drop_constraint
ALTER TABLE {table} DROP CONSTRAINT {name};

-- name: add_as_defined
-- {definition}: the constraint as pg_get_constraintdef() of our own catalog gave it, never input.
ALTER TABLE {table} ADD CONSTRAINT {name} {definition};

-- name: validate_foreign_key
ALTER TABLE {table} VALIDATE CONSTRAINT {name};
