-- Device groups: a tree. `path` is not stored; it is computed on read from
-- the chain of parents, so renames never leave stale paths behind.
CREATE TABLE device_groups (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    parent_id   TEXT    REFERENCES device_groups (id) ON DELETE RESTRICT,
    tags        TEXT    NOT NULL DEFAULT '{}', -- JSON object of string → string
    created_at  TEXT    NOT NULL,              -- RFC 3339, UTC, milliseconds
    updated_at  TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- Names are unique among siblings. Top-level groups have a NULL parent, and
-- NULLs never collide in a plain UNIQUE index, hence the COALESCE.
CREATE UNIQUE INDEX device_groups_sibling_name
    ON device_groups (COALESCE(parent_id, ''), name);

-- Who changed what, written in the same transaction as the change.
CREATE TABLE audit_log (
    seq            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at             TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    object_kind    TEXT    NOT NULL,
    object_id      TEXT    NOT NULL,
    before_version INTEGER,
    after_version  INTEGER
) STRICT;

CREATE INDEX audit_log_object ON audit_log (object_kind, object_id, seq);
