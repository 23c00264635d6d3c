data "fleet_device_group" "prod" {
  path = "prod"
}

resource "fleet_device_group" "sensors" {
  name      = "sensors"
  parent_id = data.fleet_device_group.prod.id
}

output "prod_config" {
  value = jsondecode(data.fleet_device_group.prod.effective_config)
}
