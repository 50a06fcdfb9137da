-- Durable timers, retries, sub-orchestrations and continue-as-new.

-- The largest inbox arrival when the current generation started; older
-- messages that are not in the inbox belong to an earlier generation.
ALTER TABLE instances ADD COLUMN arrival_floor INTEGER NOT NULL DEFAULT 0;
-- When the current generation of an instance started (continue-as-new
-- starts a new one); the orchestration clock starts here. NULL means
-- `created_ms`.
ALTER TABLE instances ADD COLUMN started_ms INTEGER;
-- For a sub-orchestration: the parent's task that awaits this instance,
-- the retry policy of that task (JSON) and how many attempts failed.
ALTER TABLE instances ADD COLUMN parent_task INTEGER;
ALTER TABLE instances ADD COLUMN retry TEXT;
ALTER TABLE instances ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
CREATE INDEX instances_by_parent ON instances (parent_id) WHERE parent_id IS NOT NULL;

-- An activity's retry policy (JSON) and how many of its attempts failed
-- (lease expiries are not failures: they re-run the same attempt).
ALTER TABLE work_items ADD COLUMN retry TEXT;
ALTER TABLE work_items ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;

-- Durable timers. `kind` says what firing does:
--   'timer'   completes task `task_id` of the instance (result null);
--   'retry'   runs work item `work_item` again (a retry after backoff);
--   'restart' runs the failed sub-orchestration `instance_id` again.
-- A pending timer is a row, nothing more: one task fires them all.
CREATE TABLE timers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    task_id     INTEGER,
    work_item   INTEGER,
    fire_at_ms  INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX timers_by_due ON timers (fire_at_ms);
CREATE INDEX timers_by_instance ON timers (instance_id, task_id);

-- Failed attempts of tasks that retry, for the history: which task, which
-- attempt, why it failed and when the next attempt is due.
CREATE TABLE task_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    task_id     INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    error       TEXT NOT NULL,
    failed_ms   INTEGER NOT NULL,
    retry_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX task_attempts_by_instance ON task_attempts (instance_id, task_id);
