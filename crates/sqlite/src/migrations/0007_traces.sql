-- The W3C traceparent of the request that started an instance, when it
-- carried one: its trace id becomes the instance's (and its children's).
-- It applies to the generation the instance was created with (a reused id
-- starts past the old instance's generations).
CREATE TABLE instance_traces (
    instance_id TEXT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    generation  INTEGER NOT NULL,
    traceparent TEXT NOT NULL
) STRICT, WITHOUT ROWID;
