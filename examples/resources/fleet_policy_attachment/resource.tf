resource "fleet_policy" "meters" {
  name = "meters"
  statement {
    effect    = "allow"
    actions   = ["device:checkin", "config:read", "firmware:*"]
    resources = ["fleet:device/$${device.id}"]
  }
}

resource "fleet_device_group" "meters" {
  name = "smart-meters"
}

# To a group: every device in it and in its subgroups.
resource "fleet_policy_attachment" "meters" {
  policy_id = fleet_policy.meters.id
  group_id  = fleet_device_group.meters.id
}

# To one certificate, e.g. a bench device that may also publish telemetry.
resource "fleet_policy" "debug" {
  name = "bench-debug"
  statement {
    effect    = "allow"
    actions   = ["telemetry:publish"]
    resources = ["fleet:telemetry/$${device.id}/*"]
  }
}

resource "fleet_certificate_authority" "root" {
  name = "fleet-root"
}

resource "fleet_certificate" "bench" {
  ca_id       = fleet_certificate_authority.root.id
  common_name = "bench-01"
  csr_pem     = var.bench_csr_pem
}

variable "bench_csr_pem" {
  type = string
}

resource "fleet_policy_attachment" "bench_device" {
  policy_id      = fleet_policy.debug.id
  certificate_id = fleet_certificate.bench.id
}
