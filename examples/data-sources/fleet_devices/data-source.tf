data "fleet_devices" "eu_meters" {
  query = "hardware == \"meter-v2\" and attr.region in [\"eu-west\", \"eu-north\"]"
}

output "eu_meter_count" {
  value = data.fleet_devices.eu_meters.device_count
}
