//! Data source `fleet_firmware_rollout`: a rollout's live status, so a
//! module can gate production on staging's result (e.g. a `precondition`
//! that staging `completed` with no more than N failures).

use async_trait::async_trait;
use fleet_api::Rollout;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::resources::api_diag;
use crate::resources::fleet_firmware_rollout::{counts, counts_type, CountsModel};
use crate::tfplugin::{Attribute, Block, DataSource, Diagnostic, Diagnostics, Schema};

pub struct FirmwareRolloutData;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: String,
    name: Option<String>,
    firmware_id: Option<String>,
    target_group_ids: Option<Vec<String>>,
    state: Option<String>,
    status: Option<String>,
    counts: Option<CountsModel>,
    current_phase: Option<i64>,
    failure_ratio: Option<f64>,
}

#[async_trait]
impl DataSource<Client> for FirmwareRolloutData {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_firmware_rollout"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("Live status of a firmware rollout. Read on every plan, in O(1) whatever the fleet size.")
                .attr(Attribute::string("id").required().description("The rollout's id."))
                .attr(Attribute::string("name").computed())
                .attr(Attribute::string("firmware_id").computed())
                .attr(Attribute::string_set("target_group_ids").computed())
                .attr(Attribute::string("state").computed().description("Desired state: running, paused or cancelled."))
                .attr(Attribute::string("status").computed().description("Live status: pending, running, paused, completed, aborted, rolled_back or cancelled."))
                .attr(Attribute::new("counts", counts_type()).computed())
                .attr(Attribute::number("current_phase").computed())
                .attr(
                    Attribute::number("failure_ratio")
                        .computed()
                        .description("`failed / (succeeded + failed)`, 0 before any result: the figure a promotion gate compares with its threshold."),
                ),
        )
    }

    async fn read(&self, client: &Client, config: Model) -> Result<Model, Diagnostics> {
        let r: Option<Rollout> = client
            .get_opt(&format!("/v1/rollouts/{}", config.id))
            .await
            .map_err(|e| api_diag("Could not read firmware rollout", e))?;
        let Some(r) = r else {
            return Err(Diagnostic::error(
                "Firmware rollout not found",
                format!("fleetd has no rollout with id {:?}", config.id),
            )
            .into());
        };
        let finished = r.counts.succeeded + r.counts.failed;
        let failure_ratio = if finished == 0 {
            0.0
        } else {
            r.counts.failed as f64 / finished as f64
        };
        let mut groups = r.target_group_ids;
        groups.sort();
        Ok(Model {
            id: r.id,
            name: Some(r.name),
            firmware_id: Some(r.firmware_id),
            target_group_ids: Some(groups),
            state: Some(r.state),
            status: Some(r.status),
            counts: Some(counts(r.counts)),
            current_phase: Some(r.current_phase),
            failure_ratio: Some(failure_ratio),
        })
    }
}
