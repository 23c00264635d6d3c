resource "fleet_certificate_authority" "root" {
  name = "fleet-root"
}

variable "sensor_csr_pem" {
  description = "The CSR the device generated, e.g. file(\"csr/sensor-001.csr\"); its key stays on the device."
  type        = string
}

resource "fleet_certificate" "sensor" {
  ca_id              = fleet_certificate_authority.root.id
  csr_pem            = var.sensor_csr_pem
  common_name        = "sensor-001"
  validity_days      = 365
  early_renewal_days = 30
}

# Suspend a device's certificate without revoking it:
resource "fleet_device" "bench" {
  name     = "bench-01"
  hardware = "meter-v2"
}

variable "bench_csr_pem" {
  type = string
}

resource "fleet_certificate" "bench" {
  ca_id     = fleet_certificate_authority.root.id
  csr_pem   = var.bench_csr_pem
  device_id = fleet_device.bench.id
  status    = "inactive"
}
