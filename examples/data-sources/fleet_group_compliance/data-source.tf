resource "fleet_device_group" "meters" {
  name        = "smart-meters"
  stale_after = "2h"
}

data "fleet_group_compliance" "meters" {
  group_id = fleet_device_group.meters.id
}

# Warn (without failing the run) when fewer than 95% of the meters run the
# firmware and config they should.
check "meters_in_sync" {
  assert {
    condition     = data.fleet_group_compliance.meters.in_sync_ratio >= 0.95
    error_message = "Only ${data.fleet_group_compliance.meters.in_sync} of ${data.fleet_group_compliance.meters.total} meters are in sync; e.g. ${jsonencode(data.fleet_group_compliance.meters.noncompliant)}."
  }
}

output "meters_compliance" {
  value = {
    in_sync        = data.fleet_group_compliance.meters.in_sync
    config_drift   = data.fleet_group_compliance.meters.config_drift
    firmware_drift = data.fleet_group_compliance.meters.firmware_drift
    stale          = data.fleet_group_compliance.meters.stale
  }
}
