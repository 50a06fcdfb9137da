-- Durable entities: their state, and the operations queued for them.

-- One row per entity that has state or holds a lock. `state` is JSON text;
-- NULL means the entity has no state (a row without state and without a
-- lock is deleted). `locked_by` is the orchestration instance whose
-- critical section holds the entity: only its operations run until it
-- unlocks or ends.
CREATE TABLE entities (
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    state      TEXT,
    locked_by  TEXT,
    last_op_ms INTEGER NOT NULL,
    PRIMARY KEY (name, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX entities_by_lock ON entities (locked_by) WHERE locked_by IS NOT NULL;

-- Operations waiting for their entity, in arrival order (`id`). `kind`:
--   'op'     runs `operation` with `input`; answers task `reply_task` of
--            instance `sender` if set (a call), otherwise nothing (a
--            signal);
--   'lock'   locks the entity for instance `sender`, then passes the lock
--            request on to the next entity of `locks` (JSON list of
--            [name, key] pairs), or answers `reply_task` if none is left;
--   'unlock' releases the entity if `sender` holds it.
-- An operation's row is deleted in the transaction that stores the state
-- it produced, so each runs exactly once.
CREATE TABLE entity_ops (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    kind       TEXT NOT NULL,
    operation  TEXT,
    input      TEXT,
    sender     TEXT,
    reply_task INTEGER,
    locks      TEXT,
    created_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX entity_ops_by_entity ON entity_ops (name, key, id);
CREATE INDEX entity_ops_by_sender ON entity_ops (sender) WHERE sender IS NOT NULL;
