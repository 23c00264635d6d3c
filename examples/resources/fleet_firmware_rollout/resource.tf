resource "fleet_device_group" "meters" {
  name = "smart-meters"
}

resource "fleet_firmware" "meter_2_1" {
  product    = "meter-fw"
  version    = "2.1.0"
  hardware   = ["meter-v2"]
  url        = "https://downloads.example.com/meter-fw/2.1.0.bin"
  sha256     = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
  size_bytes = 1048576
}

resource "fleet_firmware_rollout" "meter_2_1" {
  name             = "meter-2-1-0"
  firmware_id      = fleet_firmware.meter_2_1.id
  target_group_ids = [fleet_device_group.meters.id]
  device_timeout   = "30m"

  phase {
    percent = 1
    soak    = "1h"
  }
  phase {
    percent = 10
    soak    = "2h"
  }
  phase {
    percent = 100
  }

  failure_threshold {
    percent     = 2
    min_devices = 50
    action      = "pause"
  }

  maintenance_window {
    days     = ["sat", "sun"]
    start    = "02:00"
    duration = "4h"
  }
}
