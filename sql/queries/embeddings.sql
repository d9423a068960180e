-- Queries of dbdedup/embedding_index.py: the stored reductions, projecting raw descriptors to
-- vectors, and the pgvector index. {vector_schema} is filled in with pgvector's schema.

-- name: enable
SELECT dbdedup.enable_embeddings() AS available;

-- name: projection_lock
-- One projection at a time (until the transaction ends): two loads that finish together would
-- otherwise both fit a reduction, or drop and build the index under each other.
SELECT pg_advisory_xact_lock(7220006);

-- name: reduction
SELECT reduction, index_method, fitted_rows, fitted_at, raw_dim FROM dbdedup.embedding_reductions WHERE embedder = %(embedder)s;

-- name: latest_embedder
-- The embedder of the most recent descriptors (what `refit` refits when none is named).
SELECT e.embedder FROM dbdedup.image_embeddings e JOIN dbdedup.images i ON i.id = e.image_id
ORDER BY i.change_seq DESC LIMIT 1;

-- name: fit_sample
-- A fixed pseudo-random sample of the embedder's descriptors (the same rows on every call), one per
-- group of byte-identical files so that many copies of one picture do not steer the PCA.
SELECT raw FROM (
    SELECT DISTINCT ON (i.sha256) e.image_id, e.raw
    FROM dbdedup.image_embeddings e JOIN dbdedup.images i ON i.id = e.image_id
    WHERE e.embedder = %(embedder)s AND i.status = 'ok'
    ORDER BY i.sha256, e.image_id
) d
ORDER BY hashint8(image_id), image_id LIMIT %(limit)s;

-- name: fit_rows
-- How many rows fit_sample would draw from (one per group of byte-identical files): the rows a refit compares
-- with the rows the stored reduction was fitted on.
SELECT count(DISTINCT i.sha256)
FROM dbdedup.image_embeddings e JOIN dbdedup.images i ON i.id = e.image_id
WHERE e.embedder = %(embedder)s AND i.status = 'ok';

-- name: store_reduction
INSERT INTO dbdedup.embedding_reductions (embedder, raw_dim, dim, reduction, fitted_rows, fitted_at, index_method)
VALUES (%(embedder)s, %(raw_dim)s, %(dim)s, %(reduction)s, %(fitted_rows)s, now(), %(index_method)s)
ON CONFLICT (embedder) DO UPDATE SET raw_dim = EXCLUDED.raw_dim, dim = EXCLUDED.dim, reduction = EXCLUDED.reduction,
    fitted_rows = EXCLUDED.fitted_rows, fitted_at = EXCLUDED.fitted_at, index_method = EXCLUDED.index_method;

-- name: set_index_method
-- The index kind the user chose last: later rebuilds keep it.
UPDATE dbdedup.embedding_reductions SET index_method = %(index_method)s WHERE embedder = %(embedder)s;

-- name: any_descriptor
SELECT EXISTS (SELECT 1 FROM dbdedup.image_embeddings WHERE embedder = %(embedder)s);

-- name: counts
-- The vectors projected, those to project, and the rows with anything to write: a row with its embedding but no
-- turn signature or crop windows, from a database loaded before there were any, is pending too (they come from
-- the stored thumbnail, no file read), without counting as a new vector (no refit, no new index for it).
SELECT count(*) FILTER (WHERE embedding IS NOT NULL) AS projected,
       count(*) FILTER (WHERE embedder = %(embedder)s AND embedding IS NULL) AS new_vectors,
       count(*) FILTER (WHERE embedder = %(embedder)s
                          AND (embedding IS NULL OR turn_signature IS NULL OR crop_windows IS NULL)) AS pending
FROM dbdedup.image_embeddings;

-- name: vector_count
SELECT count(*) FROM dbdedup.image_embeddings e JOIN dbdedup.images i ON i.id = e.image_id
WHERE i.status = 'ok' AND e.embedding IS NOT NULL;

-- name: any_vector
SELECT EXISTS (SELECT 1 FROM dbdedup.image_embeddings WHERE embedding IS NOT NULL);

