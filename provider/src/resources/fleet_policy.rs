//! `fleet_policy`: an access policy for fleetd's device API — deny by
//! default, an explicit deny always wins. Statements are validated at plan
//! time with fleetd's own rules, so a typo in an action is an error at
//! `statement[i].actions[j]`, not a permission that never matches.

use async_trait::async_trait;
use fleet_api::{Policy as ApiPolicy, PolicyCreate, PolicyStatement, PolicyUpdate};
use fleet_domain::policy::{self as rules, Effect, Statement};
use serde::{Deserialize, Serialize};

use super::{api_diag, retarget};
use crate::client::Client;
use crate::tfplugin::diag::Step;
use crate::tfplugin::{
    validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, NestedBlock, PlanChange,
    Resource, Schema, Value,
};

pub struct Policy;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Model {
    id: Option<String>,
    name: String,
    description: Option<String>,
    statement: Option<Vec<StatementModel>>,
    policy_version: Option<i64>,
    version: Option<i64>,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct StatementModel {
    effect: String,
    actions: Vec<String>,
    resources: Vec<String>,
}

#[async_trait]
impl Resource<Client> for Policy {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_policy"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("An access policy enforced by fleetd's device API. Deny by default: a request is allowed only when some statement allows it and no statement denies it. Attach it with `fleet_policy_attachment`.")
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .description("The policy's identifier in fleetd."),
                )
                .attr(
                    Attribute::string("name")
                        .required()
                        .description("Name, unique across the fleet: 1–128 letters, digits, `.`, `_`, `-`, starting with a letter or digit.")
                        .validate(validators::string(|s| rules::validate_name(s).map_err(|e| e.message))),
                )
                .attr(
                    Attribute::string("description")
                        .default("")
                        .description("Free text shown to operators (at most 1024 characters).")
                        .validate(validators::string(|s| {
                            fleet_domain::group::validate_description(s).map_err(|e| e.message)
                        })),
                )
                .attr(
                    Attribute::number("policy_version")
                        .computed()
                        .description("Version of the statements: 1 on creation, +1 each time `statement` blocks change (renames and description edits do not count). fleetd keeps the last 10."),
                )
                .attr(
                    Attribute::number("version")
                        .computed()
                        .description("fleetd's object version, used for optimistic concurrency."),
                )
                .block(
                    NestedBlock::list(
                        "statement",
                        Block::new("One rule: `effect` on `actions` over `resources`.")
                            .attr(
                                Attribute::string("effect")
                                    .required()
                                    .description("`allow` or `deny`. A matching `deny` always wins.")
                                    .validate(validators::one_of(&["allow", "deny"])),
                            )
                            .attr(
                                Attribute::string_list("actions")
                                    .required()
                                    .description("Device API actions: `device:checkin`, `device:enroll`, `config:read`, `firmware:download`, `firmware:report`, `telemetry:publish`, a service wildcard such as `firmware:*`, or `*`."),
                            )
                            .attr(
                                Attribute::string_list("resources")
                                    .required()
                                    .description("Resource patterns `fleet:<type>/<id>` (types `device`, `group`, `config`, `firmware`, `telemetry`), `*` matching any run of characters, with variables `${device.id}`, `${device.name}`, `${device.group}`, `${device.hardware}`, `${device.attr.<key>}` (write `$${...}` in HCL)."),
                            ),
                    )
                    .items(1, rules::MAX_STATEMENTS as i64),
                ),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let Some(Value::List(statements)) = config.attr("statement") else {
            return;
        };
        for (i, s) in statements.iter().enumerate() {
            validate_statement(i, s, diags);
        }
    }

    async fn modify_plan(
        &self,
        _client: Option<&Client>,
        plan: &mut PlanChange<'_>,
        _diags: &mut Diagnostics,
    ) {
        // Only a change of the statements makes a new policy version: a
        // rename or a new description keeps the one in state.
        if !plan.is_create() && plan.planned_attr("statement") == plan.prior_attr("statement") {
            let prior = plan.prior_attr("policy_version").clone();
            plan.set_planned("policy_version", prior);
        }
    }

    async fn create(
        &self,
        client: &Client,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let body = PolicyCreate {
            name: plan.name.clone(),
            description: plan.description.clone().unwrap_or_default(),
            statements: to_wire(&plan),
        };
        let p: ApiPolicy = client
            .post("/v1/policies", &body)
            .await
            .map_err(|e| errors("Could not create policy", e))?;
        Ok(from_api(p))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id else { return Ok(None) };
        let p: Option<ApiPolicy> = client
            .get_opt(&format!("/v1/policies/{id}"))
            .await
            .map_err(|e| errors("Could not read policy", e))?;
        Ok(p.map(from_api))
    }

    async fn update(
        &self,
        client: &Client,
        prior: Model,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let id = prior.id.unwrap_or_default();
        let body = PolicyUpdate {
            name: plan.name.clone(),
            description: plan.description.clone().unwrap_or_default(),
            statements: to_wire(&plan),
            version: prior.version.unwrap_or_default(),
        };
        let p: ApiPolicy = client
            .put(&format!("/v1/policies/{id}"), &body)
            .await
            .map_err(|e| errors("Could not update policy", e))?;
        Ok(from_api(p))
    }

    async fn delete(&self, client: &Client, state: Model) -> Result<(), Diagnostics> {
        let id = state.id.unwrap_or_default();
        let version = state
            .version
            .map(|v| format!("?version={v}"))
            .unwrap_or_default();
        client
            .delete(&format!("/v1/policies/{id}{version}"))
            .await
            .map_err(|e| errors("Could not delete policy", e))
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

/// Checks one `statement` block with fleetd's rules. Every known action and
/// resource is checked on its own, so all mistakes are reported at once,
/// each at its own path (`statement[1].actions[0]`); unknown values are
/// skipped.
fn validate_statement(i: usize, s: &Value, diags: &mut Diagnostics) {
    let at = |e: fleet_domain::FieldError, j: usize| {
        // The domain saw a one-statement policy with one entry: put the
        // real indices back.
        let mut path = AttrPath::parse(&e.field);
        let mut indices = [i, j].into_iter();
        for step in &mut path.0 {
            if let Step::Index(n) = step {
                *n = indices.next().unwrap_or(0) as i64;
            }
        }
        Diagnostic::error(format!("Invalid policy statement at {path}"), e.message).at(path)
    };
    for (list, other) in [("actions", "resources"), ("resources", "actions")] {
        let Some(Value::List(items)) = s.attr(list) else {
            continue;
        };
        if items.is_empty() {
            let mut st = Statement {
                effect: Effect::Allow,
                actions: vec!["*".into()],
                resources: vec!["*".into()],
            };
            *entries(&mut st, list) = Vec::new();
            if let Err(e) = rules::validate_statements(&[st]) {
                diags.push(at(e, 0));
            }
            continue;
        }
        for (j, item) in items.iter().enumerate() {
            let Some(text) = item.as_str() else { continue };
            let mut st = Statement {
                effect: Effect::Allow,
                actions: vec!["*".into()],
                resources: vec!["*".into()],
            };
            *entries(&mut st, list) = vec![text.to_string()];
            *entries(&mut st, other) = vec!["*".into()];
            if let Err(e) = rules::validate_statements(&[st]) {
                diags.push(at(e, j));
            }
        }
    }
}

fn entries<'a>(s: &'a mut Statement, list: &str) -> &'a mut Vec<String> {
    if list == "actions" {
        &mut s.actions
    } else {
        &mut s.resources
    }
}

