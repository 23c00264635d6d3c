variable "name" {
  description = "Name of the product line, e.g. \"smart-meter\". Names its group, policy and enrollment."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", var.name))
    error_message = "name must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "environment" {
  description = "Environment name (used in names and attributes), e.g. \"prod\"."
  type        = string
}

variable "environment_group_id" {
  description = "Group ID of the environment this product line lives under (fleet-foundation's environment_group_ids[environment])."
  type        = string
}

variable "ca_id" {
  description = "Certificate authority whose device certificates may enroll into this product line (fleet-foundation's ca_id)."
  type        = string
}

variable "hardware" {
  description = "Hardware models of this product line. Enrollment admits only these; a dynamic group matches only these."
  type        = list(string)

  validation {
    condition     = length(var.hardware) > 0
    error_message = "hardware must list at least one hardware model."
  }
}

variable "dynamic_query" {
  description = "Optional extra condition (fleet query language) for dynamic membership, ANDed with the hardware models and attr.environment == the environment (which enrollments set), e.g. attr.region == \"eu-west\". Null for a static group."
  type        = string
  default     = null
}

variable "config" {
  description = "Desired device configuration for this product line (any object); merged over the environment's."
  type        = any
  default     = {}
}

variable "enrollment_enabled" {
  description = "Whether devices of this product line may enroll themselves (zero-touch)."
  type        = bool
  default     = true
}

variable "max_devices" {
  description = "Most devices the enrollment admits (null = unlimited)."
  type        = number
  default     = null

  validation {
    condition     = var.max_devices == null ? true : var.max_devices >= 1
    error_message = "max_devices must be at least 1 (or null for no limit)."
  }
}

variable "common_name_pattern" {
  description = "Glob over the device certificate's common name that this line's enrollment admits (`*`, `?`), e.g. \"meter-prod-*\": lets one CA feed several lines and environments. Null admits any name."
  type        = string
  default     = null

  validation {
    condition     = var.common_name_pattern == null ? true : (length(trimspace(var.common_name_pattern)) > 0 && length(var.common_name_pattern) <= 128)
    error_message = "common_name_pattern must be 1-128 characters (or null to admit any common name)."
  }
}

variable "stale_after" {
  description = "Devices of this product line silent for longer count as stale in its compliance (e.g. \"15m\", \"2h\"). Null: never."
  type        = string
  default     = null

  validation {
    condition     = var.stale_after == null ? true : can(regex("^([0-9]+[dhms])+$", var.stale_after))
    error_message = "stale_after must be a duration such as 90s, 15m, 2h or 1d."
  }
}

variable "min_in_sync_ratio" {
  description = "When set (0-1), every plan warns (a check block; the plan still succeeds) if fewer of the product line's devices than this are in sync."
  type        = number
  default     = null

  validation {
    condition     = var.min_in_sync_ratio == null ? true : (var.min_in_sync_ratio >= 0 && var.min_in_sync_ratio <= 1)
    error_message = "min_in_sync_ratio must be between 0 and 1 (or null to turn the check off)."
  }
}
