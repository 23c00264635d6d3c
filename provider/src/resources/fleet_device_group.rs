//! `fleet_device_group`: a group of devices. Groups nest; a group's path is
//! the names of its ancestors joined by `/`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use fleet_api::{DeviceGroup as ApiGroup, DeviceGroupCreate, DeviceGroupUpdate};
use serde::{Deserialize, Serialize};

use super::api_diag;
use crate::client::Client;
use crate::tfplugin::{validators, Attribute, Block, Diagnostics, Resource, Schema, Value};

pub struct DeviceGroup;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    name: String,
    description: Option<String>,
    parent_id: Option<String>,
    tags: Option<BTreeMap<String, String>>,
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
                        .default(Value::Map(BTreeMap::new()))
                        .description("Key/value labels.")
                        .validate(validators::map_entries(64, 128, 256)),
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

    async fn create(
        &self,
        client: &Client,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let body = DeviceGroupCreate {
            name: plan.name,
            description: plan.description.unwrap_or_default(),
            parent_id: plan.parent_id,
            tags: plan.tags.unwrap_or_default(),
        };
        let g: ApiGroup = client
            .post("/v1/device-groups", &body)
            .await
            .map_err(|e| api_diag("Could not create device group", e))?;
        Ok(from_api(g))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id else { return Ok(None) };
        let g: Option<ApiGroup> = client
            .get_opt(&format!("/v1/device-groups/{id}"))
            .await
            .map_err(|e| api_diag("Could not read device group", e))?;
        Ok(g.map(from_api))
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
            name: plan.name,
            description: plan.description.unwrap_or_default(),
            parent_id: plan.parent_id,
            tags: plan.tags.unwrap_or_default(),
            version: prior.version.unwrap_or_default(),
        };
        let g: ApiGroup = client
            .put(&format!("/v1/device-groups/{id}"), &body)
            .await
            .map_err(|e| api_diag("Could not update device group", e))?;
        Ok(from_api(g))
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

fn from_api(g: ApiGroup) -> Model {
    Model {
        id: Some(g.id),
        name: g.name,
        description: Some(g.description),
        parent_id: g.parent_id,
        tags: Some(g.tags),
        path: Some(g.path),
        version: Some(g.version),
    }
}
