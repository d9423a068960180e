-- bench/verify_bench.py --memory: every pair of the loaded images as a pending embedding neighbour
-- (similarity 0.5: the workers reject it as weak_embedding without reading a file).
INSERT INTO dbdedup.pairs (image_a, image_b, hash_kind, distance, is_exact, similarity)
SELECT x.id, y.id, 'phash', bit_count((x.phash # y.phash)::bit(64)), false, 0.5
FROM dbdedup.images x JOIN dbdedup.images y ON x.id < y.id
WHERE x.status = 'ok' AND y.status = 'ok';
