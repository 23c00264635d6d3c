# The quickstart fleet: an environment, one product line whose devices
# enroll themselves with factory certificates, and a firmware rollout.
# `make demo` applies this against a local fleetd and plays the devices
# with fleet-sim.

terraform {
  required_version = ">= 1.11"
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}

# Endpoint and token come from FLEET_ENDPOINT and FLEET_TOKEN.
provider "fleet" {}

variable "factory_ca_dir" {
  description = "Directory with the factory CA (factory-ca.pem, factory-ca.key), e.g. from `fleet-sim factory-ca --out DIR`."
  type        = string
  default     = "factory"
}

variable "rollout_state" {
  description = "`paused` until the devices are online, then `running`."
  type        = string
  default     = "paused"
}

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
  config      = jsonencode({ report_interval_s = 60 })
}

# The factory signs a certificate for every meter it builds; fleetd
# trusts it for enrollment. The key is write-only: it never enters state.
resource "fleet_certificate_authority" "factory" {
  name                       = "meter-factory"
  certificate_pem            = file("${var.factory_ca_dir}/factory-ca.pem")
  private_key_pem_wo         = file("${var.factory_ca_dir}/factory-ca.key")
  private_key_pem_wo_version = 1
  force_destroy              = true
}

# Zero-touch: a meter presenting a factory certificate joins the group.
resource "fleet_enrollment" "meters" {
  name             = "smart-meters"
  ca_id            = fleet_certificate_authority.factory.id
  group_id         = fleet_device_group.meters.id
  allowed_hardware = ["m2"]
}

# Least privilege: a meter may act only as itself.
resource "fleet_policy" "meter" {
  name = "meter-device"
  statement {
    effect    = "allow"
    actions   = ["device:checkin", "config:read", "firmware:download", "firmware:report"]
    resources = ["fleet:device/$${device.id}"]
  }
}

resource "fleet_policy_attachment" "meters" {
  policy_id = fleet_policy.meter.id
  group_id  = fleet_device_group.meters.id
}

resource "fleet_firmware" "v1_0" {
  product    = "meter-fw"
  version    = "1.0.0"
  hardware   = ["m2"]
  url        = "https://firmware.example.com/meter-fw-1.0.0.bin"
  sha256     = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
  size_bytes = 1048576
}

resource "fleet_firmware" "v1_1" {
  product    = "meter-fw"
  version    = "1.1.0"
  hardware   = ["m2"]
  url        = "https://firmware.example.com/meter-fw-1.1.0.bin"
  sha256     = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
  size_bytes = 1048576
}

# Canary, then the rest; pause if more than 5% of 20+ meters fail.
resource "fleet_firmware_rollout" "v1_1" {
  name             = "meter-fw-1-1-0"
  firmware_id      = fleet_firmware.v1_1.id
  target_group_ids = [fleet_device_group.meters.id]
  state            = var.rollout_state

  phase {
    percent = 5
    soak    = "2s"
  }
  phase {
    percent = 50
    soak    = "2s"
  }
  phase {
    percent = 100
  }

  failure_threshold {
    percent     = 5
    min_devices = 20
  }
}

output "meters_group" {
  value = {
    id   = fleet_device_group.meters.id
    path = fleet_device_group.meters.path
  }
}

output "enrollment_id" {
  value = fleet_enrollment.meters.id
}

output "rollout" {
  value = {
    id     = fleet_firmware_rollout.v1_1.id
    status = fleet_firmware_rollout.v1_1.status
    counts = fleet_firmware_rollout.v1_1.counts
  }
}
