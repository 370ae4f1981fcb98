-- What the database has, read from PostgreSQL's catalogs (league_import.pgcatalog): the one
-- place that reads pg_catalog. Schema-qualified names are passed as text and cast to regclass.

-- name: unique_indexes
-- A valid, non-partial unique index on exactly a key's columns satisfies it, whatever its name.
SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attname) AS columns
FROM pg_index ix
JOIN pg_class c ON c.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (ix.indkey)
WHERE ix.indisunique AND ix.indisvalid AND ix.indpred IS NULL
GROUP BY ix.indexrelid, c.relname;

-- name: foreign_keys
-- Single-column foreign keys of tables in public, with their target table and column.
SELECT c.relname::text, a.attname::text, t.relname::text, ta.attname::text, con.conname::text, con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
JOIN pg_class t ON t.oid = con.confrelid
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
JOIN pg_attribute ta ON ta.attrelid = con.confrelid AND ta.attnum = con.confkey[1]
WHERE con.contype = 'f' AND cardinality(con.conkey) = 1;

-- name: table_columns
-- Every column of every table in public, with whether it is NOT NULL.
SELECT c.relname::text, a.attname::text, a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum;

-- name: columns
-- One table's columns in order: name, type as declared, NOT NULL.
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;

-- name: unique_index_on
-- Whether a valid, non-partial unique index covers exactly these columns.
SELECT EXISTS (
    SELECT 1 FROM pg_index ix
    WHERE ix.indrelid = %(table)s::regclass AND ix.indisunique AND ix.indisvalid AND ix.indpred IS NULL
      AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
           WHERE a.attrelid = ix.indrelid AND a.attnum = ANY (ix.indkey)) = %(columns)s::text[]
);

-- name: table_exists
SELECT to_regclass(%(table)s) IS NOT NULL;

-- name: sequence_of
-- The sequence behind an identity or serial column, or NULL.
SELECT pg_get_serial_sequence(%(table)s, %(column)s);

-- name: foreign_key_definitions
-- The valid foreign keys of some tables in public, with their definitions (to be added back as
-- they were).
SELECT c.relname::text, k.conname::text, pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND k.convalidated AND n.nspname = 'public' AND c.relname = ANY (%(tables)s)
ORDER BY c.relname, k.conname;

-- name: unique_index_enforces
-- Whether a unique index enforces exactly these columns at once (not deferred), with NULLs equal
-- or no NULL possible: a write that would repeat the key fails on the index, statement by statement.
SELECT EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = %(table)s::regclass AND i.indisunique AND i.indisvalid AND i.indimmediate
      AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnatts = i.indnkeyatts
      AND (i.indnullsnotdistinct OR NOT %(nullable)s)
      AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a
           WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = %(columns)s::text[]
);

-- name: index_leads_with
-- Whether a valid, non-partial btree index has this column first (rows found by its value).
SELECT EXISTS (
    SELECT 1 FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_am a ON a.oid = c.relam
    JOIN pg_attribute att ON att.attrelid = i.indrelid AND att.attnum = i.indkey[0]
    WHERE i.indrelid = %(table)s::regclass AND i.indisvalid AND i.indpred IS NULL
      AND a.amname = 'btree' AND att.attname = %(column)s
);

-- name: advisory_lock_holder
-- The session holding an advisory lock, for a message naming it.
SELECT a.pid, a.application_name, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objid = %(key)s AND l.granted;

-- name: table_definition_columns
-- Every column with what the move changes on it: identity, generated, default, NOT NULL, and
-- the sequence behind an identity or serial column.
SELECT a.attname::text, a.attidentity <> '', a.attgenerated <> '', a.atthasdef, a.attnotnull,
       s.relname::text
FROM pg_attribute a
LEFT JOIN LATERAL (
    SELECT s.oid, s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND d.deptype IN ('a', 'i')
    LIMIT 1
) s ON true
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;

-- name: referenced_tables
-- The other tables a table's foreign keys point at (schema, name), in a fixed order for locking.
SELECT DISTINCT n.nspname::text, c.relname::text
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.conrelid = %(table)s::regclass AND k.contype = 'f' AND k.confrelid <> k.conrelid
ORDER BY 1, 2;

-- name: column_facts
-- One table's columns in order: name, type as declared, NOT NULL, and whether a value comes
-- without being given (a default, an identity, a generated expression).
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_attribute a
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;

-- name: table_constraints
-- A table's keys, exclusions and checks: name, kind (p, u, x, c), columns in key order, and the
-- definition as the catalog states it.
SELECT k.conname::text, k.contype::text,
       coalesce((SELECT array_agg(a.attname::text ORDER BY u.n)
                 FROM unnest(k.conkey) WITH ORDINALITY u(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum), '{{}}'),
       pg_get_constraintdef(k.oid)
FROM pg_constraint k
WHERE k.conrelid = %(table)s::regclass AND k.contype IN ('p', 'u', 'x', 'c')
ORDER BY k.conname;

-- name: triggers
-- The triggers a table's owner made (not those behind foreign keys), and whether each is enabled.
SELECT t.tgname::text, t.tgenabled <> 'D'
FROM pg_trigger t
WHERE t.tgrelid = %(table)s::regclass AND NOT t.tgisinternal
ORDER BY 1;

-- name: schema_exists
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s);
