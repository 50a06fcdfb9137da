-- Host settings (e.g. the generated master key) and function keys.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- Function keys are stored as sha256 hashes; the key itself is shown once.
-- `function` NULL means a host key, valid for every function.
CREATE TABLE function_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    function   TEXT,
    hash       BLOB NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
) STRICT;
