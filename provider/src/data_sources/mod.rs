//! Data source types, one file per Terraform type name.

use std::sync::Arc;

pub mod fleet_certificate_authority;
pub mod fleet_device_group;
pub mod fleet_devices;
pub mod fleet_firmware_rollout;
pub mod fleet_group_compliance;

use crate::client::Client;
use crate::tfplugin::AnyDataSource;

pub fn all() -> Vec<Arc<dyn AnyDataSource<Client>>> {
    vec![
        Arc::new(fleet_device_group::DeviceGroupData),
        Arc::new(fleet_devices::DevicesData),
        Arc::new(fleet_firmware_rollout::FirmwareRolloutData),
        Arc::new(fleet_certificate_authority::CertificateAuthority),
        Arc::new(fleet_group_compliance::GroupComplianceData),
    ]
}
