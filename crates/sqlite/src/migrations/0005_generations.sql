-- Which generation of an instance is running: 0 at creation, one more at
-- each continue-as-new (or restart of a failed child); a new instance that
-- reuses a finished one's id starts one past it. Ids and random
-- numbers an orchestrator derives mix it in, so a new generation does not
-- repeat the previous one's child ids or guids.
ALTER TABLE instances ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
