//! `POST /v1/device/results`: what happened to an assignment.
//!
//! Needs `firmware:report` on the device and on the rollout's firmware.
//! The engine records the outcome idempotently (a repeated report changes
//! nothing), so a device that lost the response may simply send it again.
//! Results are group-committed ([`super::group_commit`]): the answer comes
//! once the device's result is durable.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use chrono::Utc;
use fleet_api::device_api::{ResultAck, ResultReport, UpdateOutcome as WireOutcome};

use super::auth::{not_found, Caller};
use super::authz::FIRMWARE_REPORT;
use super::error::DeviceError;
use super::group_commit::GroupCommit;
use super::DeviceState;
use crate::store::engine::{ResultRecord, UpdateOutcome};
use crate::store::{Store, StoreError};

/// The group-commit writer of update results: results reported together
/// are recorded in one transaction.
pub fn writer(store: Arc<dyn Store>) -> GroupCommit<ResultRecord> {
    GroupCommit::spawn("update results", move |batch| {
        let store = Arc::clone(&store);
        async move { store.record_results(batch).await }
    })
}

/// Longest accepted failure reason.
const MAX_REASON_LEN: usize = 1024;

pub async fn report(
    State(state): State<DeviceState>,
    caller: Caller,
    body: Result<Json<ResultReport>, JsonRejection>,
) -> Result<Json<ResultAck>, DeviceError> {
    let Json(body) = body?;
    if body.rollout_id.trim().is_empty() {
        return Err(DeviceError::invalid("rollout_id: must not be empty"));
    }
    if body
        .reason
        .as_deref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_LEN)
    {
        return Err(DeviceError::invalid(format!(
            "reason: at most {MAX_REASON_LEN} characters are allowed"
        )));
    }
    caller.authorize(&state, FIRMWARE_REPORT, None)?;
    let rollout = match state.store.get_rollout(&body.rollout_id).await {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => {
            return Err(not_found(format!(
                "rollout_id: rollout {:?} not found",
                body.rollout_id
            )))
        }
        Err(e) => return Err(e.into()),
    };
    caller.authorize(&state, FIRMWARE_REPORT, Some(&rollout.firmware_id))?;

    let outcome = match body.outcome {
        WireOutcome::Succeeded => UpdateOutcome::Succeeded,
        WireOutcome::Failed => UpdateOutcome::Failed {
            reason: body
                .reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "unspecified".to_owned()),
        },
        WireOutcome::RolledBack => UpdateOutcome::RolledBack,
    };
    match state
        .results
        .submit(ResultRecord {
            device_id: caller.device.id.clone(),
            rollout_id: body.rollout_id.clone(),
            outcome,
            at: Utc::now(),
        })
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound { kind, id }) => {
            return Err(not_found(format!(
                "no assignment of rollout {} to this device ({kind} {id} not found)",
                body.rollout_id
            )))
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Json(ResultAck {
        device_id: caller.device.id,
        rollout_id: body.rollout_id,
        outcome: body.outcome,
    }))
}
