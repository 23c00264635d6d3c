# A root that the platform team manages in another configuration.
data "fleet_certificate_authority" "root" {
  name = "fleet-root"
}

resource "fleet_device_group" "sensors" {
  name = "sensors"
}

resource "fleet_enrollment" "sensors" {
  name     = "sensors"
  ca_id    = data.fleet_certificate_authority.root.id
  group_id = fleet_device_group.sensors.id
}

output "trust_bundle" {
  value = data.fleet_certificate_authority.root.certificate_pem
}
