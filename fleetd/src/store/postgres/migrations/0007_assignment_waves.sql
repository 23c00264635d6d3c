-- Assignment waves (as SQLite migration 0012). An assignment batch no
-- longer writes a row per device. Each batch the
-- engine takes from above the rollout's cursor is one *wave*: the
-- rollout's devices with ids in (`after_device`, `last_device`], assigned
-- together, in one phase, with one deadline. A device of a wave keeps its
-- pending row with no reason until it is written for another reason (its
-- first fetch, its result, its timeout, the rollout's end); until then it
-- is in progress by its position below `rollouts.assign_cursor`:
--
--   state = 'pending' AND reason IS NULL AND device_id <= assign_cursor
--
-- and its phase, assignment time and deadline are those of the wave with
-- the smallest `last_device` at or above its id. A wave is deleted once
-- none of its devices is left in that condition (on timeout or at the
-- end of the rollout).
--
-- Rows written before this migration are unchanged: the previous build
-- wrote every device below the cursor (in progress, waiting with a
-- reason, or cancelled), so none is in the condition above.

CREATE TABLE rollout_waves (
    rollout     BIGINT  NOT NULL REFERENCES rollouts (seq) ON DELETE CASCADE,
    last_device TEXT    NOT NULL,
    after_device TEXT   NOT NULL,
    phase       BIGINT  NOT NULL,
    assigned_at BIGINT  NOT NULL,   -- milliseconds since the Unix epoch, UTC
    deadline    BIGINT  NOT NULL,
    PRIMARY KEY (rollout, last_device)
);
