-- Wake-ups for the owners of partitions: a host that writes for an
-- instance or entity of a partition it does not hold (an activity's
-- result, an event raised through it, a child's end, a signal) leaves a
-- row here in the same transaction and NOTIFYs `perdure_wake`. The owner
-- consumes its rows by deleting them, at the notification or at its next
-- poll; one row per target, however many writes.
CREATE TABLE wakeups (
    partition INTEGER NOT NULL,
    kind      CHAR(1) NOT NULL, -- 'i' instance, 'e' entity (`@name@key`)
    target    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (partition, kind, target)
);

-- The host that leased a work item (the writer's `perdure.host` setting,
-- see cluster.rs). A host that holds no live partition lease is dead: any
-- other host takes its items at once instead of after their lease.
ALTER TABLE work_items ADD COLUMN claimed_by TEXT DEFAULT current_setting('perdure.host', true);
