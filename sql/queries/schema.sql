-- Queries of dbdedup/schema.py: installing the tables and re-applying the functions and views.

-- name: stored_checksum
SELECT checksum FROM dbdedup.schema_definitions;

-- name: reader_roles
-- Roles given read access (dbdedup.grant_read_access): USAGE on the schema, other than its owner.
SELECT a.grantee::regrole::text
FROM pg_namespace n, aclexplode(n.nspacl) a
WHERE n.nspname = 'dbdedup' AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner AND a.grantee <> 0;

-- name: drop_definitions
-- Every view, trigger and routine of schema dbdedup that no extension owns goes, in one
-- statement per kind so that dependencies among them need no CASCADE: an object of the user's
-- that depends on one of ours stops the upgrade with PostgreSQL's own message instead of
-- being dropped with it.
DO $$
DECLARE
    names text;
    t record;
BEGIN
    FOR t IN
        SELECT tg.tgname, c.relname
        FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
        WHERE c.relnamespace = 'dbdedup'::regnamespace AND NOT tg.tgisinternal
    LOOP
        EXECUTE format('DROP TRIGGER %I ON dbdedup.%I', t.tgname, t.relname);
    END LOOP;
    SELECT string_agg(c.oid::regclass::text, ', ') INTO names
    FROM pg_class c
    WHERE c.relnamespace = 'dbdedup'::regnamespace AND c.relkind IN ('v', 'm')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e');
    IF names IS NOT NULL THEN
        EXECUTE 'DROP VIEW ' || names;
    END IF;
    SELECT string_agg(p.oid::regprocedure::text, ', ') INTO names
    FROM pg_proc p
    WHERE p.pronamespace = 'dbdedup'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e');
    IF names IS NOT NULL THEN
        EXECUTE 'DROP ROUTINE ' || names;
    END IF;
END
$$;

-- name: forget_checksum
DELETE FROM dbdedup.schema_definitions;

-- name: enable_embeddings
SELECT dbdedup.enable_embeddings();

-- name: grant_read_access
SELECT dbdedup.grant_read_access(%(role)s);

-- name: record_checksum
INSERT INTO dbdedup.schema_definitions (checksum) VALUES (%(checksum)s)
ON CONFLICT (singleton) DO UPDATE SET checksum = excluded.checksum, applied_at = excluded.applied_at;
