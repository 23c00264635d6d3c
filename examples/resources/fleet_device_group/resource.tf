resource "fleet_device_group" "prod" {
  name   = "prod"
  config = jsonencode({ telemetry = { interval = 60 } })
}

resource "fleet_device_group" "meters" {
  name      = "smart-meters"
  parent_id = fleet_device_group.prod.id
  query     = "hardware == \"meter-v2\" and attr.region in [\"eu-west\", \"eu-north\"]"
  config    = jsonencode({ telemetry = { interval = 15 } })
  tags      = { product = "meter" }
}
