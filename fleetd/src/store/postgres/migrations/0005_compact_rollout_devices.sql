-- Compact rollout device rows (as SQLite migration 0010): rows name their
-- rollout by a small integer (`rollouts.seq`), times are integers
-- (milliseconds since the Unix epoch, UTC), and a partial index of the
-- pending devices replaces the `(rollout_id, state, device_id)` index.

ALTER TABLE rollouts ADD COLUMN seq BIGINT;
UPDATE rollouts SET seq = n.seq
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS seq FROM rollouts) n
 WHERE n.id = rollouts.id;
ALTER TABLE rollouts ALTER COLUMN seq SET NOT NULL;
CREATE UNIQUE INDEX rollouts_seq ON rollouts (seq);

CREATE TABLE rollout_devices_compact (
    rollout              BIGINT NOT NULL REFERENCES rollouts (seq) ON DELETE CASCADE,
    device_id            TEXT   NOT NULL,
    state                TEXT   NOT NULL CHECK (state IN ('pending', 'in_progress', 'succeeded',
                                                          'failed', 'rolled_back', 'cancelled')),
    attempt              BIGINT NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    phase                BIGINT,
    assigned_at          BIGINT,
    deadline             BIGINT,
    delivered_at         BIGINT,
    previous_firmware_id TEXT,
    rollback_state       TEXT CHECK (rollback_state IN ('pending', 'delivered', 'done', 'failed')),
    reason               TEXT,
    updated_at           BIGINT NOT NULL,
    PRIMARY KEY (rollout, device_id)
);

INSERT INTO rollout_devices_compact
       (rollout, device_id, state, attempt, phase, assigned_at, deadline, delivered_at,
        previous_firmware_id, rollback_state, reason, updated_at)
SELECT r.seq, rd.device_id, rd.state, rd.attempt, rd.phase,
       round(EXTRACT(EPOCH FROM rd.assigned_at::timestamptz) * 1000)::BIGINT,
       round(EXTRACT(EPOCH FROM rd.deadline::timestamptz) * 1000)::BIGINT,
       round(EXTRACT(EPOCH FROM rd.delivered_at::timestamptz) * 1000)::BIGINT,
       rd.previous_firmware_id, rd.rollback_state, rd.reason,
       round(EXTRACT(EPOCH FROM rd.updated_at::timestamptz) * 1000)::BIGINT
  FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id;

DROP TABLE rollout_devices;
ALTER TABLE rollout_devices_compact RENAME TO rollout_devices;
ALTER TABLE rollout_devices RENAME CONSTRAINT rollout_devices_compact_pkey TO rollout_devices_pkey;

CREATE INDEX rollout_devices_pending ON rollout_devices (rollout, device_id)
    WHERE state = 'pending';
CREATE INDEX rollout_devices_deadline ON rollout_devices (rollout, deadline)
    WHERE state = 'in_progress';
CREATE INDEX rollout_devices_device ON rollout_devices (device_id);
