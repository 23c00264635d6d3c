# Generated in fleetd: the key never leaves it.
resource "fleet_certificate_authority" "root" {
  name          = "fleet-root"
  description   = "Signs all device certificates"
  common_name   = "Fleet Root CA"
  organization  = "Example Corp"
  key_algorithm = "ECDSA_P256"
  validity_days = 3650
}

# Imported, the key write-only. An ephemeral variable (or an ephemeral
# resource such as a secrets manager's secret version) keeps the key out of
# every Terraform artifact; any string works, e.g. file("ca.key").
variable "corp_ca_key_pem" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "corp_ca_certificate_pem" {
  type = string
}

resource "fleet_certificate_authority" "corp" {
  name               = "corp-intermediate"
  certificate_pem    = var.corp_ca_certificate_pem
  private_key_pem_wo = var.corp_ca_key_pem
  # Bump when the key changes: Terraform cannot see write-only values, so
  # this is what replaces the CA with one using the new key.
  private_key_pem_wo_version = 1
}
