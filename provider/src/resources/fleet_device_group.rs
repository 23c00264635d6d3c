//! `fleet_device_group`: a group of devices. Groups nest; a group's path is
//! the names of its ancestors joined by `/`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use fleet_api::{DeviceGroup as ApiGroup, DeviceGroupCreate, DeviceGroupUpdate, GroupCompliance};
use serde::{Deserialize, Serialize};

use super::fleet_certificate::domain_check;
use super::{api_diag, canonical_json, json_object, json_text, parse_config};
use crate::client::Client;
use crate::tfplugin::{
    validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, Resource, Schema, Type,
    Value as TfValue,
};
use serde_json::Value;

pub struct DeviceGroup;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    name: String,
    description: Option<String>,
    parent_id: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    query: Option<String>,
    config: Option<String>,
    effective_config: Option<String>,
    device_count: Option<i64>,
    stale_after: Option<String>,
    compliance: Option<ComplianceModel>,
    path: Option<String>,
    version: Option<i64>,
}

/// `compliance`: devices of the group and its subgroups by state.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct ComplianceModel {
    pub in_sync: u64,
    pub config_drift: u64,
    pub firmware_drift: u64,
    pub stale: u64,
    pub total: u64,
    pub in_sync_ratio: f64,
}

impl From<GroupCompliance> for ComplianceModel {
    fn from(c: GroupCompliance) -> Self {
        ComplianceModel {
            in_sync: c.in_sync,
            config_drift: c.config_drift,
            firmware_drift: c.firmware_drift,
            stale: c.stale,
            total: c.total,
            in_sync_ratio: c.in_sync_ratio,
        }
    }
}

/// The cty type of `compliance`, shared with the data source.
pub fn compliance_type() -> Type {
    Type::Object(
        [
            "in_sync",
            "config_drift",
            "firmware_drift",
            "stale",
            "total",
            "in_sync_ratio",
        ]
        .into_iter()
        .map(|k| (k.to_string(), Type::Number))
        .collect(),
    )
}

