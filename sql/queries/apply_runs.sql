-- Queries of the apply-run record: what `dbdedup apply` did, so that `dbdedup undo` reverses only that.

-- name: record_run
-- Written (and committed) before apply touches a file.
INSERT INTO dbdedup.apply_runs (id, action, move_to, manifest)
VALUES (%(id)s, %(action)s, %(move_to)s, %(manifest)s)

-- name: record_actions
-- Every file the run may act on, with the names its manifest's intent lines will give.
COPY dbdedup.apply_actions (run_id, seq, image_id, path_bytes, destination_bytes, partial_bytes,
                            size_bytes, mtime_ns, sha256)
FROM STDIN

-- name: recorded_run
SELECT action, move_to FROM dbdedup.apply_runs WHERE id = %(id)s

-- name: recorded_actions
SELECT seq, path_bytes, destination_bytes, partial_bytes, size_bytes, mtime_ns, sha256
FROM dbdedup.apply_actions
WHERE run_id = %(id)s
ORDER BY seq
