-- The fleet view that every device request needs (groups, policies,
-- policy attachments) is held in memory by fleetd and reloaded when this
-- counter moves. Triggers move it in the same transaction as the change,
-- so a device request reads one row however many groups and policies
-- there are (the previous stamp aggregated over every group and policy).
CREATE TABLE fleet_view_generation (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
) STRICT;
INSERT INTO fleet_view_generation (id, generation) VALUES (1, 1);

CREATE TRIGGER device_groups_view_insert AFTER INSERT ON device_groups
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER device_groups_view_update AFTER UPDATE ON device_groups
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER device_groups_view_delete AFTER DELETE ON device_groups
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;

CREATE TRIGGER policies_view_insert AFTER INSERT ON policies
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policies_view_update AFTER UPDATE ON policies
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policies_view_delete AFTER DELETE ON policies
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;

CREATE TRIGGER policy_attachments_view_insert AFTER INSERT ON policy_attachments
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policy_attachments_view_update AFTER UPDATE ON policy_attachments
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER policy_attachments_view_delete AFTER DELETE ON policy_attachments
BEGIN UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1; END;
