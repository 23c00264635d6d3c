-- Rollout execution: one row per (rollout, targeted device), written by the
-- rollout engine and the device API, and the engine's bookkeeping columns
-- on the rollout row. The rollout's count_* columns are maintained
-- incrementally, in the same transaction as every device transition, so
-- that reading a rollout's progress stays O(1) whatever the fleet size.

CREATE TABLE rollout_devices (
    rollout_id           TEXT    NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    -- No foreign key: a deleted device keeps its history here; the engine
    -- cancels its assignment if it was still pending.
    device_id            TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('pending', 'in_progress', 'succeeded',
                                                           'failed', 'rolled_back', 'cancelled')),
    attempt              INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0), -- 1 = first delivery
    phase                INTEGER,                                         -- assigned in this phase
    assigned_at          TEXT,
    deadline             TEXT,
    delivered_at         TEXT,            -- first fetched by the device (this attempt)
    previous_firmware_id TEXT,            -- what a rollback reassigns; NULL: unknown
    rollback_state       TEXT CHECK (rollback_state IN ('pending', 'delivered', 'done', 'failed')),
    reason               TEXT,
    updated_at           TEXT    NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
) STRICT, WITHOUT ROWID;

-- The engine's work lists: devices by state in id order (the primary key
-- completes every index of a WITHOUT ROWID table), and in-progress ones by
-- deadline.
CREATE INDEX rollout_devices_state ON rollout_devices (rollout_id, state);
CREATE INDEX rollout_devices_deadline ON rollout_devices (rollout_id, deadline)
    WHERE state = 'in_progress';
-- A device's assignments (device API check-ins).
CREATE INDEX rollout_devices_device ON rollout_devices (device_id, state);

ALTER TABLE rollouts ADD COLUMN count_cancelled      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN count_assigned       INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN engine_started_at    TEXT;  -- targets materialised
ALTER TABLE rollouts ADD COLUMN engine_cleaned_at    TEXT;  -- terminal clean-up done
ALTER TABLE rollouts ADD COLUMN phase_completed_at   TEXT;  -- soak of current_phase started
ALTER TABLE rollouts ADD COLUMN rate_anchor_at       TEXT;
ALTER TABLE rollouts ADD COLUMN rate_anchor_assigned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN baseline_succeeded   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN baseline_failed      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN targets_refreshed_at TEXT;

-- Rollouts the engine still has work for.
CREATE INDEX rollouts_engine_active ON rollouts (id)
    WHERE engine_cleaned_at IS NULL OR count_in_progress > 0;

-- Free-form JSON describing an engine change (status from/to and why).
ALTER TABLE audit_log ADD COLUMN detail TEXT;
