output "group_id" {
  description = "ID of the product line's device group."
  value       = fleet_device_group.this.id
}

output "group_path" {
  description = "Path of the product line's group, e.g. prod/smart-meter."
  value       = fleet_device_group.this.path
}

output "policy_id" {
  description = "ID of the least-privilege device policy."
  value       = fleet_policy.device.id
}

output "enrollment_id" {
  description = "ID of the zero-touch enrollment."
  value       = fleet_enrollment.this.id
}

output "effective_config" {
  description = "Configuration the product line's devices receive (merged over the environment's), decoded."
  value       = jsondecode(fleet_device_group.this.effective_config)
}

output "compliance" {
  description = "Devices of the product line by compliance state (in_sync, config_drift, firmware_drift, stale, total, in_sync_ratio), as of the last refresh."
  value       = fleet_device_group.this.compliance
}
