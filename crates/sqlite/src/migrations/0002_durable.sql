-- Durable orchestrations: instances, their journals, their inboxes, the
-- work items they scheduled, and the component versions they run on.

-- Component bytes, content-addressed, kept while an instance refers to them
-- (an instance runs to completion on the version it started with).
CREATE TABLE components (
    digest     TEXT PRIMARY KEY,
    bytes      BLOB NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;

-- One row per orchestration instance. `status` is the runtime status as the
-- HTTP API names it (Pending, Running, Completed, ...). JSON columns hold
-- JSON text.
CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    app           TEXT NOT NULL,
    digest        TEXT NOT NULL REFERENCES components (digest),
    status        TEXT NOT NULL,
    input         TEXT NOT NULL,
    output        TEXT,
    custom_status TEXT,
    parent_id     TEXT,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX instances_by_status ON instances (status, created_ms);
CREATE INDEX instances_by_created ON instances (created_ms, id);

-- Every host call an orchestrator made, in order, with its request and its
-- result; replay answers calls from here and checks them against it.
CREATE TABLE journal (
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    request     TEXT NOT NULL,
    result      TEXT,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (instance_id, seq)
) STRICT, WITHOUT ROWID;

-- What reached an instance from outside its own execution, in arrival
-- order: task completions (activity results) and external events.
CREATE TABLE inbox (
    arrival     INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    task_id     INTEGER,
    name        TEXT,
    ok          INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    at_ms       INTEGER NOT NULL
) STRICT;
CREATE INDEX inbox_by_instance ON inbox (instance_id, arrival);
CREATE UNIQUE INDEX inbox_one_completion_per_task
    ON inbox (instance_id, task_id) WHERE task_id IS NOT NULL;

-- Activities waiting to run or running. A worker holds a lease until
-- `lease_until_ms`; an expired lease makes the item runnable again, so an
-- activity runs at least once.
CREATE TABLE work_items (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id    TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    task_id        INTEGER NOT NULL,
    name           TEXT NOT NULL,
    input          TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    lease_until_ms INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    UNIQUE (instance_id, task_id)
) STRICT;
CREATE INDEX work_items_by_lease ON work_items (lease_until_ms);
