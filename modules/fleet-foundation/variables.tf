variable "name" {
  description = "Name of the fleet; prefixes the certificate authority and policy names."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", var.name))
    error_message = "name must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "environments" {
  description = "Environment groups to create at the top of the group tree, in promotion order."
  type        = list(string)
  default     = ["dev", "staging", "prod"]

  validation {
    condition     = length(var.environments) > 0 && length(var.environments) == length(distinct(var.environments))
    error_message = "environments must list at least one environment, each once."
  }
  validation {
    condition     = alltrue([for e in var.environments : can(regex("^[a-z0-9][a-z0-9-]{0,31}$", e))])
    error_message = "Each environment must be 1-32 lowercase letters, digits or '-'."
  }
}

variable "ca_common_name" {
  description = "Common name of the certificate authority fleetd generates (ignored when importing one)."
  type        = string
  default     = null
}

variable "ca_validity_days" {
  description = "Validity of the generated certificate authority, in days."
  type        = number
  default     = 3650

  validation {
    condition     = var.ca_validity_days >= 30 && var.ca_validity_days <= 36500 && floor(var.ca_validity_days) == var.ca_validity_days
    error_message = "ca_validity_days must be a whole number between 30 and 36500."
  }
}

variable "ca_key_algorithm" {
  description = "Key algorithm of the generated certificate authority: ECDSA_P256 or ED25519."
  type        = string
  default     = "ECDSA_P256"

  validation {
    condition     = contains(["ECDSA_P256", "ED25519"], var.ca_key_algorithm)
    error_message = "ca_key_algorithm must be ECDSA_P256 or ED25519."
  }
}

variable "import_ca_certificate_pem" {
  description = "Import an existing CA (e.g. the device manufacturer's) instead of generating one: its PEM certificate. Requires import_ca_private_key_pem."
  type        = string
  default     = null

  validation {
    condition     = var.import_ca_certificate_pem == null || can(regex("-----BEGIN CERTIFICATE-----", var.import_ca_certificate_pem))
    error_message = "import_ca_certificate_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----)."
  }
}

variable "import_ca_private_key_pem" {
  description = "PEM private key of the imported CA. Sent to fleetd through a write-only attribute, so it never enters state (Terraform >= 1.11). Pass it from an ephemeral source to keep it out of saved plans too."
  type        = string
  default     = null
  sensitive   = true
}

variable "enrollment_max_devices" {
  description = "Most devices each environment's zero-touch enrollment admits (null = unlimited), by environment name."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for v in values(var.enrollment_max_devices) : v >= 1])
    error_message = "enrollment_max_devices values must be at least 1."
  }
}

variable "enrollment_enabled" {
  description = "Whether zero-touch enrollment is open in each environment (default: open everywhere)."
  type        = map(bool)
  default     = {}
}
