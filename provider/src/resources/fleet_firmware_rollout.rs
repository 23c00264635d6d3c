//! `fleet_firmware_rollout`: a staged OTA rollout of one firmware release to
//! device groups — phases with soak times (or an exponential rate), a
//! failure threshold that pauses, aborts or rolls back, schedules and
//! maintenance windows. `status`, `counts` and `current_phase` are live:
//! every refresh reads them in O(1) from fleetd.

use async_trait::async_trait;
use fleet_api::{
    FailureThreshold, MaintenanceWindow, Rollout, RolloutCounts, RolloutCreate, RolloutPhase,
    RolloutRate, RolloutUpdate,
};
use fleet_domain::rollout as rules;
use serde::{Deserialize, Serialize};

use super::api_diag;
use crate::client::Client;
use crate::tfplugin::{
    model, validators, AttrPath, Attribute, Block, Diagnostic, Diagnostics, NestedBlock, Resource,
    Schema, Type, Value,
};

pub struct FirmwareRollout;

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct Model {
    pub id: Option<String>,
    pub name: String,
    pub firmware_id: String,
    pub target_group_ids: Option<Vec<String>>,
    pub phase: Option<Vec<PhaseModel>>,
    pub rate: Option<RateModel>,
    pub failure_threshold: Option<ThresholdModel>,
    pub device_timeout: Option<String>,
    pub max_retries: Option<i64>,
    pub start_at: Option<String>,
    pub maintenance_window: Option<WindowModel>,
    pub continuous: Option<bool>,
    pub state: Option<String>,
    pub status: Option<String>,
    pub counts: Option<CountsModel>,
    pub current_phase: Option<i64>,
    pub version: Option<i64>,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct PhaseModel {
    pub percent: f64,
    pub soak: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct RateModel {
    pub per_minute: i64,
    pub growth_factor: Option<f64>,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct ThresholdModel {
    pub percent: f64,
    pub min_devices: Option<i64>,
    pub action: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct WindowModel {
    pub days: Vec<String>,
    pub start: String,
    pub duration: String,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct CountsModel {
    pub targeted: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rolled_back: i64,
}

/// The cty type of `counts`, shared with the data source.
pub fn counts_type() -> Type {
    Type::Object(
        [
            "targeted",
            "pending",
            "in_progress",
            "succeeded",
            "failed",
            "rolled_back",
        ]
        .into_iter()
        .map(|k| (k.to_string(), Type::Number))
        .collect(),
    )
}

#[async_trait]
impl Resource<Client> for FirmwareRollout {
    type Model = Model;

    fn type_name(&self) -> &'static str {
        "fleet_firmware_rollout"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new("A staged over-the-air rollout of a `fleet_firmware` release to device groups. Devices are assigned phase by phase (or at an exponential rate); a phase advances when its devices succeeded and its soak time elapsed; crossing the failure threshold pauses, aborts or rolls back. `status`, `counts` and `current_phase` show live progress on every refresh.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().description("The rollout's identifier in fleetd."))
                .attr(Attribute::string("name").required().description("Name shown to operators.").validate(crate::resources::fleet_certificate::domain_check(fleet_domain::group::validate_name)))
                .attr(
                    Attribute::string("firmware_id")
                        .required()
                        .requires_replace()
                        .description("The `fleet_firmware` to roll out. Changing it creates a new rollout."),
                )
                .attr(
                    Attribute::string_set("target_group_ids")
                        .required()
                        .description("Groups whose devices (static and dynamic members, compatible hardware only) receive the firmware."),
                )
                .attr(Attribute::string("device_timeout").default("1h").description("How long a device may take to report a result before it counts as failed, e.g. `30m`."))
                .attr(
                    Attribute::number("max_retries")
                        .default(Value::from(rules::DEFAULT_MAX_RETRIES as i64))
                        .description("Retries per device before its update counts as failed.")
                        .validate(validators::int_between(0, rules::MAX_RETRIES)),
                )
                .attr(Attribute::string("start_at").optional().description("RFC 3339 time before which no device is assigned."))
                .attr(Attribute::bool("continuous").default(false).description("Devices that join the target groups later also get the firmware."))
                .attr(
                    Attribute::string("state")
                        .default("running")
                        .description("Desired state: `running`, `paused` or `cancelled` (final). Set `paused` to hold the rollout in place.")
                        .validate(validators::one_of(&["running", "paused", "cancelled"])),
                )
                .attr(Attribute::string("status").computed().description("Live status: `pending`, `running`, `paused`, `completed`, `aborted`, `rolled_back` or `cancelled`."))
                .attr(Attribute::new("counts", counts_type()).computed().description("Live device counts: `targeted`, `pending`, `in_progress`, `succeeded`, `failed`, `rolled_back`."))
                .attr(Attribute::number("current_phase").computed().description("Index of the phase in progress (0-based)."))
                .attr(Attribute::number("version").computed().description("fleetd's object version, used for optimistic concurrency."))
                .block(
                    NestedBlock::list(
                        "phase",
                        Block::new("One stage: assign up to `percent` of the targets, then wait `soak` after they succeed.")
                            .attr(Attribute::number("percent").required().description("Cumulative share of targeted devices, (0, 100]; increasing; the last phase is 100."))
                            .attr(Attribute::string("soak").default("0s").description("Wait after the phase succeeded, e.g. `30m`, `1h`.")),
                    )
                    .items(0, rules::MAX_PHASES as i64),
                )
                .block(
                    NestedBlock::single(
                        "rate",
                        Block::new("Exponential rate instead of phases: `per_minute` devices in the first minute, multiplied by `growth_factor` every minute.")
                            .attr(Attribute::number("per_minute").required())
                            .attr(Attribute::number("growth_factor").default(Value::from(1))),
                    ),
                )
                .block(
                    NestedBlock::single(
                        "failure_threshold",
                        Block::new("When more than `percent` of finished devices failed (after at least `min_devices` results), take `action`. Without this block fleetd's default applies (5% after 10 devices, pause).")
                            .attr(Attribute::number("percent").required())
                            .attr(Attribute::number("min_devices").default(Value::from(rules::DEFAULT_FAILURE_MIN_DEVICES as i64)))
                            .attr(Attribute::string("action").default("pause").validate(validators::one_of(&["pause", "abort", "rollback"]))),
                    ),
                )
                .block(
                    NestedBlock::single(
                        "maintenance_window",
                        Block::new("Devices are only assigned while the window is open (UTC).")
                            .attr(Attribute::string_set("days").required().description("`mon` … `sun`."))
                            .attr(Attribute::string("start").required().description("`HH:MM`, UTC."))
                            .attr(Attribute::string("duration").required().description("e.g. `4h`.")),
                    ),
                ),
        )
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        // Validate with fleetd's own rules once everything they read is known
        // (target groups are often unknown until their groups exist).
        let Value::Object(attrs) = config else { return };
        let known = attrs
            .iter()
            .filter(|(k, _)| k.as_str() != "target_group_ids")
            .all(|(_, v)| v.is_fully_known());
        if !known {
            return;
        }
        let mut attrs = attrs.clone();
        attrs.insert("target_group_ids".into(), Value::Null);
        let Ok(m) = model::decode::<Model>(&Value::Object(attrs)) else {
            return;
        };
        let mut spec = spec_of(&m);
        spec.target_group_ids = vec!["-".into()];
        if spec.phases.is_empty() && spec.rate.is_none() {
            diags.push(
                Diagnostic::error(
                    "Missing rollout strategy",
                    "Add `phase` blocks (ending at 100 percent) or one `rate` block.",
                )
                .at(AttrPath::root("phase")),
            );
            return;
        }
        if let Err(e) = rules::validate(&spec) {
            diags.push(
                Diagnostic::error("Invalid rollout", e.to_string()).at(AttrPath::parse(&e.field)),
            );
        }
    }

    async fn create(
        &self,
        client: &Client,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let body = RolloutCreate {
            name: plan.name.clone(),
            firmware_id: plan.firmware_id.clone(),
            target_group_ids: plan.target_group_ids.clone().unwrap_or_default(),
            phases: phases_of(&plan),
            rate: rate_of(&plan),
            failure_threshold: threshold_of(&plan),
            device_timeout: plan.device_timeout.clone(),
            max_retries: plan.max_retries.map(|n| n as u32),
            start_at: plan.start_at.clone(),
            maintenance_window: window_of(&plan),
            continuous: plan.continuous.unwrap_or(false),
            state: plan.state.clone(),
        };
        let r: Rollout = client
            .post("/v1/rollouts", &body)
            .await
            .map_err(|e| api_diag("Could not create firmware rollout", e))?;
        Ok(from_api(r, &plan))
    }

    async fn read(&self, client: &Client, state: Model) -> Result<Option<Model>, Diagnostics> {
        let Some(id) = state.id.clone() else {
            return Ok(None);
        };
        let r: Option<Rollout> = client
            .get_opt(&format!("/v1/rollouts/{id}"))
            .await
            .map_err(|e| api_diag("Could not read firmware rollout", e))?;
        Ok(r.map(|r| from_api(r, &state)))
    }

    async fn update(
        &self,
        client: &Client,
        prior: Model,
        plan: Model,
        _config: Model,
    ) -> Result<Model, Diagnostics> {
        let id = prior.id.clone().unwrap_or_default();
        let body = RolloutUpdate {
            name: plan.name.clone(),
            firmware_id: Some(plan.firmware_id.clone()),
            target_group_ids: plan.target_group_ids.clone().unwrap_or_default(),
            phases: phases_of(&plan),
            rate: rate_of(&plan),
            failure_threshold: threshold_of(&plan),
            device_timeout: plan.device_timeout.clone(),
            max_retries: plan.max_retries.map(|n| n as u32),
            start_at: plan.start_at.clone(),
            maintenance_window: window_of(&plan),
            continuous: plan.continuous.unwrap_or(false),
            state: plan.state.clone(),
            version: prior.version.unwrap_or_default(),
        };
        let r: Rollout = client
            .put(&format!("/v1/rollouts/{id}"), &body)
            .await
            .map_err(|e| api_diag("Could not update firmware rollout", e))?;
        Ok(from_api(r, &plan))
    }

    async fn delete(&self, client: &Client, state: Model) -> Result<(), Diagnostics> {
        let id = state.id.unwrap_or_default();
        let version = state
            .version
            .map(|v| format!("?version={v}"))
            .unwrap_or_default();
        client
            .delete(&format!("/v1/rollouts/{id}{version}"))
            .await
            .map_err(|e| api_diag("Could not delete firmware rollout", e))
    }

    async fn import(&self, client: &Client, id: &str) -> Result<Option<Model>, Diagnostics> {
        let r: Option<Rollout> = client
            .get_opt(&format!("/v1/rollouts/{id}"))
            .await
            .map_err(|e| api_diag("Could not read firmware rollout", e))?;
        // An imported rollout shows every block fleetd holds, including the
        // failure threshold's defaults.
        Ok(r.map(|r| {
            let known = Model {
                failure_threshold: Some(ThresholdModel::default()),
                ..Default::default()
            };
            from_api(r, &known)
        }))
    }
}

fn phases_of(m: &Model) -> Vec<RolloutPhase> {
    m.phase
        .iter()
        .flatten()
        .map(|p| RolloutPhase {
            percent: p.percent,
            soak: p.soak.clone().unwrap_or_else(|| "0s".into()),
        })
        .collect()
}

fn rate_of(m: &Model) -> Option<RolloutRate> {
    m.rate.as_ref().map(|r| RolloutRate {
        per_minute: r.per_minute.max(0) as u32,
        growth_factor: r.growth_factor.unwrap_or(1.0),
    })
}

fn threshold_of(m: &Model) -> Option<FailureThreshold> {
    m.failure_threshold.as_ref().map(|t| FailureThreshold {
        percent: t.percent,
        min_devices: t
            .min_devices
            .unwrap_or(rules::DEFAULT_FAILURE_MIN_DEVICES as i64)
            .max(0) as u32,
        action: t.action.clone().unwrap_or_else(|| "pause".into()),
    })
}

fn window_of(m: &Model) -> Option<MaintenanceWindow> {
    m.maintenance_window.as_ref().map(|w| MaintenanceWindow {
        days: w.days.clone(),
        start: w.start.clone(),
        duration: w.duration.clone(),
    })
}

fn spec_of(m: &Model) -> rules::RolloutSpec {
    rules::RolloutSpec {
        target_group_ids: m.target_group_ids.clone().unwrap_or_default(),
        phases: m
            .phase
            .iter()
            .flatten()
            .map(|p| rules::PhaseSpec {
                percent: p.percent,
                soak: p.soak.clone(),
            })
            .collect(),
        rate: m.rate.as_ref().map(|r| rules::RateSpec {
            per_minute: r.per_minute,
            growth_factor: r.growth_factor,
        }),
        failure_threshold: threshold_of(m).map(|t| rules::FailureThresholdSpec {
            percent: t.percent,
            min_devices: t.min_devices as i64,
            action: t.action,
        }),
        device_timeout: m.device_timeout.clone(),
        max_retries: m.max_retries,
        start_at: m.start_at.clone(),
        maintenance_window: m
            .maintenance_window
            .as_ref()
            .map(|w| rules::MaintenanceWindowSpec {
                days: w.days.clone(),
                start: w.start.clone(),
                duration: w.duration.clone(),
            }),
        continuous: m.continuous.unwrap_or(false),
        state: m.state.clone(),
    }
}

/// Durations mean the same in any spelling (`60m` = `1h`): keep the one
/// Terraform knows when fleetd's canonical text means the same.
fn same_duration(server: String, known: Option<&String>) -> String {
    match known {
        Some(k)
            if fleet_domain::duration::parse("d", k).ok()
                == fleet_domain::duration::parse("d", &server).ok() =>
        {
            k.clone()
        }
        _ => server,
    }
}

/// Instants mean the same in any RFC 3339 spelling.
fn same_instant(server: Option<String>, known: Option<&String>) -> Option<String> {
    match (server, known) {
        (Some(s), Some(k)) => {
            let a = chrono::DateTime::parse_from_rfc3339(&s).ok();
            let b = chrono::DateTime::parse_from_rfc3339(k).ok();
            if a.is_some() && a == b {
                Some(k.clone())
            } else {
                Some(s)
            }
        }
        (s, _) => s,
    }
}

/// Builds the model from fleetd's answer, keeping `known` spellings where
/// they mean the same, and leaving the failure threshold unset when
/// Terraform never set it.
fn from_api(r: Rollout, known: &Model) -> Model {
    let known_phases = known.phase.clone().unwrap_or_default();
    let phase: Vec<PhaseModel> = r
        .phases
        .into_iter()
        .enumerate()
        .map(|(i, p)| PhaseModel {
            percent: p.percent,
            soak: Some(same_duration(
                p.soak,
                known_phases.get(i).and_then(|k| k.soak.as_ref()),
            )),
        })
        .collect();
    let mut target_group_ids = r.target_group_ids;
    target_group_ids.sort();
    let known_days: Option<Vec<String>> = known.maintenance_window.as_ref().map(|w| w.days.clone());
    Model {
        id: Some(r.id),
        name: r.name,
        firmware_id: r.firmware_id,
        target_group_ids: Some(target_group_ids),
        phase: Some(phase),
        rate: r.rate.map(|x| RateModel {
            per_minute: x.per_minute as i64,
            growth_factor: Some(x.growth_factor),
        }),
        failure_threshold: known.failure_threshold.as_ref().map(|_| ThresholdModel {
            percent: r.failure_threshold.percent,
            min_devices: Some(r.failure_threshold.min_devices as i64),
            action: Some(r.failure_threshold.action.clone()),
        }),
        device_timeout: Some(same_duration(
            r.device_timeout,
            known.device_timeout.as_ref(),
        )),
        max_retries: Some(r.max_retries as i64),
        start_at: same_instant(r.start_at, known.start_at.as_ref()),
        maintenance_window: r.maintenance_window.map(|w| WindowModel {
            days: match known_days {
                Some(d) if same_set(&d, &w.days) => d,
                _ => w.days,
            },
            start: w.start,
            duration: same_duration(
                w.duration,
                known.maintenance_window.as_ref().map(|k| &k.duration),
            ),
        }),
        continuous: Some(r.continuous),
        state: Some(r.state),
        status: Some(r.status),
        counts: Some(counts(r.counts)),
        current_phase: Some(r.current_phase),
        version: Some(r.version),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let x: std::collections::BTreeSet<String> = a.iter().map(|s| s.to_lowercase()).collect();
    let y: std::collections::BTreeSet<String> = b.iter().map(|s| s.to_lowercase()).collect();
    x == y
}

pub fn counts(c: RolloutCounts) -> CountsModel {
    CountsModel {
        targeted: c.targeted,
        pending: c.pending,
        in_progress: c.in_progress,
        succeeded: c.succeeded,
        failed: c.failed,
        rolled_back: c.rolled_back,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfplugin::model;

    fn config(phases: &[(f64, Option<&str>)]) -> Value {
        let j = serde_json::json!({
            "name": "r",
            "firmware_id": "f",
            "target_group_ids": ["g"],
            "phase": phases.iter().map(|(p, s)| serde_json::json!({"percent": p, "soak": s})).collect::<Vec<_>>(),
        });
        model::from_json(&j, &FirmwareRollout.schema().object_type(), false).unwrap()
    }

    fn errors(v: &Value) -> Vec<String> {
        let mut d = Diagnostics::new();
        Resource::validate(&FirmwareRollout, v, &mut d);
        d.0.iter()
            .map(|d| {
                format!(
                    "{}: {}",
                    d.path.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                    d.detail
                )
            })
            .collect()
    }

    #[test]
    fn phases_are_validated_with_fleetds_rules() {
        assert_eq!(
            errors(&config(&[(1.0, Some("30m")), (100.0, None)])),
            Vec::<String>::new()
        );
        let e = errors(&config(&[(10.0, None), (5.0, None), (100.0, None)]));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("phase[1].percent"), "{e:?}");
        let e = errors(&config(&[(10.0, Some("soon")), (100.0, None)]));
        assert!(e[0].starts_with("phase[0].soak"), "{e:?}");
        let e = errors(&config(&[]));
        assert!(e[0].starts_with("phase"), "{e:?}");
    }
}
