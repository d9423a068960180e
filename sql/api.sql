-- The analysts' API: views and lookups for psql users, and the read-only role's grants.

CREATE OR REPLACE VIEW dbdedup.errors AS
    SELECT path, error AS reason, error_detail AS detail, size_bytes, mtime, load_run_id, loaded_at
    FROM dbdedup.images
    WHERE status = 'error';
COMMENT ON VIEW dbdedup.errors IS 'Files that currently cannot be loaded, with the reason.';

CREATE OR REPLACE VIEW dbdedup.exact_duplicates AS
    SELECT sha256,
           count(*) AS copies,
           max(size_bytes) AS size_bytes,
           array_agg(path ORDER BY mtime_ns, path) AS paths
    FROM dbdedup.images
    WHERE status = 'ok'
    GROUP BY sha256
    HAVING count(*) > 1;
COMMENT ON VIEW dbdedup.exact_duplicates IS 'Groups of byte-identical files (same SHA-256), oldest first.';

CREATE OR REPLACE FUNCTION dbdedup.similar_to_hash(hash bigint, max_distance integer DEFAULT 8, hash_kind text DEFAULT 'phash')
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint)
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT i.id, i.path, bit_count((i.%1$I # $1)::bit(64))::integer AS distance, i.width, i.height, i.size_bytes
        FROM dbdedup.images i
        WHERE i.status = 'ok' AND bit_count((i.%1$I # $1)::bit(64)) <= $2
        ORDER BY 3, i.path
        $q$, dbdedup.hash_column(hash_kind))
    USING hash, max_distance;
END
$$;
COMMENT ON FUNCTION dbdedup.similar_to_hash(bigint, integer, text) IS
    'The ok images whose hash is within max_distance of a hash value, closest first (a scan: about 10 M images a second).';

CREATE OR REPLACE FUNCTION dbdedup.similar(image_id bigint, max_distance integer DEFAULT 8, hash_kind text DEFAULT 'phash')
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint)
    LANGUAGE sql STABLE
    AS $$
        SELECT s.* FROM dbdedup.images i,
             dbdedup.similar_to_hash(CASE $3 WHEN 'phash' THEN i.phash WHEN 'dhash' THEN i.dhash ELSE i.ahash END, $2, $3) s
        WHERE i.id = $1 AND s.image_id <> $1
    $$;
COMMENT ON FUNCTION dbdedup.similar(bigint, integer, text) IS
    'The images within max_distance of one image (itself excluded), closest first. Example: SELECT * FROM dbdedup.similar(42, 8).';

CREATE OR REPLACE FUNCTION dbdedup.similar(path text, max_distance integer DEFAULT 8, hash_kind text DEFAULT 'phash')
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint)
    LANGUAGE sql STABLE
    AS $$
        SELECT s.* FROM dbdedup.images i,
             dbdedup.similar(i.id, $2, $3) s
        WHERE i.path = $1
    $$;
COMMENT ON FUNCTION dbdedup.similar(text, integer, text) IS
    'The images within max_distance of the image stored at this path. Example: SELECT * FROM dbdedup.similar(''/photos/a.jpg'').';

CREATE OR REPLACE FUNCTION dbdedup.grant_read_access(role_name text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA dbdedup TO %I', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA dbdedup TO %I', role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION dbdedup.hamming(bigint, bigint), dbdedup.similar(bigint, integer, text), '
                   'dbdedup.similar(text, integer, text), dbdedup.similar_to_hash(bigint, integer, text), '
                   'dbdedup.is_under(text, text[]), dbdedup.hash_column(text), dbdedup.transform_name(integer, boolean), '
                   'dbdedup.best_transform(bigint, bigint[], bigint, bigint[]), dbdedup.vector_schema() TO %I', role_name);
END
$$;
COMMENT ON FUNCTION dbdedup.grant_read_access(text) IS
    'Let an existing role read every dbdedup table and view and call hamming() and similar(), without write rights. '
    'Example: CREATE ROLE analyst LOGIN; SELECT dbdedup.grant_read_access(''analyst'');';
