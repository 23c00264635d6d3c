variable "signature" {
  description = "Ed25519 signature over the 32 raw bytes of the image's SHA-256 digest, base64, e.g. file(\"build/meter-fw-1.4.2.sig\")."
  type        = string
}

variable "signing_public_key" {
  description = "The Ed25519 public key, PEM, e.g. file(\"keys/firmware-signing.pub.pem\")."
  type        = string
}

resource "fleet_firmware" "meter_1_4_2" {
  product  = "meter-fw"
  version  = "1.4.2"
  hardware = ["meter-v2", "meter-v3"]
  url      = "https://downloads.example.com/meter-fw/1.4.2.bin"
  # Usually filesha256("${path.module}/build/meter-fw-1.4.2.bin").
  sha256     = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
  size_bytes = 1048576

  signature          = var.signature
  signing_public_key = var.signing_public_key
}
