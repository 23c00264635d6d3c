//! `fleet_enrollment`: zero-touch provisioning. A device presenting a
//! certificate chained to `ca_id` registers itself into `group_id` on first
//! contact, named by `name_template`, within the limits set here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use fleet_api::{Enrollment as ApiEnrollment, EnrollmentCreate, EnrollmentUpdate};
use fleet_domain::enrollment::{self, EnrollmentSpec, NameTemplate, DEFAULT_NAME_TEMPLATE};
use serde::{Deserialize, Serialize};

use super::api_diag;
use super::fleet_certificate::domain_check;
use crate::client::Client;
use crate::tfplugin::{
    model, validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, PlanChange, Resource,
    Schema, Value,
};

pub struct Enrollment;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    name: String,
    ca_id: String,
    group_id: String,
    name_template: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
    allowed_hardware: Option<Vec<String>>,
    max_devices: Option<u64>,
    enabled: Option<bool>,
    common_name_pattern: Option<String>,
    enrolled_count: Option<u64>,
    version: Option<i64>,
}

#[async_trait]
impl Resource<Client> for Enrollment {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_enrollment"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("Zero-touch provisioning: a device presenting a certificate chained to `ca_id` registers itself into `group_id` on first contact. Every argument changes in place.")
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .description("The enrollment's identifier in fleetd."),
                )
                .attr(
                    Attribute::string("name")
                        .required()
                        .description("Name, unique among enrollments: letters, digits, `.`, `_`, `-`, starting with a letter or digit.")
                        .validate(domain_check(fleet_domain::group::validate_name)),
                )
                .attr(
                    Attribute::string("ca_id")
                        .required()
                        .description("Devices must present a certificate chained to this `fleet_certificate_authority`."),
                )
                .attr(
                    Attribute::string("group_id")
                        .required()
                        .description("Enrolled devices join this `fleet_device_group`."),
                )
                .attr(
                    Attribute::string("name_template")
                        .default(DEFAULT_NAME_TEMPLATE)
                        .description("How an enrolled device is named: `{cn}` (certificate common name, the default), `{serial}` (certificate serial, hex), `{hardware}`, `{attr.KEY}` (a reported or assigned attribute); `{{` and `}}` for literal braces. Checked at plan time; errors give the position.")
                        .validate(domain_check(|s| NameTemplate::parse(s).map(drop))),
                )
                .attr(
                    Attribute::string_map("attributes")
                        .default(Value::Map(BTreeMap::new()))
                        .description("Attributes assigned to every enrolled device; they override what the device reports."),
                )
                .attr(
                    Attribute::string_list("allowed_hardware")
                        .default(Value::List(Vec::new()))
                        .description("Hardware models allowed to enroll (no duplicates); empty (default) allows any."),
                )
                .attr(
                    Attribute::number("max_devices")
                        .optional()
                        .description("Cap on the number of devices this enrollment creates (at least 1); omit for no cap.")
                        .validate(validators::int_between(1, i64::MAX)),
                )
                .attr(
                    Attribute::bool("enabled")
                        .default(true)
                        .description("`false` stops all enrollments without deleting the rules."),
                )
                .attr(
                    Attribute::string("common_name_pattern")
                        .optional()
                        .description("Only certificates whose subject common name matches this glob enroll (`*` any run of characters, `?` one), e.g. `meter-prod-*`; omit to admit any. When several enrollments of a CA admit a device, the most specific wins: a pattern and a hardware list, then a pattern, then a hardware list, then none; among equals the oldest."),
                )
                .attr(
                    Attribute::number("enrolled_count")
                        .computed()
                        .description("Devices enrolled through this enrollment so far."),
                )
                .attr(
                    Attribute::number("version")
                        .computed()
                        .description("fleetd's object version, used for optimistic concurrency."),
                ),
        )
    }

    /// fleetd's enrollment rules over whatever is known (an unknown part is
    /// checked as its default, which always passes).
    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let known = |n: &str| {
            config
                .attr(n)
                .filter(|v| v.is_fully_known())
                .cloned()
                .unwrap_or(Value::Null)
        };
        let json = |n: &str| model::to_json(&known(n));
        let attributes: BTreeMap<String, String> =
            serde_json::from_value(json("attributes")).unwrap_or_default();
        let allowed_hardware: Vec<String> =
            serde_json::from_value(json("allowed_hardware")).unwrap_or_default();
        let spec = EnrollmentSpec {
            enabled: true,
            // The template is checked by its own validator.
            name_template: None,
            allowed_hardware,
            max_devices: None,
            attributes,
            common_name_pattern: config
                .attr("common_name_pattern")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        };
        if let Err(e) = enrollment::validate(&spec) {
            diags.push(
                Diagnostic::error(format!("Invalid value for {}", e.field), e.message)
                    .at(AttrPath::parse(&e.field)),
            );
        }
    }

    async fn modify_plan(
        &self,
        _client: Option<&Client>,
        plan: &mut PlanChange<'_>,
        _diags: &mut Diagnostics,
    ) {
        if plan.is_create() {
            plan.set_planned("enrolled_count", Value::from(0));
        }
    }

    async fn create(
        &self,
        client: &Client,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let body = EnrollmentCreate {
            name: plan.name.clone(),
            ca_id: plan.ca_id.clone(),
            group_id: plan.group_id.clone(),
            name_template: plan.name_template.clone(),
            attributes: plan.attributes.clone().unwrap_or_default(),
            allowed_hardware: plan.allowed_hardware.clone().unwrap_or_default(),
            max_devices: plan.max_devices,
            enabled: plan.enabled.unwrap_or(true),
            common_name_pattern: plan.common_name_pattern.clone(),
        };
        let e: ApiEnrollment = client
            .post("/v1/enrollments", &body)
            .await
            .map_err(|e| api_diag("Could not create enrollment", e))?;
        Ok(from_api(e))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id else { return Ok(None) };
        let e: Option<ApiEnrollment> = client
            .get_opt(&format!("/v1/enrollments/{id}"))
            .await
            .map_err(|e| api_diag("Could not read enrollment", e))?;
        Ok(e.map(from_api))
    }

    async fn update(
        &self,
        client: &Client,
        prior: Model,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let id = prior.id.unwrap_or_default();
        let body = EnrollmentUpdate {
            name: plan.name.clone(),
            ca_id: plan.ca_id.clone(),
            group_id: plan.group_id.clone(),
            name_template: plan.name_template.clone(),
            attributes: plan.attributes.clone().unwrap_or_default(),
            allowed_hardware: plan.allowed_hardware.clone().unwrap_or_default(),
            max_devices: plan.max_devices,
            enabled: plan.enabled.unwrap_or(true),
            common_name_pattern: plan.common_name_pattern.clone(),
            version: prior.version.unwrap_or_default(),
        };
        let e: ApiEnrollment = client
            .put(&format!("/v1/enrollments/{id}"), &body)
            .await
            .map_err(|e| api_diag("Could not update enrollment", e))?;
        Ok(from_api(e))
    }

    async fn delete(&self, client: &Client, state: Model) -> Result<(), Diagnostics> {
        let id = state.id.unwrap_or_default();
        let version = state
            .version
            .map(|v| format!("?version={v}"))
            .unwrap_or_default();
        client
            .delete(&format!("/v1/enrollments/{id}{version}"))
            .await
            .map_err(|e| api_diag("Could not delete enrollment", e))
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

fn from_api(e: ApiEnrollment) -> Model {
    Model {
        id: Some(e.id),
        name: e.name,
        ca_id: e.ca_id,
        group_id: e.group_id,
        name_template: Some(e.name_template),
        attributes: Some(e.attributes),
        allowed_hardware: Some(e.allowed_hardware),
        max_devices: e.max_devices,
        enabled: Some(e.enabled),
        common_name_pattern: e.common_name_pattern,
        enrolled_count: Some(e.enrolled_count),
        version: Some(e.version),
    }
}
