output "ca_id" {
  description = "ID of the fleet's certificate authority."
  value       = fleet_certificate_authority.this.id
}

output "ca_certificate_pem" {
  description = "PEM certificate of the CA, for devices and gateways that verify device certificates."
  value       = fleet_certificate_authority.this.certificate_pem
}

output "environment_group_ids" {
  description = "Group ID of each environment, by environment name."
  value       = { for k, g in fleet_device_group.environment : k => g.id }
}

output "baseline_policy_id" {
  description = "ID of the baseline policy attached to every environment."
  value       = fleet_policy.baseline.id
}

output "enrollment_ids" {
  description = "Zero-touch enrollment of each environment, by environment name."
  value       = { for k, e in fleet_enrollment.environment : k => e.id }
}
