variable "staging_rollout_id" {
  description = "The staging rollout of the same firmware, e.g. from another configuration's output."
  type        = string
}

data "fleet_firmware_rollout" "staging" {
  id = var.staging_rollout_id
}

resource "fleet_device_group" "prod" {
  name = "prod"
}

resource "fleet_firmware_rollout" "prod" {
  name             = "meter-2-1-0-prod"
  firmware_id      = data.fleet_firmware_rollout.staging.firmware_id
  target_group_ids = [fleet_device_group.prod.id]

  phase {
    percent = 10
    soak    = "1h"
  }
  phase {
    percent = 100
  }

  lifecycle {
    precondition {
      condition     = data.fleet_firmware_rollout.staging.status == "completed" && data.fleet_firmware_rollout.staging.failure_ratio <= 0.02
      error_message = "Staging has not completed under 2% failures yet; wait for it (or fix it) before promoting to production."
    }
  }
}
