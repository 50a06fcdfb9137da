-- Several hosts on one database: the hosts that run, and the partitions
-- they lease. An instance or entity belongs to partition
-- `partition_of(id) mod (number of rows here)`; the owner of a partition
-- runs its sessions, timers and entity batches.

-- A host that runs (or ran) on this database. `heartbeat` is the
-- database's clock at its last renewal: a host whose heartbeat is older
-- than a lease is presumed dead.
CREATE TABLE hosts (
    id         TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat  TIMESTAMPTZ NOT NULL
);

-- The leases. `epoch` grows at every change of owner: every write of a
-- partition checks, under a share lock on its row, that its epoch is the
-- one its host took, so a host that was paused past its lease can never
-- commit over its successor. `lease_until` is the database's clock; NULL
-- means released. The number of rows is fixed when the database is made.
CREATE TABLE partitions (
    id          INTEGER PRIMARY KEY,
    owner       TEXT,
    epoch       BIGINT NOT NULL DEFAULT 0,
    lease_until TIMESTAMPTZ
);
INSERT INTO partitions (id) SELECT generate_series(0, 63);
