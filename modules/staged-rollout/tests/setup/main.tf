# Test fixture: staging and production groups.
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}

resource "fleet_device_group" "staging" {
  name = "staging"
}

resource "fleet_device_group" "prod" {
  name = "prod"
}

output "staging_group_id" {
  value = fleet_device_group.staging.id
}

output "prod_group_id" {
  value = fleet_device_group.prod.id
}
