-- Queries of dbdedup/locks.py: the load lock (a session-level advisory lock) and who holds it.

-- name: try_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: unlock
SELECT pg_advisory_unlock(%(key)s);

-- name: lock
-- Waits in the lock's queue (bounded by lock_timeout, set by the caller): a session asking for the
-- lock in shared mode after this one is queued behind it.
SELECT pg_advisory_lock(%(key)s);

-- name: set_lock_timeout
SELECT set_config('lock_timeout', %(timeout)s, true);

-- name: try_lock_shared
-- Loads hold the load lock shared: any number at once, and no match meanwhile.
SELECT pg_try_advisory_lock_shared(%(key)s);

-- name: unlock_shared
SELECT pg_advisory_unlock_shared(%(key)s);

-- name: try_lock_pair
-- A lock of a class on one object (two int4 keys: classid, objid, objsubid = 2): one per root, one per load run.
SELECT pg_try_advisory_lock(%(classid)s::int, %(objid)s::int);

-- name: unlock_pair
SELECT pg_advisory_unlock(%(classid)s::int, %(objid)s::int);

-- name: root_key
-- The object key of a root's lock: a hash of its path (two roots sharing a hash only wait for each other).
SELECT hashtext(%(root)s);

-- name: application_name
SELECT current_setting('application_name');

-- name: set_application_name
SELECT set_config('application_name', %(name)s, false);

-- name: holders
-- The other sessions holding an advisory lock in this database (a bigint key is classid = its high
-- 32 bits, objid = its low 32 bits, objsubid = 1; two int4 keys are classid, objid, objsubid = 2),
-- with what pg_stat_activity tells about them. Another role's query and state are NULL unless this
-- one may read all statistics; its pid, role and application are always visible.
SELECT l.pid, a.usename AS role, nullif(a.application_name, '') AS application,
       host(a.client_addr) AS client, a.backend_start, a.xact_start, a.state, a.state_change,
       l.mode
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %(classid)s::bigint::oid
  AND l.objid = %(objid)s::bigint::oid
  AND l.objsubid = %(objsubid)s
  AND l.pid <> pg_backend_pid()
ORDER BY l.pid;

-- name: running_load
-- The load run a session named 'dbdedup load' is doing: the one whose run lock it holds (a load
-- holds the lock of its run; see dbdedup.locks.hold_run), else the newest one still running.
SELECT r.id, r.started_at
FROM dbdedup.load_runs r
WHERE r.status = 'running'
ORDER BY r.id IN (SELECT l.objid::bigint FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.classid = %(run_class)s::bigint::oid AND l.objsubid = 2
                    AND l.pid = %(pid)s) DESC,
         r.id DESC
LIMIT 1;

-- name: live_runs
-- The load runs whose loader still holds their run lock (the others still 'running' were killed).
SELECT l.objid::bigint AS run_id
FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %(run_class)s::bigint::oid AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
