resource "fleet_certificate_authority" "factory" {
  name = "meter-factory"
}

resource "fleet_device_group" "staging" {
  name = "staging"
}

resource "fleet_enrollment" "meters_eu" {
  name                = "meters-eu"
  ca_id               = fleet_certificate_authority.factory.id
  group_id            = fleet_device_group.staging.id
  common_name_pattern = "meter-eu-*"
  name_template       = "meter-{serial}"
  attributes          = { region = "eu-west" }
  allowed_hardware    = ["meter-v2"]
  max_devices         = 5000
}
