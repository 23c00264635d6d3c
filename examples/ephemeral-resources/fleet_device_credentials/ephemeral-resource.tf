resource "fleet_certificate_authority" "root" {
  name          = "fleet-root"
  force_destroy = true # certificates issued by the ephemeral resource too
}

resource "fleet_device" "bench" {
  name     = "bench-01"
  hardware = "meter-v2"
}

ephemeral "fleet_device_credentials" "bench" {
  ca_id         = fleet_certificate_authority.root.id
  device_id     = fleet_device.bench.id
  validity_days = 7
}

# Hand them to whatever provisions the device: here a local command, which
# receives them in its environment; they appear in no plan or state. A
# provider with write-only arguments, or provider configuration, works too.
resource "terraform_data" "provision_bench" {
  triggers_replace = [fleet_device.bench.id]

  provisioner "local-exec" {
    command = "./provision-device.sh \"$DEVICE\""
    environment = {
      DEVICE   = fleet_device.bench.name
      TLS_KEY  = ephemeral.fleet_device_credentials.bench.private_key_pem
      TLS_CERT = ephemeral.fleet_device_credentials.bench.certificate_pem
    }
  }
}
