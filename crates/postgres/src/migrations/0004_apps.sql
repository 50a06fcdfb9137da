-- The apps every host of the database serves: a version deployed on any
-- host (a file dropped into its folder, or `PUT /admin/apps`) is recorded
-- here, its bytes in `components`, and every host loads it. A removed app
-- keeps its row with a NULL digest, so that a host that was down when it
-- was removed removes its copy instead of publishing it again.
-- `updated_ms` is the publishing host's clock: the newer of a host's file
-- and this row wins when a host starts.
CREATE TABLE apps (
    name       TEXT COLLATE "C" PRIMARY KEY,
    digest     TEXT REFERENCES components (digest),
    config     TEXT,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
