//! Data source `fleet_group_compliance`: how many devices of a group (and
//! its subgroups) run the firmware and config they should, read in O(1)
//! whatever the fleet size, with a sample of the devices that do not. For
//! `check` blocks that warn when a group drifts, and preconditions that
//! refuse to roll out into a group already out of sync.

use async_trait::async_trait;
use fleet_api::GroupComplianceReport;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::resources::api_diag;
use crate::tfplugin::{Attribute, Block, DataSource, Diagnostic, Diagnostics, Schema, Type};

pub struct GroupComplianceData;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    group_id: String,
    path: Option<String>,
    in_sync: Option<u64>,
    config_drift: Option<u64>,
    firmware_drift: Option<u64>,
    stale: Option<u64>,
    total: Option<u64>,
    in_sync_ratio: Option<f64>,
    noncompliant: Option<Vec<NonCompliant>>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct NonCompliant {
    device_id: String,
    name: String,
    state: String,
    reason: String,
}

fn noncompliant_type() -> Type {
    Type::List(Box::new(Type::Object(
        ["device_id", "name", "state", "reason"]
            .into_iter()
            .map(|k| (k.to_string(), Type::String))
            .collect(),
    )))
}

#[async_trait]
impl DataSource<Client> for GroupComplianceData {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_group_compliance"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("Compliance of a device group's devices (its subgroups included) as of their last check-in: a device is `in_sync` when it runs the firmware its last completed rollout installed and reports the digest of its effective config; otherwise it shows `firmware_drift` or `config_drift`; silent past the group's `stale_after` it is `stale`. Read in O(1) whatever the fleet size.")
                .attr(Attribute::string("group_id").required().description("The `fleet_device_group`'s id."))
                .attr(Attribute::string("path").computed().description("The group's path."))
                .attr(Attribute::number("in_sync").computed().description("Devices running the desired firmware and config."))
                .attr(Attribute::number("config_drift").computed().description("Devices whose applied config differs from the desired one."))
                .attr(Attribute::number("firmware_drift").computed().description("Devices on another firmware than their last completed rollout installed."))
                .attr(Attribute::number("stale").computed().description("Devices silent for longer than `stale_after`."))
                .attr(Attribute::number("total").computed().description("Devices that checked in at least once."))
                .attr(Attribute::number("in_sync_ratio").computed().description("`in_sync / total`, 1 when no device reported: the figure a `check` block or a precondition compares with its threshold."))
                .attr(
                    Attribute::new("noncompliant", noncompliant_type())
                        .computed()
                        .description("Up to 10 devices that are not in sync (lowest ids first), each with `device_id`, `name`, `state` and `reason`."),
                ),
        )
    }

    async fn read(&self, client: &Client, config: Model) -> Result<Model, Diagnostics> {
        let r: Option<GroupComplianceReport> = client
            .get_opt(&format!("/v1/device-groups/{}/compliance", config.group_id))
            .await
            .map_err(|e| api_diag("Could not read group compliance", e))?;
        let Some(r) = r else {
            return Err(Diagnostic::error(
                "Device group not found",
                format!("fleetd has no device group with id {:?}", config.group_id),
            )
            .into());
        };
        Ok(Model {
            group_id: r.group_id,
            path: Some(r.path),
            in_sync: Some(r.in_sync),
            config_drift: Some(r.config_drift),
            firmware_drift: Some(r.firmware_drift),
            stale: Some(r.stale),
            total: Some(r.total),
            in_sync_ratio: Some(r.in_sync_ratio),
            noncompliant: Some(
                r.noncompliant_sample
                    .into_iter()
                    .map(|d| NonCompliant {
                        device_id: d.device_id,
                        name: d.name,
                        state: d.state,
                        reason: d.reason,
                    })
                    .collect(),
            ),
        })
    }
}
