-- 0003 down: back to hash-only matching (the signals are derived data; raw descriptors and variants go).
DROP PROCEDURE IF EXISTS dbdedup.refresh(integer, text);
DROP FUNCTION IF EXISTS dbdedup.build_clusters(integer, text, text, text[], text, real, integer, integer);
DROP FUNCTION IF EXISTS dbdedup.inverse_transform(text);
DROP FUNCTION IF EXISTS dbdedup.pair_is_edge(text, integer, integer, real, integer, integer, integer, real);
DROP FUNCTION IF EXISTS dbdedup.match_embeddings(real, integer, boolean);
DROP FUNCTION IF EXISTS dbdedup.match_transforms(integer, text, boolean);
DROP FUNCTION IF EXISTS dbdedup.signal_is_full(dbdedup.signal_state, boolean);
DROP FUNCTION IF EXISTS dbdedup.best_transform(bigint, bigint[], bigint, bigint[]);
DROP FUNCTION IF EXISTS dbdedup.transform_name(integer, boolean);
DROP FUNCTION IF EXISTS dbdedup.build_embedding_index(text, integer);
DROP FUNCTION IF EXISTS dbdedup.enable_embeddings();
DROP TABLE IF EXISTS dbdedup.image_embeddings;
DROP FUNCTION IF EXISTS dbdedup.vector_schema();
DROP TABLE IF EXISTS dbdedup.embedding_reductions;
DROP TABLE IF EXISTS dbdedup.signal_state;
DROP VIEW IF EXISTS dbdedup.clusters;
DROP VIEW IF EXISTS dbdedup.cluster_members;
ALTER TABLE dbdedup.cluster_assignments DROP COLUMN IF EXISTS transform, DROP COLUMN IF EXISTS similarity;
ALTER TABLE dbdedup.cluster_parameters DROP COLUMN IF EXISTS rule, DROP COLUMN IF EXISTS min_similarity,
    DROP COLUMN IF EXISTS confirm_distance, DROP COLUMN IF EXISTS transform_distance, DROP COLUMN IF EXISTS signals_seq;
DROP INDEX IF EXISTS dbdedup.pairs_similarity_idx;
ALTER TABLE dbdedup.pairs DROP COLUMN IF EXISTS transform, DROP COLUMN IF EXISTS transform_distance, DROP COLUMN IF EXISTS similarity;
ALTER TABLE dbdedup.images DROP COLUMN IF EXISTS phash_variants;
