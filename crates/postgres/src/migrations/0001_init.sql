-- Perdure's schema on PostgreSQL: the same tables as the SQLite backend's
-- seven migrations, in their final shape. Times are milliseconds since the
-- Unix epoch (BIGINT); JSON columns hold JSON text, as on SQLite, so both
-- backends store byte-identical journals. Text that is sorted or compared
-- by order (instance ids, entity names and keys) has the "C" collation:
-- bytes, as SQLite's BINARY, whatever the database's locale, so listings
-- page in the same order on both backends.

-- Host settings (e.g. the generated master key) and function keys, stored
-- as sha256 hashes. `function` NULL means a host key.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE function_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    function   TEXT,
    hash       BYTEA NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);

-- Component bytes, content-addressed, kept while an instance refers to them.
CREATE TABLE components (
    digest     TEXT PRIMARY KEY,
    bytes      BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);

-- One row per orchestration instance; see the SQLite migrations for each
-- column's story.
CREATE TABLE instances (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT NOT NULL,
    app           TEXT NOT NULL,
    digest        TEXT NOT NULL REFERENCES components (digest),
    status        TEXT NOT NULL,
    input         TEXT NOT NULL,
    output        TEXT,
    custom_status TEXT,
    parent_id     TEXT,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    arrival_floor BIGINT NOT NULL DEFAULT 0,
    started_ms    BIGINT,
    parent_task   BIGINT,
    retry         TEXT,
    failures      BIGINT NOT NULL DEFAULT 0,
    generation    BIGINT NOT NULL DEFAULT 0,
    log_lines     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX instances_by_status ON instances (status, created_ms);
CREATE INDEX instances_by_created ON instances (created_ms, id);
CREATE INDEX instances_by_parent ON instances (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE journal (
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    request     TEXT NOT NULL,
    result      TEXT,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);

-- Task completions and external events, in arrival order. `arrival` comes
-- from a sequence: values are not committed in order across transactions,
-- so every write to an instance's inbox runs on the writer (one
-- transaction at a time per host) and, once several hosts share the
-- database, after locking the instance's row. The sequence is named, as
-- continue-as-new reads the last value it handed out (an instance's
-- `arrival_floor`, SQLite's `sqlite_sequence`), which stays right when the
-- rows with the largest arrivals are deleted.
CREATE TABLE inbox (
    arrival     BIGINT GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME inbox_arrival_seq) PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    task_id     BIGINT,
    name        TEXT,
    ok          BOOLEAN NOT NULL,
    payload     TEXT NOT NULL,
    at_ms       BIGINT NOT NULL
);
CREATE INDEX inbox_by_instance ON inbox (instance_id, arrival);
CREATE UNIQUE INDEX inbox_one_completion_per_task
    ON inbox (instance_id, task_id) WHERE task_id IS NOT NULL;

CREATE TABLE work_items (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id    TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    task_id        BIGINT NOT NULL,
    name           TEXT NOT NULL,
    input          TEXT NOT NULL,
    attempt        BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    created_ms     BIGINT NOT NULL,
    retry          TEXT,
    failures       BIGINT NOT NULL DEFAULT 0,
    UNIQUE (instance_id, task_id)
);
CREATE INDEX work_items_by_lease ON work_items (lease_until_ms);

CREATE TABLE timers (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    task_id     BIGINT,
    work_item   BIGINT,
    fire_at_ms  BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX timers_by_due ON timers (fire_at_ms);
CREATE INDEX timers_by_instance ON timers (instance_id, task_id);

CREATE TABLE task_attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    task_id     BIGINT NOT NULL,
    attempt     BIGINT NOT NULL,
    error       TEXT NOT NULL,
    failed_ms   BIGINT NOT NULL,
    retry_at_ms BIGINT NOT NULL
);
CREATE INDEX task_attempts_by_instance ON task_attempts (instance_id, task_id);

CREATE TABLE entities (
    name       TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    state      TEXT,
    locked_by  TEXT,
    last_op_ms BIGINT NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE INDEX entities_by_lock ON entities (locked_by) WHERE locked_by IS NOT NULL;

CREATE TABLE entity_ops (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    kind       TEXT NOT NULL,
    operation  TEXT,
    input      TEXT,
    sender     TEXT,
    reply_task BIGINT,
    locks      TEXT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX entity_ops_by_entity ON entity_ops (name, key, id);
CREATE INDEX entity_ops_by_sender ON entity_ops (sender) WHERE sender IS NOT NULL;

CREATE TABLE guest_logs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    at_ms       BIGINT NOT NULL,
    level       TEXT NOT NULL,
    function    TEXT NOT NULL,
    task_id     BIGINT,
    attempt     BIGINT,
    message     TEXT NOT NULL
);
CREATE INDEX guest_logs_by_instance ON guest_logs (instance_id, id);

CREATE TABLE instance_traces (
    instance_id TEXT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    generation  BIGINT NOT NULL,
    traceparent TEXT NOT NULL
);
