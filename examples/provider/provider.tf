terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}

variable "fleet_token" {
  description = "fleetd's admin token (fleetd writes it to <data-dir>/admin-token on first start)."
  type        = string
  sensitive   = true
}

provider "fleet" {
  endpoint = "http://127.0.0.1:8470" # or FLEET_ENDPOINT
  token    = var.fleet_token         # or FLEET_TOKEN
}

resource "fleet_device_group" "prod" {
  name = "prod"
}
