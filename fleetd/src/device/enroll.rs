//! `POST /v1/device/enroll`: zero-touch provisioning.
//!
//! A device presenting a certificate that chains to a CA with an enabled
//! `fleet_enrollment` registers itself: the store decides with the
//! enrollment rules ([`crate::domain::enrollment`]) inside one transaction
//! and creates the device in the enrollment's group. Enrolling again with
//! the same certificate returns the same device (200 instead of 201).
//!
//! No policy is consulted (see [`super::authz`]): the enrollment is the
//! authorisation. The decision is still counted under `device:enroll`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use fleet_api::device_api::{DeviceErrorKind, EnrollRequest, EnrollResponse};

use super::auth::Authenticated;
use super::authz::DEVICE_ENROLL;
use super::error::DeviceError;
use super::DeviceState;
use crate::domain::device;
use crate::store::device_api::{EnrollmentClaim, EnrollmentOutcome};

pub async fn enroll(
    State(state): State<DeviceState>,
    auth: Authenticated,
    body: Result<Json<EnrollRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<EnrollResponse>), DeviceError> {
    let Json(body) = body?;
    device::validate_hardware(&body.hardware)
        .and_then(|()| device::validate_attributes(&body.attributes))
        .map_err(|e| DeviceError::invalid(format!("{}: {}", e.field, e.message)))?;

    let id = &auth.identity;
    let claim = EnrollmentClaim {
        ca_id: id.ca_id.clone(),
        serial: id.serial.clone(),
        fingerprint: id.fingerprint.clone(),
        common_name: id
            .common_name
            .clone()
            .filter(|cn| !cn.trim().is_empty())
            .unwrap_or_else(|| id.fingerprint.chars().take(16).collect()),
        certificate_pem: id.certificate_pem.clone(),
        not_before: id.not_before,
        not_after: id.not_after,
        hardware: body.hardware,
        attributes: body.attributes,
    };
    match state.store.enroll(claim, chrono::Utc::now()).await {
        Ok(EnrollmentOutcome::Enrolled {
            device,
            certificate_id,
            enrollment_id,
            created,
        }) => {
            state.metrics.decision(DEVICE_ENROLL, true, "enrollment");
            if created {
                tracing::debug!(device_id = %device.id, name = %device.name, ca = %id.ca_name, "device enrolled");
            }
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(EnrollResponse {
                    device_id: device.id,
                    name: device.name,
                    hardware: device.hardware,
                    attributes: device.attributes,
                    group_ids: device.group_ids,
                    enrollment_id,
                    certificate_id,
                    created,
                }),
            ))
        }
        Ok(EnrollmentOutcome::Refused(refusal)) => {
            state.metrics.decision(DEVICE_ENROLL, false, refusal.reason);
            tracing::info!(ca = %id.ca_name, serial = %id.serial, reason = refusal.reason, "enrollment refused: {}", refusal.message);
            match refusal.reason {
                "revoked" | "inactive" => Err(DeviceError::certificate_refused(
                    refusal.reason,
                    refusal.message,
                )),
                _ => Err(DeviceError::forbidden(
                    DEVICE_ENROLL,
                    refusal.reason,
                    refusal.message,
                )),
            }
        }
        Err(e) => {
            let e = DeviceError::from(e);
            if e.body.error == DeviceErrorKind::Conflict {
                state.metrics.decision(DEVICE_ENROLL, false, "conflict");
            }
            Err(e)
        }
    }
}
