output "firmware_id" {
  description = "ID of the firmware release rolled out (created here or passed in)."
  value       = local.firmware_id
}

output "rollout_id" {
  description = "ID of the rollout; pass it as promote_after_rollout_id to the next environment's instance."
  value       = fleet_firmware_rollout.this.id
}

output "status" {
  description = "Live status of the rollout at the last refresh."
  value       = fleet_firmware_rollout.this.status
}

output "counts" {
  description = "Live device counts of the rollout at the last refresh."
  value       = fleet_firmware_rollout.this.counts
}
