# The foundation of a fleet: one certificate authority that device
# certificates chain to, an environment group tree, baseline policies, and
# zero-touch enrollment into each environment.

locals {
  importing = var.import_ca_certificate_pem != null
}

resource "fleet_certificate_authority" "this" {
  name                       = "${var.name}-ca"
  description                = "Device CA of the ${var.name} fleet"
  common_name                = local.importing ? null : coalesce(var.ca_common_name, "${var.name} device CA")
  key_algorithm              = local.importing ? null : var.ca_key_algorithm
  validity_days              = local.importing ? null : var.ca_validity_days
  certificate_pem            = var.import_ca_certificate_pem
  private_key_pem_wo         = local.importing ? var.import_ca_private_key_pem : null
  private_key_pem_wo_version = local.importing ? 1 : null

  lifecycle {
    precondition {
      condition     = !local.importing || var.import_ca_private_key_pem != null
      error_message = "import_ca_certificate_pem is set but import_ca_private_key_pem is not: importing a CA needs both."
    }
  }
}

resource "fleet_device_group" "environment" {
  for_each = toset(var.environments)

  name        = each.key
  description = "${var.name}: ${each.key} environment"
  tags        = { fleet = var.name, environment = each.key }
}

# Deny is the default; the baseline makes the two rules every fleet wants
# explicit, so they hold whatever product policies add later:
# devices may only ever act on themselves, and never enroll again.
resource "fleet_policy" "baseline" {
  name        = "${var.name}-baseline"
  description = "Baseline for every device of ${var.name}: check in and read config as itself; never re-enroll."

  statement {
    effect    = "allow"
    actions   = ["device:checkin", "config:read"]
    resources = ["fleet:device/$${device.id}", "fleet:config/$${device.id}"]
  }

  statement {
    effect    = "deny"
    actions   = ["device:enroll"]
    resources = ["fleet:device/*"]
  }
}

resource "fleet_policy_attachment" "baseline" {
  for_each = fleet_device_group.environment

  policy_id = fleet_policy.baseline.id
  group_id  = each.value.id
}

resource "fleet_enrollment" "environment" {
  for_each = fleet_device_group.environment

  name          = "${var.name}-${each.key}"
  ca_id         = fleet_certificate_authority.this.id
  group_id      = each.value.id
  name_template = "${each.key}-{cn}"
  attributes    = { environment = each.key }
  max_devices   = lookup(var.enrollment_max_devices, each.key, null)
  enabled       = lookup(var.enrollment_enabled, each.key, true)
}
