-- The W3C traceparent of the request that started an instance, when it
-- carried one: its trace id becomes the instance's (and its children's).
CREATE TABLE instance_traces (
    instance_id TEXT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    traceparent TEXT NOT NULL
) STRICT, WITHOUT ROWID;
