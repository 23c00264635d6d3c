# Runs against a real fleetd (FLEET_ENDPOINT / FLEET_TOKEN) through the real provider.

run "setup" {
  module {
    source = "./tests/setup"
  }
}

run "static_product_line" {
  variables {
    name                 = "meter"
    environment          = "prod"
    environment_group_id = run.setup.environment_group_id
    ca_id                = run.setup.ca_id
    hardware             = ["meter-v2"]
    config               = { telemetry = { interval = 15 } }
  }
  assert {
    condition     = output.group_path == "prod/meter"
    error_message = "The product line's group must sit under its environment."
  }
  assert {
    condition     = fleet_device_group.this.query == null
    error_message = "Without dynamic_query the group is static."
  }
  assert {
    condition     = output.effective_config.telemetry.interval == 15 && output.effective_config.telemetry.endpoint == "mqtt://broker"
    error_message = "Product config must merge over the environment's."
  }
  assert {
    condition     = fleet_enrollment.this.allowed_hardware == tolist(["meter-v2"]) && fleet_enrollment.this.group_id == output.group_id
    error_message = "Enrollment must admit exactly the product's hardware into its group."
  }
  assert {
    condition     = length([for s in fleet_policy.device.statement : s if s.effect == "deny"]) == 0 && alltrue([for s in fleet_policy.device.statement : alltrue([for r in s.resources : strcontains(r, "$${device.id}")])])
    error_message = "Every statement of the device policy must be scoped to the device's own id."
  }
}

run "dynamic_product_line" {
  variables {
    name                 = "meter-eu"
    environment          = "prod"
    environment_group_id = run.setup.environment_group_id
    ca_id                = run.setup.ca_id
    hardware             = ["meter-v2", "meter-v3"]
    dynamic_query        = "attr.region == \"eu-west\""
    common_name_pattern  = "meter-eu-*"
  }
  assert {
    condition     = fleet_enrollment.this.common_name_pattern == "meter-eu-*"
    error_message = "The enrollment must admit only certificates named by the pattern."
  }
  assert {
    condition     = fleet_device_group.this.query == "(hardware == \"meter-v2\" or hardware == \"meter-v3\") and attr.environment == \"prod\" and (attr.region == \"eu-west\")"
    error_message = "The dynamic query must combine hardware models, the environment and the extra condition."
  }
}

run "rejects_empty_hardware" {
  command = plan
  variables {
    name                 = "x"
    environment          = "prod"
    environment_group_id = run.setup.environment_group_id
    ca_id                = run.setup.ca_id
    hardware             = []
  }
  expect_failures = [var.hardware]
}

run "rejects_bad_name" {
  command = plan
  variables {
    name                 = "no spaces"
    environment          = "prod"
    environment_group_id = run.setup.environment_group_id
    ca_id                = run.setup.ca_id
    hardware             = ["m"]
  }
  expect_failures = [var.name]
}

run "rejects_blank_common_name_pattern" {
  command = plan
  variables {
    name                 = "x"
    environment          = "prod"
    environment_group_id = run.setup.environment_group_id
    ca_id                = run.setup.ca_id
    hardware             = ["m"]
    common_name_pattern  = " "
  }
  expect_failures = [var.common_name_pattern]
}
