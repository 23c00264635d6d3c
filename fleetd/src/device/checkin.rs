//! `POST /v1/device/checkin`, `GET /v1/device/config`,
//! `GET /v1/device/assignment`.
//!
//! A check-in reports state and gets everything a device needs back in
//! one round trip: its effective config and its firmware assignment.
//! `device:checkin` is required; config and assignment are included only
//! where `config:read` and `firmware:download` are allowed, and what is
//! withheld is named in `denied` (the dedicated GET routes answer 403
//! instead).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use chrono::{SecondsFormat, Utc};
use fleet_api::device_api::{
    AssignmentResponse, CheckinRequest, CheckinResponse, ConfigResponse, FirmwareAssignment,
};

use std::sync::Arc;

use chrono::DateTime;

use super::auth::{Authenticated, Caller};
use super::authz::{CONFIG_READ, DEVICE_CHECKIN, FIRMWARE_DOWNLOAD};
use super::error::DeviceError;
use super::group_commit::GroupCommit;
use super::request_cache::{Reported, RequestCache};
use super::DeviceState;
use crate::store::device_api::{CheckinReport, ComplianceInput};
use crate::store::engine::Assignment;
use crate::store::{ObjectKind, Store, StoreError};

/// A check-in waiting for its group commit: device id, report, time.
pub type QueuedCheckin = (String, CheckinReport, DateTime<Utc>);

/// The group-commit writer of check-in reports.
/// Once a batch is committed, the devices cached in `requests` are
/// patched with what they reported.
pub fn writer(store: Arc<dyn Store>, requests: Arc<RequestCache>) -> GroupCommit<QueuedCheckin> {
    GroupCommit::spawn("check-ins", move |batch: Vec<QueuedCheckin>| {
        let store = Arc::clone(&store);
        let requests = Arc::clone(&requests);
        async move {
            let reported: Vec<Reported> = batch
                .iter()
                .map(|(id, report, at)| Reported {
                    device_id: id.clone(),
                    firmware_version: report.firmware_version.clone(),
                    health: report.health.clone(),
                    at: *at,
                })
                .collect();
            let found = store.record_checkins(batch).await?;
            requests.reported(
                reported
                    .iter()
                    .zip(&found)
                    .filter_map(|(r, found)| found.then_some(r)),
            );
            Ok(found
                .into_iter()
                .zip(reported)
                .map(|(found, Reported { device_id: id, .. })| {
                    if found {
                        Ok(())
                    } else {
                        Err(StoreError::NotFound {
                            kind: ObjectKind::Device,
                            id,
                        })
                    }
                })
                .collect())
        }
    })
}

/// Longest reported firmware version / health word.
const MAX_REPORTED_LEN: usize = 128;

