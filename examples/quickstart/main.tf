# The quickstart fleet: an environment tree and one product line.
# `make demo` applies this against a local fleetd.

terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}

# Endpoint and token come from FLEET_ENDPOINT and FLEET_TOKEN.
provider "fleet" {}

resource "fleet_device_group" "prod" {
  name        = "prod"
  description = "Production fleet"
  tags        = { environment = "prod" }
}

resource "fleet_device_group" "meters" {
  name        = "smart-meters"
  description = "Smart meters, hardware line m2"
  parent_id   = fleet_device_group.prod.id
  tags        = { product = "meter", line = "m2" }
}

output "meters_group" {
  value = {
    id   = fleet_device_group.meters.id
    path = fleet_device_group.meters.path
  }
}
