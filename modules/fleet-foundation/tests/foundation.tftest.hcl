# Runs against a real fleetd (FLEET_ENDPOINT / FLEET_TOKEN) through the real provider.

variables {
  name = "acme"
}

run "default_environments_with_enrollment" {
  assert {
    condition     = toset(keys(output.environment_group_ids)) == toset(["dev", "prod", "staging"])
    error_message = "Expected dev, staging and prod environment groups."
  }
  assert {
    condition     = startswith(output.ca_certificate_pem, "-----BEGIN CERTIFICATE-----")
    error_message = "The CA certificate must be PEM."
  }
  assert {
    condition     = length(output.enrollment_ids) == 3 && alltrue([for e in fleet_enrollment.environment : e.enabled])
    error_message = "Every environment needs an open enrollment."
  }
  assert {
    condition     = length(fleet_policy_attachment.baseline) == 3
    error_message = "The baseline policy must be attached to every environment."
  }
  assert {
    condition     = fleet_certificate_authority.this.imported == false
    error_message = "Without import_ca_* the CA is generated in fleetd."
  }
}

run "custom_environments_and_limits" {
  variables {
    environments           = ["lab", "field"]
    enrollment_max_devices = { field = 5000 }
    enrollment_enabled     = { lab = false }
  }
  assert {
    condition     = fleet_enrollment.environment["field"].max_devices == 5000 && fleet_enrollment.environment["lab"].enabled == false
    error_message = "Per-environment enrollment settings were not applied."
  }
}

run "rejects_invalid_environment_names" {
  command = plan
  variables {
    environments = ["Prod!"]
  }
  expect_failures = [var.environments]
}

run "rejects_duplicate_environments" {
  command = plan
  variables {
    environments = ["dev", "dev"]
  }
  expect_failures = [var.environments]
}

run "rejects_unknown_key_algorithm" {
  command = plan
  variables {
    ca_key_algorithm = "RSA"
  }
  expect_failures = [var.ca_key_algorithm]
}
