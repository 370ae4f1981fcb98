-- What the database has, read from the catalogs (league_import.constraints).

-- name: unique_indexes
-- A valid, non-partial unique index on exactly a key's columns satisfies it, whatever its name.
SELECT c.relname, array_agg(a.attname::text ORDER BY a.attname) AS columns
FROM pg_index ix
JOIN pg_class c ON c.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (ix.indkey)
WHERE ix.indisunique AND ix.indisvalid AND ix.indpred IS NULL
GROUP BY ix.indexrelid, c.relname;

-- name: foreign_keys
SELECT c.relname, a.attname::text, t.relname, con.conname::text, con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
JOIN pg_class t ON t.oid = con.confrelid
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
WHERE con.contype = 'f' AND cardinality(con.conkey) = 1;

-- name: table_columns
SELECT c.relname, a.attname::text
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped;

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

-- name: validate_foreign_key
ALTER TABLE {table} VALIDATE CONSTRAINT {name};

-- name: referencing_columns
-- Columns with a foreign key to the given table.
SELECT c.relname::text, a.attname::text
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
WHERE con.contype = 'f' AND con.confrelid = %(table)s::regclass;

-- name: unique_index_on
-- Whether a valid, non-partial unique index covers exactly these columns.
SELECT EXISTS (
    SELECT 1 FROM pg_index ix
    WHERE ix.indrelid = %(table)s::regclass AND ix.indisunique AND ix.indisvalid AND ix.indpred IS NULL
      AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
           WHERE a.attrelid = ix.indrelid AND a.attnum = ANY (ix.indkey)) = %(columns)s::text[]
);

-- name: column_facts
-- Whether each column of a table is NOT NULL.
SELECT a.attname::text, a.attnotnull
FROM pg_attribute a
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped;
