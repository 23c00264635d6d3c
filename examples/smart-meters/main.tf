# A realistic fleet composed from the golden-path modules: one foundation
# (CA, dev/staging/prod, baseline policy, enrollment), two product lines in
# each environment, and firmware 2.1.0 for the meters rolled out to staging
# first and promoted to production only once staging completed under the
# failure threshold.
#
# Devices come off the line with a certificate from the factory CA named
# `<product>-<environment>-<serial>`; each product line's enrollment admits
# its own names, so one CA feeds every line and environment.

terraform {
  required_version = ">= 1.11"
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}

provider "fleet" {}

variable "promote_to_prod" {
  description = "Create the production rollout (gated on staging's result)."
  type        = bool
  default     = false
}

variable "pause_rollouts" {
  description = "Hold the rollouts (e.g. until the devices are online: a rollout targets the devices present when it starts)."
  type        = bool
  default     = false
}

variable "factory_ca_certificate_pem" {
  description = "The device manufacturer's CA to import (PEM); null generates a CA in fleetd."
  type        = string
  default     = null
}

variable "factory_ca_private_key_pem" {
  description = "Its private key (PEM); write-only in fleetd, never in state."
  type        = string
  default     = null
  sensitive   = true
}

locals {
  environments = ["dev", "staging", "prod"]
  product_lines = {
    meter = {
      hardware = ["meter-v2"]
      query    = null
      config   = { telemetry = { interval = 60 } }
    }
    gateway = {
      hardware = ["gw-1", "gw-2"]
      query    = "attr.site != \"lab\""
      config   = { uplink = { mode = "lte" } }
    }
  }
  lines = {
    for pair in setproduct(keys(local.product_lines), local.environments) :
    "${pair[0]}-${pair[1]}" => merge(local.product_lines[pair[0]], { product = pair[0], environment = pair[1] })
  }
}

module "foundation" {
  source = "../../modules/fleet-foundation"

  name                      = "smart-meters"
  environments              = local.environments
  enrollment_max_devices    = { dev = 50 }
  import_ca_certificate_pem = var.factory_ca_certificate_pem
  import_ca_private_key_pem = var.factory_ca_private_key_pem
}

module "line" {
  source   = "../../modules/device-fleet"
  for_each = local.lines

  name                 = each.value.product
  environment          = each.value.environment
  environment_group_id = module.foundation.environment_group_ids[each.value.environment]
  ca_id                = module.foundation.ca_id
  hardware             = each.value.hardware
  dynamic_query        = each.value.query
  config               = each.value.config
  common_name_pattern  = "${each.value.product}-${each.value.environment}-*"
}

module "meter_2_1_staging" {
  source = "../../modules/staged-rollout"

  name             = "meter-2.1.0-staging"
  target_group_ids = [module.line["meter-staging"].group_id]
  phases           = [{ percent = 10, soak = "0s" }, { percent = 100 }]
  paused           = var.pause_rollouts
  firmware = {
    product    = "meter"
    version    = "2.1.0"
    hardware   = ["meter-v2"]
    url        = "https://firmware.example.com/meter/2.1.0.bin"
    sha256     = "9f2c1e0b7a5d4c3b2a19080706050403020100f0e0d0c0b0a090807060504030"
    size_bytes = 1843200
  }
}

module "meter_2_1_prod" {
  source = "../../modules/staged-rollout"
  count  = var.promote_to_prod ? 1 : 0

  name                     = "meter-2.1.0-prod"
  target_group_ids         = [module.line["meter-prod"].group_id]
  firmware_id              = module.meter_2_1_staging.firmware_id
  promote_after_rollout_id = module.meter_2_1_staging.rollout_id
  paused                   = var.pause_rollouts
}

output "ca_id" {
  value = module.foundation.ca_id
}

output "groups" {
  value = { for k, l in module.line : k => l.group_path }
}

# Rollout ids only: live status and counts change on every refresh (read
# them with the fleet_firmware_rollout data source or in fleetd).
output "staging_rollout_id" {
  value = module.meter_2_1_staging.rollout_id
}

output "prod_rollout_id" {
  value = var.promote_to_prod ? module.meter_2_1_prod[0].rollout_id : null
}