pub async fn checkin(
    State(state): State<DeviceState>,
    mut auth: Authenticated,
    body: Result<Json<CheckinRequest>, JsonRejection>,
) -> Result<Json<CheckinResponse>, DeviceError> {
    let Json(body) = body?;
    check_reported("firmware_version", body.firmware_version.as_deref())?;
    check_reported("health", body.health.as_deref())?;
    check_reported("hardware", body.hardware.as_deref())?;
    let Some(device) = auth.credential.device.take() else {
        return Err(DeviceError::not_enrolled());
    };
    let now = Utc::now();

    // Dynamic groups see what the device reports now.
    let mut facts = device.facts();
    if let Some(v) = &body.firmware_version {
        facts.firmware = Some(v.clone());
    }
    if let Some(h) = &body.health {
        facts.health = Some(h.clone());
    }
    facts.last_seen = Some(now);
    let caller = Caller::with_facts(facts, device, &auth);
    caller.authorize(&state, DEVICE_CHECKIN, None)?;
    if let Some(hw) = body
        .hardware
        .as_deref()
        .filter(|hw| *hw != caller.device.hardware)
    {
        tracing::debug!(device_id = %caller.device.id, reported = hw, stored = %caller.device.hardware, "device reports other hardware than registered");
    }

    // What the fleet wants of this device now, for its compliance.
    let desired_digest = caller.ctx.config.digest.clone();
    let groups = caller.ctx.group_ids.clone();
    let stale_after_secs = caller.ctx.stale_after_secs.clone();
    state
        .checkins
        .submit((
            caller.device.id.clone(),
            CheckinReport {
                firmware_version: body.firmware_version,
                health: body.health,
                config_digest: body.config_digest.clone(),
                compliance: Some(ComplianceInput {
                    desired_digest: desired_digest.clone(),
                    groups,
                    stale_after_secs,
                }),
            },
            now,
        ))
        .await?;

    let mut denied = Vec::new();
    let (config, config_digest) = if caller.allowed(&state, CONFIG_READ, None) {
        let digest = desired_digest;
        if body.config_digest.as_deref() == Some(digest.as_str()) {
            (None, Some(digest))
        } else {
            (Some(caller.ctx.config.config.clone()), Some(digest))
        }
    } else {
        denied.push(CONFIG_READ.to_owned());
        (None, None)
    };
    let assignment = match assignment_for(&state, &caller).await {
        Ok(a) => a,
        Err(e) if e.body.action.as_deref() == Some(FIRMWARE_DOWNLOAD) => {
            denied.push(FIRMWARE_DOWNLOAD.to_owned());
            None
        }
        Err(e) => return Err(e),
    };
    Ok(Json(CheckinResponse {
        device_id: caller.device.id,
        config,
        config_digest,
        assignment,
        denied,
        server_time: now.to_rfc3339_opts(SecondsFormat::Millis, true),
    }))
}

pub async fn config(
    State(state): State<DeviceState>,
    caller: Caller,
) -> Result<Json<ConfigResponse>, DeviceError> {
    caller.authorize(&state, CONFIG_READ, None)?;
    Ok(Json(ConfigResponse {
        device_id: caller.device.id.clone(),
        config_digest: caller.ctx.config.digest.clone(),
        config: caller.ctx.config.config.clone(),
    }))
}

pub async fn assignment(
    State(state): State<DeviceState>,
    caller: Caller,
) -> Result<Json<AssignmentResponse>, DeviceError> {
    let assignment = assignment_for(&state, &caller).await?;
    Ok(Json(AssignmentResponse {
        device_id: caller.device.id,
        assignment,
    }))
}

/// The device's current assignment. `firmware:download` is checked before
/// asking the engine (which marks a first delivery in progress) and again
/// with the firmware's own resource once it is known.
async fn assignment_for(
    state: &DeviceState,
    caller: &Caller,
) -> Result<Option<FirmwareAssignment>, DeviceError> {
    caller.authorize(state, FIRMWARE_DOWNLOAD, None)?;
    if !caller.assignment_pending {
        return Ok(None);
    }
    let Some(a) = state
        .store
        .current_assignment(&caller.device.id, Utc::now())
        .await?
    else {
        return Ok(None);
    };
    caller.authorize(state, FIRMWARE_DOWNLOAD, Some(&a.firmware_id))?;
    Ok(Some(to_wire(a)))
}

fn to_wire(a: Assignment) -> FirmwareAssignment {
    FirmwareAssignment {
        rollout_id: a.rollout_id,
        firmware_id: a.firmware_id,
        version: a.firmware_version,
        url: a.url,
        sha256: a.sha256,
        size_bytes: a.size_bytes,
        signature: a.signature,
        attempt: a.attempt,
        deadline: a.deadline.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

fn check_reported(field: &str, value: Option<&str>) -> Result<(), DeviceError> {
    let Some(v) = value else { return Ok(()) };
    if v.chars().count() > MAX_REPORTED_LEN {
        return Err(DeviceError::invalid(format!(
            "{field}: at most {MAX_REPORTED_LEN} characters are allowed"
        )));
    }
    if v.trim().is_empty() || v.chars().any(char::is_control) {
        return Err(DeviceError::invalid(format!(
            "{field}: must be non-blank text without control characters"
        )));
    }
    Ok(())
}
