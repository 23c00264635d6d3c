# Resource patterns use variables substituted per device; in HCL a literal
# `${...}` is written `$${...}`.
resource "fleet_policy" "meters" {
  name        = "meters-baseline"
  description = "What every meter may do."

  statement {
    effect    = "allow"
    actions   = ["device:checkin", "config:read", "firmware:*"]
    resources = ["fleet:device/$${device.id}", "fleet:config/$${device.group}/*"]
  }

  statement {
    effect    = "allow"
    actions   = ["telemetry:publish"]
    resources = ["fleet:telemetry/$${device.id}/*"]
  }

  statement {
    effect    = "deny"
    actions   = ["*"]
    resources = ["fleet:group/quarantine/*"]
  }
}
