# Test fixture: an environment group and a CA, as fleet-foundation would provide.
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}

resource "fleet_device_group" "prod" {
  name   = "prod"
  config = jsonencode({ telemetry = { interval = 60, endpoint = "mqtt://broker" } })
}

resource "fleet_certificate_authority" "ca" {
  name        = "test-ca"
  common_name = "test device CA"
}

output "environment_group_id" {
  value = fleet_device_group.prod.id
}

output "ca_id" {
  value = fleet_certificate_authority.ca.id
}