/// fleetd calls the list `statements` on the wire; the HCL block is
/// `statement`.
fn errors(action: &str, e: crate::client::ClientError) -> Diagnostics {
    retarget(api_diag(action, e), &[("statements", "statement")], &[])
}

fn to_wire(m: &Model) -> Vec<PolicyStatement> {
    m.statement
        .iter()
        .flatten()
        .map(|s| PolicyStatement {
            effect: s.effect.clone(),
            actions: s.actions.clone(),
            resources: s.resources.clone(),
        })
        .collect()
}

fn from_api(p: ApiPolicy) -> Model {
    Model {
        id: Some(p.id),
        name: p.name,
        description: Some(p.description),
        statement: Some(
            p.statements
                .into_iter()
                .map(|s| StatementModel {
                    effect: s.effect,
                    actions: s.actions,
                    resources: s.resources,
                })
                .collect(),
        ),
        policy_version: Some(p.policy_version),
        version: Some(p.version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    fn statement(actions: Vec<Value>, resources: Vec<Value>) -> Value {
        Value::Object(BTreeMap::from([
            ("effect".to_string(), s("allow")),
            ("actions".to_string(), Value::List(actions)),
            ("resources".to_string(), Value::List(resources)),
        ]))
    }

    fn paths(config: Value) -> Vec<String> {
        let mut d = Diagnostics::new();
        Policy.validate(&config, &mut d);
        d.0.iter()
            .map(|d| d.path.as_ref().map(|p| p.to_string()).unwrap_or_default())
            .collect()
    }

    fn policy(statements: Vec<Value>) -> Value {
        Value::Object(BTreeMap::from([(
            "statement".to_string(),
            Value::List(statements),
        )]))
    }

    #[test]
    fn every_bad_entry_is_reported_at_its_own_path() {
        let cfg = policy(vec![
            statement(vec![s("config:read")], vec![s("fleet:device/${device.id}")]),
            statement(
                vec![s("config:read"), s("firmware:donwload")],
                vec![s("fleet:nope/x"), s("*")],
            ),
        ]);
        assert_eq!(
            paths(cfg),
            vec!["statement[1].actions[1]", "statement[1].resources[0]"]
        );
    }

    #[test]
    fn empty_lists_and_unknowns() {
        let cfg = policy(vec![statement(vec![], vec![Value::Unknown, s("bad")])]);
        assert_eq!(
            paths(cfg),
            vec!["statement[0].actions", "statement[0].resources[1]"]
        );
        assert!(paths(policy(vec![statement(vec![Value::Unknown], vec![s("*")])])).is_empty());
        assert!(paths(Value::Unknown).is_empty());
    }
}
