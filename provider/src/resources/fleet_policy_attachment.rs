//! `fleet_policy_attachment`: attaches a policy to one device group
//! (inherited by its subgroups) or to one certificate. Attachments are
//! immutable: any change replaces the attachment.

use async_trait::async_trait;
use fleet_api::{PolicyAttachment as ApiAttachment, PolicyAttachmentCreate};
use serde::{Deserialize, Serialize};

use super::api_diag;
use crate::client::Client;
use crate::tfplugin::{
    validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, Resource, Schema, Value,
};

pub struct PolicyAttachment;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    policy_id: String,
    group_id: Option<String>,
    certificate_id: Option<String>,
}

#[async_trait]
impl Resource<Client> for PolicyAttachment {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_policy_attachment"
    }

    fn schema(&self) -> Schema {
        let not_empty = || {
            validators::string(|s| {
                if s.trim().is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(())
                }
            })
        };
        Schema::new(
            0,
            Block::new("Attaches a `fleet_policy` to exactly one target: a device group (its subgroups inherit it) or a certificate. Attachments cannot be changed in place; changing any argument replaces the attachment.")
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .description("The attachment's identifier in fleetd."),
                )
                .attr(
                    Attribute::string("policy_id")
                        .required()
                        .requires_replace()
                        .description("The `fleet_policy` to attach.")
                        .validate(not_empty()),
                )
                .attr(
                    Attribute::string("group_id")
                        .optional()
                        .requires_replace()
                        .description("The `fleet_device_group` to attach the policy to. Exactly one of `group_id` and `certificate_id` must be set.")
                        .validate(not_empty()),
                )
                .attr(
                    Attribute::string("certificate_id")
                        .optional()
                        .requires_replace()
                        .description("The `fleet_certificate` to attach the policy to. Exactly one of `group_id` and `certificate_id` must be set.")
                        .validate(not_empty()),
                ),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let group = config.attr("group_id").unwrap_or(&Value::Null);
        let cert = config.attr("certificate_id").unwrap_or(&Value::Null);
        if group.is_null() && cert.is_null() {
            // Both known to be null.
            diags.push(
                Diagnostic::error(
                    "Missing attachment target",
                    "Set exactly one of group_id (attach to a device group and its subgroups) or certificate_id (attach to one certificate).",
                )
                .at(AttrPath::root("group_id")),
            );
        } else if group.is_fully_known()
            && cert.is_fully_known()
            && !group.is_null()
            && !cert.is_null()
        {
            // An unknown value may still turn out null: not an error yet.
            diags.push(
                Diagnostic::error(
                    "Conflicting attachment targets",
                    "certificate_id conflicts with group_id: a policy attachment targets exactly one of group_id, certificate_id. Use two attachments to attach the policy to both.",
                )
                .at(AttrPath::root("certificate_id")),
            );
        }
    }

    async fn create(
        &self,
        client: &Client,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let body = PolicyAttachmentCreate {
            policy_id: plan.policy_id.clone(),
            group_id: plan.group_id.clone(),
            certificate_id: plan.certificate_id.clone(),
        };
        let a: ApiAttachment = client
            .post("/v1/policy-attachments", &body)
            .await
            .map_err(|e| api_diag("Could not attach policy", e))?;
        Ok(from_api(a))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id else { return Ok(None) };
        let a: Option<ApiAttachment> = client
            .get_opt(&format!("/v1/policy-attachments/{id}"))
            .await
            .map_err(|e| api_diag("Could not read policy attachment", e))?;
        Ok(a.map(from_api))
    }

    /// Never planned: every argument requires replacement.
    async fn update(
        &self,
        client: &Client,
        prior: Model,
        _plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        match self.read(client, prior).await? {
            Some(m) => Ok(m),
            None => Err(Diagnostic::error(
                "Policy attachment not found",
                "the attachment was deleted outside Terraform; run terraform apply again to recreate it",
            )
            .into()),
        }
    }

    async fn delete(&self, client: &Client, state: Model) -> Result<(), Diagnostics> {
        let id = state.id.unwrap_or_default();
        client
            .delete(&format!("/v1/policy-attachments/{id}"))
            .await
            .map_err(|e| api_diag("Could not detach policy", e))
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

fn from_api(a: ApiAttachment) -> Model {
    Model {
        id: Some(a.id),
        policy_id: a.policy_id,
        group_id: a.group_id,
        certificate_id: a.certificate_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn errors(group: Value, cert: Value) -> Vec<String> {
        let cfg = Value::Object(BTreeMap::from([
            ("policy_id".to_string(), Value::String("p".into())),
            ("group_id".to_string(), group),
            ("certificate_id".to_string(), cert),
        ]));
        let mut d = Diagnostics::new();
        PolicyAttachment.validate(&cfg, &mut d);
        d.0.iter()
            .map(|d| d.path.as_ref().unwrap().to_string())
            .collect()
    }

    #[test]
    fn exactly_one_target() {
        let g = || Value::String("g".into());
        assert!(errors(g(), Value::Null).is_empty());
        assert!(errors(Value::Null, g()).is_empty());
        assert!(errors(Value::Unknown, Value::Null).is_empty());
        assert_eq!(errors(g(), g()), vec!["certificate_id"]);
        assert!(errors(Value::Unknown, g()).is_empty());
        assert_eq!(errors(Value::Null, Value::Null), vec!["group_id"]);
    }
}
