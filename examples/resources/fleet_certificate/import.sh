# A fleet_certificate is imported by its id in fleetd.
terraform import fleet_certificate.sensor 01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f
