resource "fleet_device_group" "bench" {
  name = "test-bench"
}

resource "fleet_device" "meter" {
  name       = "meter-bench-01"
  hardware   = "meter-v2"
  attributes = { region = "eu-west", rack = "b3" }
  group_ids  = [fleet_device_group.bench.id]
}
