-- Queries of dbdedup/locks.py: the load lock (a session-level advisory lock) and who holds it.

-- name: try_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: unlock
SELECT pg_advisory_unlock(%(key)s);

-- name: application_name
SELECT current_setting('application_name');

-- name: set_application_name
SELECT set_config('application_name', %(name)s, false);

-- name: holders
-- The other sessions holding the advisory lock %(key)s in this database (a bigint key is
-- classid = its high 32 bits, objid = its low 32 bits, objsubid = 1), with what
-- pg_stat_activity tells about them. Another role's query and state are NULL unless this one
-- may read all statistics; its pid, role and application are always visible.
SELECT l.pid, a.usename AS role, nullif(a.application_name, '') AS application,
       host(a.client_addr) AS client, a.backend_start, a.xact_start, a.state, a.state_change,
       l.mode
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = ((%(key)s::bigint >> 32) & 4294967295)::oid
  AND l.objid = (%(key)s::bigint & 4294967295)::oid
  AND l.objsubid = 1
  AND l.pid <> pg_backend_pid()
ORDER BY l.pid;

-- name: running_load
-- The load run a session named 'dbdedup load' is most likely doing (the newest one still running).
SELECT id, started_at FROM dbdedup.load_runs WHERE status = 'running' ORDER BY id DESC LIMIT 1;
