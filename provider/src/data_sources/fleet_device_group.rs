//! Data source `fleet_device_group`: an existing group, looked up by `id`
//! or by `path` (`prod/meters`), with everything the resource exposes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use fleet_api::{DeviceGroup, Page};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::resources::{api_diag, canonical_json};
use crate::tfplugin::{
    AttrPath, Attribute, Block, DataSource, Diagnostic, Diagnostics, Schema, Value,
};

pub struct DeviceGroupData;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    path: Option<String>,
    name: Option<String>,
    description: Option<String>,
    parent_id: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    query: Option<String>,
    config: Option<String>,
    effective_config: Option<String>,
    device_count: Option<i64>,
    version: Option<i64>,
}

#[async_trait]
impl DataSource<Client> for DeviceGroupData {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_device_group"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("An existing device group, looked up by `id` or by `path`. Set exactly one of them.")
                .attr(
                    Attribute::string("id")
                        .optional_computed()
                        .description("The group's id. Exactly one of `id` and `path` must be set."),
                )
                .attr(
                    Attribute::string("path")
                        .optional_computed()
                        .description("Names from the top-level group down to this one joined by `/`, e.g. `prod/meters`. Exactly one of `id` and `path` must be set."),
                )
                .attr(Attribute::string("name").computed().description("The group's name."))
                .attr(Attribute::string("description").computed().description("Free text; empty when not set."))
                .attr(Attribute::string("parent_id").computed().description("The parent group's id; null for a top-level group."))
                .attr(Attribute::string_map("tags").computed().description("Key/value labels."))
                .attr(Attribute::string("query").computed().description("Dynamic membership expression; null when not set."))
                .attr(Attribute::string("config").computed().description("The group's own desired configuration, as JSON (keys sorted)."))
                .attr(Attribute::string("effective_config").computed().description("`config` merged over every ancestor's, as JSON (keys sorted)."))
                .attr(Attribute::number("device_count").computed().description("Devices in the group: static members plus devices matching `query`."))
                .attr(Attribute::number("version").computed().description("fleetd's object version.")),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let id = config.attr("id").unwrap_or(&Value::Null);
        let path = config.attr("path").unwrap_or(&Value::Null);
        if id.is_null() && path.is_null() {
            diags.push(
                Diagnostic::error(
                    "Missing group lookup",
                    "Set exactly one of id or path to choose the group.",
                )
                .at(AttrPath::root("id")),
            );
        } else if id.is_fully_known() && path.is_fully_known() && !id.is_null() && !path.is_null() {
            diags.push(
                Diagnostic::error(
                    "Conflicting group lookup",
                    "path conflicts with id: set exactly one of them.",
                )
                .at(AttrPath::root("path")),
            );
        }
    }

    async fn read(&self, client: &Client, config: Model) -> Result<Model, Diagnostics> {
        let group = match (&config.id, &config.path) {
            (Some(id), _) => client
                .get_opt::<DeviceGroup>(&format!("/v1/device-groups/{id}"))
                .await
                .map_err(|e| api_diag("Could not read device group", e))?
                .ok_or_else(|| {
                    Diagnostics::from(
                        Diagnostic::error(
                            "Device group not found",
                            format!("fleetd has no device group with id {id:?}"),
                        )
                        .at(AttrPath::root("id")),
                    )
                })?,
            (None, Some(path)) => by_path(client, path).await?,
            (None, None) => {
                return Err(Diagnostic::error(
                    "Missing group lookup",
                    "Set exactly one of id or path to choose the group.",
                )
                .into())
            }
        };
        Ok(Model {
            id: Some(group.id),
            path: Some(group.path),
            name: Some(group.name),
            description: Some(group.description),
            parent_id: group.parent_id,
            tags: Some(group.tags),
            query: group.query,
            config: Some(canonical_json(&serde_json::Value::Object(group.config))),
            effective_config: Some(canonical_json(&serde_json::Value::Object(
                group.effective_config,
            ))),
            device_count: Some(group.device_count),
            version: Some(group.version),
        })
    }
}

/// fleetd has no lookup by path: page through the groups (a fleet has few
/// of them compared with devices) and pick the one whose path matches.
async fn by_path(client: &Client, path: &str) -> Result<DeviceGroup, Diagnostics> {
    let wanted = path.trim_matches('/');
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            Some(t) => format!("/v1/device-groups?limit=1000&page_token={t}"),
            None => "/v1/device-groups?limit=1000".to_string(),
        };
        let page: Page<DeviceGroup> = client
            .get(&url)
            .await
            .map_err(|e| api_diag("Could not list device groups", e))?;
        if let Some(g) = page.items.into_iter().find(|g| g.path == wanted) {
            return Ok(g);
        }
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => {
                return Err(Diagnostic::error(
                    "Device group not found",
                    format!("fleetd has no device group at path {wanted:?}"),
                )
                .at(AttrPath::root("path"))
                .into())
            }
        }
    }
}
