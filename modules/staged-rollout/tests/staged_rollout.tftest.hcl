# Runs against a real fleetd (FLEET_ENDPOINT / FLEET_TOKEN) through the real provider.

run "setup" {
  module {
    source = "./tests/setup"
  }
}

run "staging_with_safe_defaults" {
  variables {
    name             = "meter-2.1.0-staging"
    target_group_ids = [run.setup.staging_group_id]
    firmware = {
      product    = "meter"
      version    = "2.1.0"
      hardware   = ["meter-v2"]
      url        = "https://fw.example.com/meter-2.1.0.bin"
      sha256     = "AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12"
      size_bytes = 1048576
    }
    # Held, so that it cannot complete (its group is empty) before the
    # promotion gate below is tried.
    paused = true
  }
  assert {
    condition     = fleet_firmware_rollout.this.state == "paused"
    error_message = "paused = true must hold the rollout."
  }
  assert {
    condition     = [for p in fleet_firmware_rollout.this.phase : p.percent] == [1, 10, 50, 100]
    error_message = "Default phases must be 1% canary, 10%, 50%, 100%."
  }
  assert {
    condition     = fleet_firmware_rollout.this.failure_threshold.percent == 2 && fleet_firmware_rollout.this.failure_threshold.min_devices == 50 && fleet_firmware_rollout.this.failure_threshold.action == "pause"
    error_message = "Default threshold must pause at 2% after 50 results."
  }
}

run "production_refused_until_staging_completes" {
  command = plan
  variables {
    name                     = "meter-2.1.0-prod"
    target_group_ids         = [run.setup.prod_group_id]
    firmware_id              = run.staging_with_safe_defaults.firmware_id
    promote_after_rollout_id = run.staging_with_safe_defaults.rollout_id
  }
  expect_failures = [fleet_firmware_rollout.this]
}

run "rejects_both_firmware_and_id" {
  command = plan
  variables {
    name             = "x"
    target_group_ids = [run.setup.prod_group_id]
    firmware_id      = run.staging_with_safe_defaults.firmware_id
    firmware = {
      product    = "meter"
      version    = "9.9.9"
      hardware   = ["meter-v2"]
      url        = "https://fw.example.com/x.bin"
      sha256     = "0000000000000000000000000000000000000000000000000000000000000000"
      size_bytes = 1
    }
  }
  expect_failures = [fleet_firmware_rollout.this]
}

run "rejects_phases_not_ending_at_100" {
  command = plan
  variables {
    name             = "x"
    target_group_ids = [run.setup.prod_group_id]
    firmware_id      = run.staging_with_safe_defaults.firmware_id
    phases           = [{ percent = 10 }, { percent = 50 }]
  }
  expect_failures = [var.phases]
}

run "rejects_bad_sha256" {
  command = plan
  variables {
    name             = "x"
    target_group_ids = [run.setup.prod_group_id]
    firmware = {
      product    = "meter"
      version    = "2.2.0"
      hardware   = ["meter-v2"]
      url        = "https://fw.example.com/x.bin"
      sha256     = "not-a-digest"
      size_bytes = 1
    }
  }
  expect_failures = [var.firmware]
}
