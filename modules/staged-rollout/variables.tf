variable "name" {
  description = "Name of the rollout, e.g. \"meter-2.1.0-prod\"."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", var.name))
    error_message = "name must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "firmware" {
  description = "The firmware release to create. Set either this or firmware_id (to roll out a release created elsewhere, e.g. by the staging instance of this module)."
  type = object({
    product    = string
    version    = string
    hardware   = list(string)
    url        = string
    sha256     = string
    size_bytes = number
    signature  = optional(string)
  })
  default = null

  validation {
    condition     = var.firmware == null ? true : can(regex("^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$", var.firmware.version))
    error_message = "firmware.version must be a semantic version such as 2.1.0."
  }
  validation {
    condition     = var.firmware == null ? true : can(regex("^[0-9a-fA-F]{64}$", var.firmware.sha256))
    error_message = "firmware.sha256 must be 64 hexadecimal characters."
  }
  validation {
    condition     = var.firmware == null ? true : var.firmware.size_bytes > 0
    error_message = "firmware.size_bytes must be positive."
  }
}

variable "firmware_id" {
  description = "ID of an existing fleet_firmware release to roll out (instead of firmware)."
  type        = string
  default     = null
}

variable "target_group_ids" {
  description = "Groups whose devices receive the firmware."
  type        = list(string)

  validation {
    condition     = length(var.target_group_ids) > 0
    error_message = "target_group_ids must name at least one group."
  }
}

variable "phases" {
  description = "Cumulative percentages with the soak after each. The safe default: 1% canary, then 10%, 50%, 100%, soaking between phases."
  type = list(object({
    percent = number
    soak    = optional(string, "0s")
  }))
  default = [
    { percent = 1, soak = "1h" },
    { percent = 10, soak = "2h" },
    { percent = 50, soak = "4h" },
    { percent = 100, soak = "0s" },
  ]

  validation {
    condition     = length(var.phases) > 0 && var.phases[length(var.phases) - 1].percent == 100
    error_message = "phases must end with a phase at 100 percent."
  }
  validation {
    condition     = alltrue([for i, p in var.phases : p.percent > 0 && p.percent <= 100 && (i == 0 || p.percent > var.phases[max(i - 1, 0)].percent)])
    error_message = "phase percentages must increase strictly, each in (0, 100]."
  }
}

variable "failure_threshold" {
  description = "Stop when more than percent of finished devices failed, once at least min_devices reported. Default: pause at 2% after 50 results."
  type = object({
    percent     = number
    min_devices = number
    action      = string
  })
  default = { percent = 2, min_devices = 50, action = "pause" }

  validation {
    condition     = contains(["pause", "abort", "rollback"], var.failure_threshold.action)
    error_message = "failure_threshold.action must be pause, abort or rollback."
  }
  validation {
    condition     = var.failure_threshold.percent >= 0 && var.failure_threshold.percent <= 100 && var.failure_threshold.min_devices >= 1
    error_message = "failure_threshold.percent must be within 0-100 and min_devices at least 1."
  }
}

variable "device_timeout" {
  description = "How long a device may take to report its update result."
  type        = string
  default     = "1h"
}

variable "maintenance_window" {
  description = "Only assign devices inside this UTC window (null = any time)."
  type = object({
    days     = list(string)
    start    = string
    duration = string
  })
  default = null
}

variable "paused" {
  description = "Hold the rollout (no new assignments) without cancelling it."
  type        = bool
  default     = false
}

variable "promote_after_rollout_id" {
  description = "Gate: ID of the rollout (typically staging, same firmware) that must have completed under this module's failure threshold before this one may be created. Null for no gate."
  type        = string
  default     = null
}

variable "min_target_in_sync_ratio" {
  description = "When set (0-1), refuse (a precondition, checked at every plan) to roll out while any target group has fewer devices in sync than this: a fleet already drifting is not the place for new firmware. Null: no check."
  type        = number
  default     = null

  validation {
    condition     = var.min_target_in_sync_ratio == null ? true : (var.min_target_in_sync_ratio >= 0 && var.min_target_in_sync_ratio <= 1)
    error_message = "min_target_in_sync_ratio must be between 0 and 1 (or null to turn the check off)."
  }
}
