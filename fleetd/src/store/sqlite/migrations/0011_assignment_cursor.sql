-- The engine's assignment queue becomes a cursor over the rollout's rows
-- instead of an index of every pending device. Assigning a device used to
-- delete its entry from `rollout_devices_pending` (and the start inserted
-- one per target): one B-tree write per device on each side, for a queue
-- that is read in key order once.
-- - `rollouts.assign_cursor`: the last device id the assignment scan has
--   passed. Pending rows above it are the queue, read as a range of the
--   primary key.
-- - Pending rows the scan had to pass over (busy in another rollout) and
--   targets added after the start carry a `reason` and are found through
--   a small partial index, `rollout_devices_waiting`.
-- Rows pending before this migration have no reason and the cursor starts
-- empty, so every one of them is above it: nothing is lost.

ALTER TABLE rollouts ADD COLUMN assign_cursor TEXT NOT NULL DEFAULT '';

DROP INDEX rollout_devices_pending;
CREATE INDEX rollout_devices_waiting ON rollout_devices (rollout, device_id)
    WHERE state = 'pending' AND reason IS NOT NULL;
