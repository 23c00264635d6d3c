terraform {
  required_version = ">= 1.5"
  required_providers {
    fleet = {
      source = "fleetform/fleet"
    }
  }
}
