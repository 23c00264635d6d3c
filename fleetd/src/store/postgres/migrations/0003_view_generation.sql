-- The SQLite store's migration 0008 (view generation), in the
-- representation of 0001: the fleet view that every device request needs
-- (groups, policies, policy attachments) is held in memory by each fleetd
-- and reloaded when this counter moves. The trigger moves it in the same
-- transaction as the change, so a device request reads one row however
-- many groups and policies there are.
CREATE TABLE fleet_view_generation (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    generation BIGINT  NOT NULL
);
INSERT INTO fleet_view_generation (id, generation) VALUES (1, 1);

CREATE FUNCTION fleet_view_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE fleet_view_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER device_groups_view AFTER INSERT OR UPDATE OR DELETE ON device_groups
    FOR EACH STATEMENT EXECUTE FUNCTION fleet_view_generation_bump();
CREATE TRIGGER policies_view AFTER INSERT OR UPDATE OR DELETE ON policies
    FOR EACH STATEMENT EXECUTE FUNCTION fleet_view_generation_bump();
CREATE TRIGGER policy_attachments_view AFTER INSERT OR UPDATE OR DELETE ON policy_attachments
    FOR EACH STATEMENT EXECUTE FUNCTION fleet_view_generation_bump();
