-- A device's rollout rows (check-ins, the engine's "busy in another
-- rollout" probe) are found by device id alone: a device has few rows.
-- Without `state` in the key, the engine's state transitions no longer
-- rewrite this index.
DROP INDEX rollout_devices_device;
CREATE INDEX rollout_devices_device ON rollout_devices (device_id);
