-- Compact rollout device rows. A rollout of a million devices writes each
-- row and its index entries twice (assigned, then its result), so the
-- row's size and its index count set the engine's speed:
-- - rows name their rollout by a small integer (`rollouts.seq`) instead of
--   its 36-character id, in the row and in every index entry;
-- - times are integers, milliseconds since the Unix epoch (UTC), instead
--   of RFC 3339 text;
-- - the `(rollout_id, state)` index is replaced by a partial index of the
--   pending devices, the engine's assignment queue: in-progress devices
--   have the deadline index, and a device's result no longer moves an
--   index entry from one state to another.

ALTER TABLE rollouts ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE rollouts SET seq = (SELECT COUNT(*) FROM rollouts o WHERE o.id <= rollouts.id);
CREATE UNIQUE INDEX rollouts_seq ON rollouts (seq);

CREATE TABLE rollout_devices_compact (
    rollout              INTEGER NOT NULL REFERENCES rollouts (seq) ON DELETE CASCADE,
    -- No foreign key: a deleted device keeps its history here; the engine
    -- cancels its assignment if it was still pending.
    device_id            TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('pending', 'in_progress', 'succeeded',
                                                           'failed', 'rolled_back', 'cancelled')),
    attempt              INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0), -- 1 = first delivery
    phase                INTEGER,                                         -- assigned in this phase
    assigned_at          INTEGER,         -- times: milliseconds since the Unix epoch, UTC
    deadline             INTEGER,
    delivered_at         INTEGER,         -- first fetched by the device (this attempt)
    previous_firmware_id TEXT,            -- what a rollback reassigns; NULL: unknown
    rollback_state       TEXT CHECK (rollback_state IN ('pending', 'delivered', 'done', 'failed')),
    reason               TEXT,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (rollout, device_id)
) STRICT, WITHOUT ROWID;

INSERT INTO rollout_devices_compact
       (rollout, device_id, state, attempt, phase, assigned_at, deadline, delivered_at,
        previous_firmware_id, rollback_state, reason, updated_at)
SELECT r.seq, rd.device_id, rd.state, rd.attempt, rd.phase,
       CAST(round((julianday(rd.assigned_at) - 2440587.5) * 86400000) AS INTEGER),
       CAST(round((julianday(rd.deadline) - 2440587.5) * 86400000) AS INTEGER),
       CAST(round((julianday(rd.delivered_at) - 2440587.5) * 86400000) AS INTEGER),
       rd.previous_firmware_id, rd.rollback_state, rd.reason,
       CAST(round((julianday(rd.updated_at) - 2440587.5) * 86400000) AS INTEGER)
  FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id;

DROP TABLE rollout_devices;
ALTER TABLE rollout_devices_compact RENAME TO rollout_devices;

-- The engine's assignment queue: pending devices in id order.
CREATE INDEX rollout_devices_pending ON rollout_devices (rollout, device_id)
    WHERE state = 'pending';
-- In-progress devices by deadline (timeouts; also the in-progress list).
CREATE INDEX rollout_devices_deadline ON rollout_devices (rollout, deadline)
    WHERE state = 'in_progress';
-- A device's rollout rows (check-ins, the engine's "busy in another
-- rollout" probe).
CREATE INDEX rollout_devices_device ON rollout_devices (device_id);
