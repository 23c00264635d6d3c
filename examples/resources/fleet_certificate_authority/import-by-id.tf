import {
  to = fleet_certificate_authority.root
  id = "01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f"
}
