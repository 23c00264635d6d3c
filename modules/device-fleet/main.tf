# One product line: its group under an environment (static, or dynamic by
# hardware and an optional query), a least-privilege policy, and zero-touch
# enrollment for devices carrying certificates from the fleet's CA.

locals {
  hardware_query = join(" or ", [for h in var.hardware : "hardware == \"${h}\""])
  # Scoped to the environment (enrollments label devices with it), so the
  # same product line in another environment never overlaps.
  query = var.dynamic_query == null ? null : "(${local.hardware_query}) and attr.environment == \"${var.environment}\" and (${var.dynamic_query})"
}

resource "fleet_device_group" "this" {
  name        = var.name
  description = "Product line ${var.name} (${var.environment})"
  parent_id   = var.environment_group_id
  query       = local.query
  config      = jsonencode(var.config)
  stale_after = var.stale_after
  tags        = { product = var.name, environment = var.environment }
}

# A device may act only on itself: check in, read its config, download and
# report firmware, and publish telemetry under its own id. Nothing else.
resource "fleet_policy" "device" {
  name        = "${var.name}-${var.environment}-device"
  description = "Least privilege for ${var.name} devices in ${var.environment}."

  statement {
    effect    = "allow"
    actions   = ["device:checkin", "config:read", "firmware:download", "firmware:report"]
    resources = ["fleet:device/$${device.id}", "fleet:config/$${device.id}", "fleet:firmware/$${device.id}"]
  }

  statement {
    effect    = "allow"
    actions   = ["telemetry:publish"]
    resources = ["fleet:telemetry/$${device.id}/*"]
  }
}

resource "fleet_policy_attachment" "device" {
  policy_id = fleet_policy.device.id
  group_id  = fleet_device_group.this.id
}

# Hardware-restricted (and pattern-restricted when given), this enrollment
# takes precedence over catch-all ones of the same CA.
resource "fleet_enrollment" "this" {
  name                = "${var.name}-${var.environment}"
  ca_id               = var.ca_id
  group_id            = fleet_device_group.this.id
  name_template       = "${var.name}-{cn}"
  attributes          = { product = var.name, environment = var.environment }
  allowed_hardware    = var.hardware
  common_name_pattern = var.common_name_pattern
  max_devices         = var.max_devices
  enabled             = var.enrollment_enabled
}

# Warns in every plan (without failing it) when too few devices run the
# firmware and config they should. Off unless min_in_sync_ratio is set.
check "compliance" {
  data "fleet_group_compliance" "this" {
    group_id = fleet_device_group.this.id
  }

  assert {
    condition     = var.min_in_sync_ratio == null || data.fleet_group_compliance.this.in_sync_ratio >= coalesce(var.min_in_sync_ratio, 0)
    error_message = "Only ${data.fleet_group_compliance.this.in_sync} of ${data.fleet_group_compliance.this.total} devices in ${data.fleet_group_compliance.this.path} are in sync (config drift ${data.fleet_group_compliance.this.config_drift}, firmware drift ${data.fleet_group_compliance.this.firmware_drift}, stale ${data.fleet_group_compliance.this.stale}); the threshold is ${coalesce(var.min_in_sync_ratio, 0) * 100}%. Examples: ${join("; ", [for d in data.fleet_group_compliance.this.noncompliant : "${d.name}: ${d.reason}"])}."
  }
}
