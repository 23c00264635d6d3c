-- Fleet objects: devices, policies and their attachments, firmware releases
-- and rollouts. JSON columns hold values already validated by the domain
-- rules; the relational columns carry everything other rows depend on.

-- Device groups gain dynamic membership and desired configuration.
ALTER TABLE device_groups ADD COLUMN query TEXT;                         -- NULL: no dynamic members
ALTER TABLE device_groups ADD COLUMN config TEXT NOT NULL DEFAULT '{}';  -- JSON object

CREATE TABLE devices (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    hardware         TEXT    NOT NULL,
    attributes       TEXT    NOT NULL DEFAULT '{}', -- JSON object of string → string
    -- Reported by the device itself (device API), never by the admin API.
    firmware_version TEXT,
    last_seen        TEXT,
    health           TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    version          INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- Static group membership. Deleting a device or a group drops its
-- memberships (the store bumps the version of the devices affected).
CREATE TABLE device_group_members (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    group_id  TEXT NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, group_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX device_group_members_group ON device_group_members (group_id, device_id);

CREATE TABLE policies (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    description    TEXT    NOT NULL DEFAULT '',
    statements     TEXT    NOT NULL,           -- JSON array of statements
    policy_version INTEGER NOT NULL CHECK (policy_version >= 1),
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- The statements of each policy version; old ones are pruned on write.
CREATE TABLE policy_versions (
    policy_id      TEXT    NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    policy_version INTEGER NOT NULL,
    statements     TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    PRIMARY KEY (policy_id, policy_version)
) STRICT, WITHOUT ROWID;

-- Exactly one target. certificate_id has no foreign key: certificates live
-- in a later migration, and their existence is checked on write.
CREATE TABLE policy_attachments (
    id             TEXT    NOT NULL PRIMARY KEY,
    policy_id      TEXT    NOT NULL REFERENCES policies (id) ON DELETE RESTRICT,
    group_id       TEXT    REFERENCES device_groups (id) ON DELETE RESTRICT,
    certificate_id TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    CHECK ((group_id IS NULL) <> (certificate_id IS NULL))
) STRICT;

CREATE UNIQUE INDEX policy_attachments_group ON policy_attachments (group_id, policy_id)
    WHERE group_id IS NOT NULL;
CREATE UNIQUE INDEX policy_attachments_certificate
    ON policy_attachments (certificate_id, policy_id) WHERE certificate_id IS NOT NULL;
CREATE INDEX policy_attachments_policy ON policy_attachments (policy_id);

-- Immutable firmware releases.
CREATE TABLE firmware (
    id                 TEXT    NOT NULL PRIMARY KEY,
    product            TEXT    NOT NULL,
    release_version    TEXT    NOT NULL,        -- semver, canonical form
    hardware           TEXT    NOT NULL,        -- JSON array of models
    url                TEXT    NOT NULL,
    sha256             TEXT    NOT NULL,        -- lowercase hex
    size_bytes         INTEGER NOT NULL CHECK (size_bytes > 0),
    signature          TEXT,                    -- base64 Ed25519 signature
    signature_verified INTEGER NOT NULL DEFAULT 0 CHECK (signature_verified IN (0, 1)),
    created_at         TEXT    NOT NULL,
    UNIQUE (product, release_version)
) STRICT;

CREATE TABLE rollouts (
    id                 TEXT    NOT NULL PRIMARY KEY,
    name               TEXT    NOT NULL,
    firmware_id        TEXT    NOT NULL REFERENCES firmware (id) ON DELETE RESTRICT,
    target_group_ids   TEXT    NOT NULL,              -- JSON array, as given
    phases             TEXT    NOT NULL DEFAULT '[]', -- JSON array of {percent, soak}
    rate               TEXT,                          -- JSON {per_minute, growth_factor}
    failure_threshold  TEXT    NOT NULL,              -- JSON {percent, min_devices, action}
    device_timeout     TEXT    NOT NULL,
    max_retries        INTEGER NOT NULL,
    start_at           TEXT,
    maintenance_window TEXT,                          -- JSON {days, start, duration}
    continuous         INTEGER NOT NULL CHECK (continuous IN (0, 1)),
    state              TEXT    NOT NULL CHECK (state IN ('running', 'paused', 'cancelled')),
    -- Written by the rollout engine; O(1) to read.
    status             TEXT    NOT NULL,
    current_phase      INTEGER NOT NULL DEFAULT 0,
    count_targeted     INTEGER NOT NULL DEFAULT 0,
    count_pending      INTEGER NOT NULL DEFAULT 0,
    count_in_progress  INTEGER NOT NULL DEFAULT 0,
    count_succeeded    INTEGER NOT NULL DEFAULT 0,
    count_failed       INTEGER NOT NULL DEFAULT 0,
    count_rolled_back  INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    version            INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

CREATE INDEX rollouts_firmware ON rollouts (firmware_id);

-- Index of target groups, for "which rollouts target this group". A group
-- targeted only by finished rollouts may be deleted: its rows go, and the
-- finished rollout's target_group_ids keep the id as a historical record.
CREATE TABLE rollout_targets (
    rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    group_id   TEXT NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    PRIMARY KEY (rollout_id, group_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX rollout_targets_group ON rollout_targets (group_id);