#[async_trait]
impl Resource<Client> for DeviceGroup {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_device_group"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("A group of devices. Groups nest through `parent_id`; policies and configuration attached to a group apply to its subgroups.")
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .description("The group's identifier in fleetd."),
                )
                .attr(
                    Attribute::string("name")
                        .required()
                        .description("Name, unique among its siblings: letters, digits, `.`, `_`, `-`.")
                        .validate(validators::identifier(128)),
                )
                .attr(
                    Attribute::string("description")
                        .default("")
                        .description("Free text shown to operators.")
                        .validate(validators::length_between(0, 1024)),
                )
                .attr(
                    Attribute::string("parent_id")
                        .optional()
                        .description("The parent group's `id`; omit for a top-level group."),
                )
                .attr(
                    Attribute::string_map("tags")
                        .default(TfValue::Map(BTreeMap::new()))
                        .description("Key/value labels.")
                        .validate(validators::map_entries(64, 128, 256)),
                )
                .attr(
                    Attribute::string("query")
                        .optional()
                        .description("Dynamic membership: devices matching this expression belong to the group, e.g. `hardware == \"meter-v2\" and attr.region in [\"eu-west\", \"eu-north\"]`."),
                )
                .attr(
                    Attribute::string("config")
                        .default("{}")
                        .description("Desired device configuration as a JSON object (use `jsonencode`). Merged down the hierarchy: a subgroup's keys win, `null` removes a key.")
                        .validate(json_object()),
                )
                .attr(
                    Attribute::string("effective_config")
                        .computed()
                        .description("The configuration devices of this group receive: `config` merged over every ancestor's, as JSON."),
                )
                .attr(
                    Attribute::number("device_count")
                        .computed()
                        .description("Devices in the group: static members plus devices matching `query`."),
                )
                .attr(
                    Attribute::string("stale_after")
                        .optional()
                        .description("Devices of this group not seen for this long count as `stale` in `compliance`, e.g. `15m`, `2h`, `1d` (1s to 365d; a device in several groups goes stale after the shortest). Omit to never mark them stale.")
                        .validate(domain_check(|s| {
                            fleet_domain::duration::parse_bounded("stale_after", s, 1, 365 * 86_400).map(drop)
                        })),
                )
                .attr(
                    Attribute::new("compliance", compliance_type())
                        .computed()
                        .description("Devices of this group and its subgroups by compliance state as of their last check-in: `in_sync`, `config_drift`, `firmware_drift`, `stale`, their `total`, and `in_sync_ratio` (1 when no device reported). Refreshed on every plan without making it non-empty."),
                )
                .attr(
                    Attribute::string("path")
                        .computed()
                        .description("Names from the top-level group down to this one, joined by `/`."),
                )
                .attr(
                    Attribute::number("version")
                        .computed()
                        .description("fleetd's object version, used for optimistic concurrency."),
                ),
        )
    }

    /// The membership query is checked with fleetd's own parser, so a
    /// syntax error fails the plan with its line and column.
    fn validate(&self, config: &TfValue, diags: &mut Diagnostics) {
        if let Some(q) = config.attr("query").and_then(TfValue::as_str) {
            if let Err(e) = fleet_domain::query::parse(q) {
                diags.push(
                    Diagnostic::error("Invalid device query", e.to_string())
                        .at(AttrPath::root("query")),
                );
            }
        }
    }

    async fn create(
        &self,
        client: &Client,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let body = DeviceGroupCreate {
            name: plan.name.clone(),
            description: plan.description.clone().unwrap_or_default(),
            parent_id: plan.parent_id.clone(),
            tags: plan.tags.clone().unwrap_or_default(),
            query: plan.query.clone(),
            config: parse_config(plan.config.as_deref())?,
            stale_after: plan.stale_after.clone(),
        };
        let g: ApiGroup = client
            .post("/v1/device-groups", &body)
            .await
            .map_err(|e| api_diag("Could not create device group", e))?;
        Ok(from_api(g, &plan))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id.clone() else {
            return Ok(None);
        };
        let g: Option<ApiGroup> = client
            .get_opt(&format!("/v1/device-groups/{id}"))
            .await
            .map_err(|e| api_diag("Could not read device group", e))?;
        Ok(g.map(|g| from_api(g, &state)))
    }

    async fn update(
        &self,
        client: &Client,
        prior: Model,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let id = prior.id.unwrap_or_default();
        let body = DeviceGroupUpdate {
            name: plan.name.clone(),
            description: plan.description.clone().unwrap_or_default(),
            parent_id: plan.parent_id.clone(),
            tags: plan.tags.clone().unwrap_or_default(),
            query: plan.query.clone(),
            config: parse_config(plan.config.as_deref())?,
            stale_after: plan.stale_after.clone(),
            version: prior.version.unwrap_or_default(),
        };
        let g: ApiGroup = client
            .put(&format!("/v1/device-groups/{id}"), &body)
            .await
            .map_err(|e| api_diag("Could not update device group", e))?;
        Ok(from_api(g, &plan))
    }

    async fn delete(&self, client: &Client, state: Model) -> Result<(), Diagnostics> {
        let id = state.id.unwrap_or_default();
        let version = state
            .version
            .map(|v| format!("?version={v}"))
            .unwrap_or_default();
        client
            .delete(&format!("/v1/device-groups/{id}{version}"))
            .await
            .map_err(|e| api_diag("Could not delete device group", e))
    }

    async fn import(&self, client: &Client, id: &str) -> Result<Option<Model>, Diagnostics> {
        self.read(
            client,
            Model {
                id: Some(id.to_string()),
                ..Default::default()
            },
        )
        .await
    }
}

/// `known` is what Terraform holds: where its `config` JSON text means the
/// same object as fleetd's, or its `stale_after` the same duration, it is
/// kept verbatim so spelling never shows as a change.
fn from_api(g: ApiGroup, known: &Model) -> Model {
    let config = Value::Object(g.config);
    let stale_after = match (g.stale_after, &known.stale_after) {
        (Some(server), Some(k))
            if fleet_domain::duration::parse("stale_after", k).ok()
                == fleet_domain::duration::parse("stale_after", &server).ok() =>
        {
            Some(k.clone())
        }
        (server, _) => server,
    };
    Model {
        id: Some(g.id),
        name: g.name,
        description: Some(g.description),
        parent_id: g.parent_id,
        tags: Some(g.tags),
        query: g.query,
        config: Some(json_text(&config, known.config.as_deref())),
        effective_config: Some(canonical_json(&Value::Object(g.effective_config))),
        device_count: Some(g.device_count),
        stale_after,
        compliance: Some(g.compliance.into()),
        path: Some(g.path),
        version: Some(g.version),
    }
}
