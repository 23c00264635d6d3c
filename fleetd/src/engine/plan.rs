//! A stored rollout back into the domain's [`RolloutPlan`].

use crate::domain::rollout::{
    self, FailureThresholdSpec, MaintenanceWindowSpec, PhaseSpec, RateSpec, RolloutPlan,
};
use crate::domain::FieldError;
use crate::store::Rollout;

/// The plan of a stored rollout. Definitions are validated before they
/// are stored, so an error here means the database was edited by hand (or
/// a rule got stricter); the engine then leaves the rollout alone and
/// logs why.
pub fn plan_of(r: &Rollout) -> Result<RolloutPlan, FieldError> {
    rollout::validate(&rollout::RolloutSpec {
        target_group_ids: r.target_group_ids.clone(),
        phases: r
            .phases
            .iter()
            .map(|p| PhaseSpec {
                percent: p.percent,
                soak: Some(p.soak.clone()),
            })
            .collect(),
        rate: r.rate.as_ref().map(|x| RateSpec {
            per_minute: i64::from(x.per_minute),
            growth_factor: Some(x.growth_factor),
        }),
        failure_threshold: Some(FailureThresholdSpec {
            percent: r.failure_threshold.percent,
            min_devices: i64::from(r.failure_threshold.min_devices),
            action: r.failure_threshold.action.clone(),
        }),
        device_timeout: Some(r.device_timeout.clone()),
        max_retries: Some(i64::from(r.max_retries)),
        start_at: r.start_at.clone(),
        maintenance_window: r
            .maintenance_window
            .as_ref()
            .map(|w| MaintenanceWindowSpec {
                days: w.days.clone(),
                start: w.start.clone(),
                duration: w.duration.clone(),
            }),
        continuous: r.continuous,
        state: Some(r.state.as_str().to_owned()),
    })
}
