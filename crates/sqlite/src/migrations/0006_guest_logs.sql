-- What orchestrators and activities logged (the `logging` interface, stdout
-- and stderr), for the dashboard and the API. Bounded per instance (see
-- storage/observe.rs); deleted with the instance.
CREATE TABLE guest_logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    at_ms       INTEGER NOT NULL,
    level       TEXT NOT NULL,
    function    TEXT NOT NULL,
    task_id     INTEGER,
    attempt     INTEGER,
    message     TEXT NOT NULL
) STRICT;
CREATE INDEX guest_logs_by_instance ON guest_logs (instance_id, id);
-- Lines stored per instance since its last trim, so that trimming runs
-- only once the instance has many more than it keeps.
ALTER TABLE instances ADD COLUMN log_lines INTEGER NOT NULL DEFAULT 0;
