//! `fleet_device`: one registered device. Small fleets and test benches
//! declare their devices; large fleets enroll themselves. What the device
//! reports (firmware, health, last check-in) is read-only here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use fleet_api::{Device as ApiDevice, DeviceCreate, DeviceUpdate};
use fleet_domain::device as rules;
use serde::{Deserialize, Serialize};

use super::{api_diag, retarget};
use crate::client::Client;
use crate::tfplugin::{
    validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, Resource, Schema, Value,
};

pub struct Device;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    name: String,
    hardware: String,
    attributes: Option<BTreeMap<String, String>>,
    group_ids: Option<Vec<String>>,
    firmware_version: Option<String>,
    last_seen: Option<String>,
    health: Option<String>,
    version: Option<i64>,
}

#[async_trait]
impl Resource<Client> for Device {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_device"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("One registered device. Suited to small fleets and test benches; large fleets enroll themselves (see `fleet_enrollment`). `firmware_version`, `health` and `last_seen` are what the device last reported and change as it checks in.")
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .description("The device's identifier in fleetd."),
                )
                .attr(
                    Attribute::string("name")
                        .required()
                        .description("Name, unique across the fleet: 1–128 letters, digits, `.`, `_`, `-`, starting with a letter or digit.")
                        .validate(validators::string(|s| rules::validate_name(s).map_err(|e| e.message))),
                )
                .attr(
                    Attribute::string("hardware")
                        .required()
                        .description("Hardware model, matched against `fleet_firmware.hardware`. Same character rules as `name`.")
                        .validate(validators::string(|s| rules::validate_hardware(s).map_err(|e| e.message))),
                )
                .attr(
                    Attribute::string_map("attributes")
                        .default(Value::Map(BTreeMap::new()))
                        .description("Key/value attributes (at most 50; keys 1–128 characters, values at most 256), usable in group queries as `attr.<key>` and in policies as `${device.attr.<key>}`."),
                )
                .attr(
                    Attribute::string_set("group_ids")
                        .default(Value::Set(Vec::new()))
                        .description("Groups the device is a static member of (at most 100). Dynamic membership through a group's `query` is not listed here."),
                )
                .attr(
                    Attribute::string("firmware_version")
                        .computed()
                        .description("Firmware version the device last reported; null until it checks in."),
                )
                .attr(
                    Attribute::string("last_seen")
                        .computed()
                        .description("Time of the device's last check-in (RFC 3339, UTC); null until it checks in."),
                )
                .attr(
                    Attribute::string("health")
                        .computed()
                        .description("Health the device last reported, e.g. `ok` or `degraded`; null until it checks in."),
                )
                .attr(
                    Attribute::number("version")
                        .computed()
                        .description("fleetd's object version, used for optimistic concurrency."),
                ),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(Value::Map(attrs)) = config.attr("attributes") {
            validate_attributes(attrs, diags);
        }
        if let Some(Value::Set(ids)) = config.attr("group_ids") {
            let known: Vec<String> = ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let too_many = ids.len() > rules::MAX_GROUPS;
            if let Err(e) = rules::validate_group_ids(&known) {
                diags.push(
                    Diagnostic::error("Invalid value for group_ids", e.message)
                        .at(AttrPath::root("group_ids")),
                );
            } else if too_many {
                diags.push(
                    Diagnostic::error(
                        "Invalid value for group_ids",
                        format!(
                            "a device can be in at most {} groups, got {}",
                            rules::MAX_GROUPS,
                            ids.len()
                        ),
                    )
                    .at(AttrPath::root("group_ids")),
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
        let body = DeviceCreate {
            name: plan.name.clone(),
            hardware: plan.hardware.clone(),
            attributes: plan.attributes.clone().unwrap_or_default(),
            group_ids: plan.group_ids.clone().unwrap_or_default(),
        };
        let d: ApiDevice = client
            .post("/v1/devices", &body)
            .await
            .map_err(|e| errors("Could not create device", e))?;
        Ok(from_api(d))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id else { return Ok(None) };
        let d: Option<ApiDevice> = client
            .get_opt(&format!("/v1/devices/{id}"))
            .await
            .map_err(|e| errors("Could not read device", e))?;
        Ok(d.map(from_api))
    }

    async fn update(
        &self,
        client: &Client,
        prior: Model,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let id = prior.id.clone().unwrap_or_default();
        let mut body = DeviceUpdate {
            name: plan.name.clone(),
            hardware: plan.hardware.clone(),
            attributes: plan.attributes.clone().unwrap_or_default(),
            group_ids: plan.group_ids.clone().unwrap_or_default(),
            version: prior.version.unwrap_or_default(),
        };
        let path = format!("/v1/devices/{id}");
        let d: ApiDevice = match client.put(&path, &body).await {
            Ok(d) => d,
            Err(e) if is_stale(&e) => {
                // Deleting a group removes its memberships and bumps the
                // version of its devices. When that is all that changed
                // since Terraform read the device (a member group being
                // replaced in this same apply), the update is not a
                // conflict: base it on the current version.
                let current: Option<ApiDevice> = client
                    .get_opt(&path)
                    .await
                    .map_err(|e| errors("Could not read device", e))?;
                match current {
                    Some(c) if only_lost_groups(&prior, &c) => {
                        body.version = c.version;
                        client
                            .put(&path, &body)
                            .await
                            .map_err(|e| errors("Could not update device", e))?
                    }
                    _ => return Err(errors("Could not update device", e)),
                }
            }
            Err(e) => return Err(errors("Could not update device", e)),
        };
        Ok(from_api(d))
    }

    async fn delete(&self, client: &Client, state: Model) -> Result<(), Diagnostics> {
        let id = state.id.unwrap_or_default();
        let version = state
            .version
            .map(|v| format!("?version={v}"))
            .unwrap_or_default();
        client
            .delete(&format!("/v1/devices/{id}{version}"))
            .await
            .map_err(|e| errors("Could not delete device", e))
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

/// fleetd's rules for attributes, one diagnostic per offending entry at
/// `attributes["key"]`. Unknown values are skipped.
fn validate_attributes(attrs: &BTreeMap<String, Value>, diags: &mut Diagnostics) {
    if attrs.len() > rules::MAX_ATTRIBUTES {
        diags.push(
            Diagnostic::error(
                "Invalid value for attributes",
                format!(
                    "at most {} attributes are allowed, got {}",
                    rules::MAX_ATTRIBUTES,
                    attrs.len()
                ),
            )
            .at(AttrPath::root("attributes")),
        );
    }
    for (k, v) in attrs {
        let value = v.as_str().unwrap_or_default().to_string();
        let one = BTreeMap::from([(k.clone(), value)]);
        if let Err(e) = rules::validate_attributes(&one) {
            let path = AttrPath::root("attributes").key(k);
            diags.push(Diagnostic::error(format!("Invalid value for {path}"), e.message).at(path));
        }
    }
}

fn is_stale(e: &crate::client::ClientError) -> bool {
    matches!(e, crate::client::ClientError::Api(a)
        if a.error == fleet_api::ErrorKind::Conflict && a.current_version.is_some())
}

/// Whether `current` differs from what Terraform last read only by static
/// groups it no longer has.
fn only_lost_groups(prior: &Model, current: &ApiDevice) -> bool {
    let known = prior.group_ids.clone().unwrap_or_default();
    current.name == prior.name
        && current.hardware == prior.hardware
        && Some(&current.attributes) == prior.attributes.as_ref()
        && current.group_ids.iter().all(|g| known.contains(g))
}

/// fleetd names set elements by index (`group_ids[1]`); Terraform cannot
/// address set elements that way, so point at the attribute.
fn errors(action: &str, e: crate::client::ClientError) -> Diagnostics {
    retarget(api_diag(action, e), &[], &["group_ids"])
}

fn from_api(d: ApiDevice) -> Model {
    let mut group_ids = d.group_ids;
    group_ids.sort();
    group_ids.dedup();
    Model {
        id: Some(d.id),
        name: d.name,
        hardware: d.hardware,
        attributes: Some(d.attributes),
        group_ids: Some(group_ids),
        firmware_version: d.firmware_version,
        last_seen: d.last_seen,
        health: d.health,
        version: Some(d.version),
    }
}
