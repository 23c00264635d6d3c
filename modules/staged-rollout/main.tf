# A firmware release and its staged rollout with safe defaults (canary →
# waves, soak, auto-pause), optionally gated on another rollout of the same
# firmware having completed under the failure threshold — how a change is
# promoted from staging to production.

locals {
  firmware_id = var.firmware != null ? fleet_firmware.this[0].id : var.firmware_id
}

resource "fleet_firmware" "this" {
  count = var.firmware != null ? 1 : 0

  product    = var.firmware.product
  version    = var.firmware.version
  hardware   = var.firmware.hardware
  url        = var.firmware.url
  sha256     = lower(var.firmware.sha256)
  size_bytes = var.firmware.size_bytes
  signature  = var.firmware.signature
}

data "fleet_firmware_rollout" "gate" {
  count = var.promote_after_rollout_id != null ? 1 : 0
  id    = var.promote_after_rollout_id
}

# The target groups' compliance, read only when a minimum is set.
data "fleet_group_compliance" "target" {
  count    = var.min_target_in_sync_ratio == null ? 0 : length(var.target_group_ids)
  group_id = var.target_group_ids[count.index]
}

locals {
  out_of_sync = [
    for c in data.fleet_group_compliance.target : "${c.path} (${c.in_sync} of ${c.total} in sync)"
    if c.in_sync_ratio < coalesce(var.min_target_in_sync_ratio, 0)
  ]
}

resource "fleet_firmware_rollout" "this" {
  name             = var.name
  firmware_id      = local.firmware_id
  target_group_ids = var.target_group_ids
  device_timeout   = var.device_timeout
  state            = var.paused ? "paused" : "running"

  dynamic "phase" {
    for_each = var.phases
    content {
      percent = phase.value.percent
      soak    = phase.value.soak
    }
  }

  failure_threshold {
    percent     = var.failure_threshold.percent
    min_devices = var.failure_threshold.min_devices
    action      = var.failure_threshold.action
  }

  dynamic "maintenance_window" {
    for_each = var.maintenance_window == null ? [] : [var.maintenance_window]
    content {
      days     = maintenance_window.value.days
      start    = maintenance_window.value.start
      duration = maintenance_window.value.duration
    }
  }

  lifecycle {
    precondition {
      condition     = (var.firmware == null) != (var.firmware_id == null)
      error_message = "Set exactly one of firmware (to create the release) and firmware_id (to reuse one)."
    }
    precondition {
      condition     = var.promote_after_rollout_id == null ? true : data.fleet_firmware_rollout.gate[0].firmware_id == local.firmware_id
      error_message = "promote_after_rollout_id names a rollout of another firmware: promote the same release that was validated."
    }
    precondition {
      condition = var.promote_after_rollout_id == null ? true : (
        data.fleet_firmware_rollout.gate[0].status == "completed" &&
        data.fleet_firmware_rollout.gate[0].failure_ratio * 100 <= var.failure_threshold.percent
      )
      error_message = "Not promoting: the gating rollout has not completed under the failure threshold yet. Wait until it shows status \"completed\" (check data.fleet_firmware_rollout or fleetd), fix the failures it reported, or remove promote_after_rollout_id to roll out without the gate."
    }
    precondition {
      condition     = length(local.out_of_sync) == 0
      error_message = "Not rolling out into groups already out of sync: ${join(", ", local.out_of_sync)}; the minimum is ${coalesce(var.min_target_in_sync_ratio, 0) * 100}% in sync. Bring the drifting devices back (see data.fleet_group_compliance: config drift, firmware drift, stale) or lower min_target_in_sync_ratio."
    }
  }
}
