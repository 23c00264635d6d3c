//! `fleet_device_group`: a group of devices. Groups nest; a group's path is
//! the names of its ancestors joined by `/`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use fleet_api::{DeviceGroup as ApiGroup, DeviceGroupCreate, DeviceGroupUpdate};
use serde::{Deserialize, Serialize};

use super::{api_diag, canonical_json, json_object, json_text, parse_config};
use crate::client::Client;
use crate::tfplugin::{
    validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, Resource, Schema,
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
    path: Option<String>,
    version: Option<i64>,
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
        };
        let g: ApiGroup = client
            .post("/v1/device-groups", &body)
            .await
            .map_err(|e| api_diag("Could not create device group", e))?;
        Ok(from_api(g, plan.config.as_deref()))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id else { return Ok(None) };
        let g: Option<ApiGroup> = client
            .get_opt(&format!("/v1/device-groups/{id}"))
            .await
            .map_err(|e| api_diag("Could not read device group", e))?;
        Ok(g.map(|g| from_api(g, state.config.as_deref())))
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
            version: prior.version.unwrap_or_default(),
        };
        let g: ApiGroup = client
            .put(&format!("/v1/device-groups/{id}"), &body)
            .await
            .map_err(|e| api_diag("Could not update device group", e))?;
        Ok(from_api(g, plan.config.as_deref()))
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

/// `known` is the JSON text Terraform holds for `config`; when it means the
/// same object as fleetd's, it is kept verbatim so formatting never shows
/// as a change.
fn from_api(g: ApiGroup, known: Option<&str>) -> Model {
    let config = Value::Object(g.config);
    Model {
        id: Some(g.id),
        name: g.name,
        description: Some(g.description),
        parent_id: g.parent_id,
        tags: Some(g.tags),
        query: g.query,
        config: Some(json_text(&config, known)),
        effective_config: Some(canonical_json(&Value::Object(g.effective_config))),
        device_count: Some(g.device_count),
        path: Some(g.path),
        version: Some(g.version),
    }
}
