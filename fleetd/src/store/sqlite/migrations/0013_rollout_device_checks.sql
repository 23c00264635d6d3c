-- The same constraints on `rollout_devices`, written so that checking them
-- costs a few comparisons. SQLite evaluates a CHECK of the form
-- `column IN ('a', 'b', 'c', …)` by building a temporary B-tree of the
-- list for every row it inserts or updates; the engine writes each row of
-- a rollout twice (its start, its result), and that build was a large
-- part of each write (see BENCHMARKS.md). A chain of `=` comparisons
-- accepts exactly the same values. The table is rebuilt because SQLite
-- cannot alter a CHECK in place; its rows, key and indexes are unchanged.

CREATE TABLE rollout_devices_checked (
    rollout              INTEGER NOT NULL REFERENCES rollouts (seq) ON DELETE CASCADE,
    -- No foreign key: a deleted device keeps its history here; the engine
    -- cancels its assignment if it was still pending.
    device_id            TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state = 'pending' OR state = 'in_progress'
                                                 OR state = 'succeeded' OR state = 'failed'
                                                 OR state = 'rolled_back' OR state = 'cancelled'),
    attempt              INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0), -- 1 = first delivery
    phase                INTEGER,                                         -- assigned in this phase
    assigned_at          INTEGER,         -- times: milliseconds since the Unix epoch, UTC
    deadline             INTEGER,
    delivered_at         INTEGER,         -- first fetched by the device (this attempt)
    previous_firmware_id TEXT,            -- what a rollback reassigns; NULL: unknown
    rollback_state       TEXT CHECK (rollback_state = 'pending' OR rollback_state = 'delivered'
                                     OR rollback_state = 'done' OR rollback_state = 'failed'),
    reason               TEXT,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (rollout, device_id)
) STRICT, WITHOUT ROWID;

INSERT INTO rollout_devices_checked
       (rollout, device_id, state, attempt, phase, assigned_at, deadline, delivered_at,
        previous_firmware_id, rollback_state, reason, updated_at)
SELECT rollout, device_id, state, attempt, phase, assigned_at, deadline, delivered_at,
       previous_firmware_id, rollback_state, reason, updated_at
  FROM rollout_devices;

DROP TABLE rollout_devices;
ALTER TABLE rollout_devices_checked RENAME TO rollout_devices;

-- The indexes of 0010 and 0011, as they were.
CREATE INDEX rollout_devices_deadline ON rollout_devices (rollout, deadline)
    WHERE state = 'in_progress';
CREATE INDEX rollout_devices_device ON rollout_devices (device_id);
CREATE INDEX rollout_devices_waiting ON rollout_devices (rollout, device_id)
    WHERE state = 'pending' AND reason IS NOT NULL;
