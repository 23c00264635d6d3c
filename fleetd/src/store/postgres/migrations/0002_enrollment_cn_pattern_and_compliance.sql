-- The SQLite store's migrations 0006 (enrollment common-name pattern) and
-- 0007 (compliance), in the representation of 0001.

-- Enrollments may admit only certificates whose common name matches a
-- glob (NULL: any common name).
ALTER TABLE enrollments ADD COLUMN common_name_pattern TEXT;

-- A device not seen for this long (in any group that sets it; the
-- shortest wins) turns stale. NULL: never.
ALTER TABLE device_groups ADD COLUMN stale_after_secs BIGINT
    CHECK (stale_after_secs IS NULL OR stale_after_secs > 0);

-- Reported by the device at check-in: the digest of the config it applied.
ALTER TABLE devices ADD COLUMN config_digest TEXT;
-- NULL until the first check-in.
ALTER TABLE devices ADD COLUMN compliance TEXT
    CHECK (compliance IS NULL OR compliance IN ('in_sync', 'config_drift', 'firmware_drift', 'stale'));
ALTER TABLE devices ADD COLUMN compliance_reason TEXT;
-- JSON array: the groups (direct and their ancestors) whose counters
-- include this device, as of its last check-in.
ALTER TABLE devices ADD COLUMN compliance_groups TEXT;
-- When the device turns stale unless it checks in; NULL: never, or already.
ALTER TABLE devices ADD COLUMN stale_at TEXT;

CREATE INDEX devices_stale_at ON devices (stale_at) WHERE stale_at IS NOT NULL;
CREATE INDEX devices_noncompliant ON devices (compliance, id)
    WHERE compliance IS NOT NULL AND compliance <> 'in_sync';

-- Per group, devices by compliance state, the group's subgroups included:
-- maintained at check-in and by the stale sweep, read in O(1).
CREATE TABLE group_compliance (
    group_id TEXT   NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    state    TEXT   NOT NULL,
    devices  BIGINT NOT NULL CHECK (devices >= 0),
    PRIMARY KEY (group_id, state)
);