-- name: pending
-- Each descriptor to project, whether its embedding is new, and whether its turn signature or its crop windows
-- are missing (the loader's workers compute them; a row loaded before there were any, or on Citus, gets them
-- from the stored thumbnail, read only for those rows: 4 kB an image).
SELECT e.image_id, e.raw, e.embedding IS NULL AS new_embedding, e.turn_signature IS NULL AS missing_turn,
       CASE WHEN e.turn_signature IS NULL OR e.crop_windows IS NULL THEN i.structure END AS structure,
       e.crop_windows IS NULL AS missing_windows
FROM dbdedup.image_embeddings e JOIN dbdedup.images i ON i.id = e.image_id
WHERE e.embedder = %(embedder)s AND (e.embedding IS NULL OR e.turn_signature IS NULL OR e.crop_windows IS NULL);

-- name: forget_vectors
-- Before a refit: every vector of the embedder is projected again (the turn signatures, which need no
-- fit, are kept).
UPDATE dbdedup.image_embeddings SET embedding = NULL WHERE embedder = %(embedder)s AND embedding IS NOT NULL;

-- name: forget_embedding_pairs
-- New vectors, new neighbours (or turn signatures and crop windows written late, which the neighbour searches
-- use): the next match computes the embedding pairs again for every image.
DELETE FROM dbdedup.signal_state WHERE signal = 'embeddings';

-- name: create_update_table
CREATE TEMP TABLE IF NOT EXISTS dbdedup_vectors (image_id bigint NOT NULL, embedding {vector_schema}.vector NOT NULL);

-- name: create_turn_table
CREATE TEMP TABLE IF NOT EXISTS dbdedup_turns (image_id bigint NOT NULL, turn_signature {vector_schema}.vector NOT NULL);

-- name: copy_update_table
COPY dbdedup_vectors (image_id, embedding) FROM STDIN (FORMAT BINARY);

-- name: apply_update_table
UPDATE dbdedup.image_embeddings e SET embedding = v.embedding
FROM dbdedup_vectors v WHERE e.image_id = v.image_id;

-- name: copy_turn_table
COPY dbdedup_turns (image_id, turn_signature) FROM STDIN (FORMAT BINARY);

-- name: apply_turn_table
UPDATE dbdedup.image_embeddings e SET turn_signature = t.turn_signature
FROM dbdedup_turns t WHERE e.image_id = t.image_id;

-- name: create_windows_table
CREATE TEMP TABLE IF NOT EXISTS dbdedup_windows (image_id bigint NOT NULL, crop_windows bigint[] NOT NULL);

-- name: copy_windows_table
COPY dbdedup_windows (image_id, crop_windows) FROM STDIN;

-- name: apply_windows_table
UPDATE dbdedup.image_embeddings e SET crop_windows = w.crop_windows
FROM dbdedup_windows w WHERE e.image_id = w.image_id;

-- name: requeue_matched
-- Images that get their vector after a match already saw them (a load stopped before its vectors were
-- written; the next load writes them): a new change_seq, so the next incremental match searches their
-- neighbours too, as a full match would.
-- One change_seq for the statement (a subquery): Citus runs no volatile function per row of a distributed UPDATE.
UPDATE dbdedup.images i SET change_seq = (SELECT nextval('dbdedup.change_seq'))
FROM dbdedup_vectors v
WHERE i.id = v.image_id
  AND i.change_seq <= (SELECT coalesce(max(s.matched_seq), -1) FROM dbdedup.signal_state s WHERE s.signal = 'embeddings');

-- name: empty_update_table
TRUNCATE dbdedup_vectors, dbdedup_turns, dbdedup_windows;

-- name: index_method
SELECT CASE WHEN pg_get_indexdef(x.indexrelid) LIKE '%%USING ivfflat%%' THEN 'ivfflat' ELSE 'hnsw' END AS method
FROM pg_index x WHERE x.indexrelid = to_regclass('dbdedup.image_embeddings_vector_idx');

-- name: drop_index
DROP INDEX IF EXISTS dbdedup.image_embeddings_vector_idx;

-- name: drop_turn_index
-- (a statement of its own: Citus drops one distributed object a command)
DROP INDEX IF EXISTS dbdedup.image_embeddings_turn_idx;

-- name: build_index
SELECT dbdedup.build_embedding_index(%(method)s) AS index;
