//! Per-request authentication and authorisation.
//!
//! The TLS handshake proved the caller holds a certificate that chains to
//! a fleet CA ([`ClientIdentity`], attached to every request of the
//! connection). Each request then asks the store, in one round trip, for
//! the certificate's current status and device: a certificate revoked or
//! suspended since the connection opened is refused right here (401,
//! connection closed), as is one that expired on a long-lived connection.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::Utc;
use fleet_api::device_api::DeviceErrorKind;

use super::authz;
use super::error::DeviceError;
use super::trust::ClientIdentity;
use super::view::{CompiledView, DeviceContext};
use super::DeviceState;
use crate::domain::policy::RequestContext;
use crate::domain::query::DeviceFacts;
use crate::store::device_api::{Credential, CredentialStatus, DeviceRequestData};
use crate::store::Device;

/// A request whose certificate is currently acceptable; the device may
/// not be enrolled yet.
pub struct Authenticated {
    pub identity: Arc<ClientIdentity>,
    pub credential: Credential,
    pub view: Arc<CompiledView>,
    /// See [`crate::store::device_api::DeviceRequestData::assignment_pending`].
    pub assignment_pending: bool,
}

impl FromRequestParts<DeviceState> for Authenticated {
    type Rejection = DeviceError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &DeviceState,
    ) -> Result<Self, Self::Rejection> {
        let identity = parts
            .extensions
            .get::<Arc<ClientIdentity>>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("device request without a client identity");
                DeviceError::internal()
            })?;
        if Utc::now() > identity.not_after {
            return Err(DeviceError::certificate_refused(
                "expired",
                format!(
                    "the client certificate expired at {}",
                    identity.not_after.to_rfc3339()
                ),
            ));
        }
        let data = request_data(state, &identity).await?;
        let view = state.view.update(data.view);
        match &data.credential.status {
            CredentialStatus::Active => {}
            CredentialStatus::Inactive => {
                return Err(DeviceError::certificate_refused(
                    "inactive",
                    "the client certificate is suspended (status inactive)",
                ))
            }
            CredentialStatus::Revoked { reason } => {
                return Err(DeviceError::certificate_refused(
                    "revoked",
                    format!("the client certificate is revoked ({reason})"),
                ))
            }
        }
        Ok(Authenticated {
            identity,
            credential: data.credential,
            view,
            assignment_pending: data.assignment_pending,
        })
    }
}

/// The request's credential data: from [`DeviceState::requests`] when
/// nothing was written since it was read, else from the store.
async fn request_data(
    state: &DeviceState,
    identity: &ClientIdentity,
) -> Result<DeviceRequestData, DeviceError> {
    let ticket = match state.store.request_generation() {
        Some(generation) => {
            match state
                .requests
                .begin(generation, &identity.ca_id, &identity.serial)
            {
                Ok(hit) => return Ok(hit),
                Err(ticket) => Some(ticket),
            }
        }
        None => None,
    };
    let data = state
        .store
        .device_request(
            &identity.ca_id,
            &identity.serial,
            state.view.stamp().as_deref(),
        )
        .await?;
    if let Some(ticket) = ticket {
        state
            .requests
            .put(ticket, &identity.ca_id, &identity.serial, &data);
    }
    Ok(data)
}

/// An enrolled device making a call.
pub struct Caller {
    pub device: Device,
    pub ctx: Arc<DeviceContext>,
    pub request: RequestContext,
    /// Whether the device has a rollout assignment in flight.
    pub assignment_pending: bool,
    /// [`authz::base_resources`] of the device, shared by every decision.
    resources: Vec<String>,
}

impl FromRequestParts<DeviceState> for Caller {
    type Rejection = DeviceError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &DeviceState,
    ) -> Result<Self, Self::Rejection> {
        let mut auth = Authenticated::from_request_parts(parts, state).await?;
        let Some(device) = auth.credential.device.take() else {
            return Err(DeviceError::not_enrolled());
        };
        Ok(Caller::new(device, &auth))
    }
}

impl Caller {
    pub fn new(device: Device, auth: &Authenticated) -> Caller {
        Self::with_facts(device.facts(), device, auth)
    }

    /// With facts other than the stored ones (a check-in's report, which
    /// dynamic groups see immediately).
    pub fn with_facts(facts: DeviceFacts, device: Device, auth: &Authenticated) -> Caller {
        let ctx = auth
            .view
            .context(&facts, &device.group_ids, &auth.credential.policy_ids);
        let request = RequestContext {
            device: facts,
            group_ids: ctx.group_ids.clone(),
        };
        let resources = authz::base_resources(&device.id, &ctx);
        Caller {
            device,
            ctx,
            request,
            assignment_pending: auth.assignment_pending,
            resources,
        }
    }

    /// Decides `action` (counted in the metrics); `Err` is the 403.
    pub fn authorize(
        &self,
        state: &DeviceState,
        action: &'static str,
        firmware_id: Option<&str>,
    ) -> Result<(), DeviceError> {
        let extra = authz::action_resources(action, &self.device.id, &self.ctx, firmware_id);
        let (decision, resource) = authz::decide(
            &self.request,
            &self.ctx,
            action,
            self.resources.iter().chain(&extra),
        );
        let word = authz::reason_word(&decision.reason);
        state.metrics.decision(action, decision.allowed, word);
        if decision.allowed {
            Ok(())
        } else {
            tracing::debug!(device_id = %self.device.id, action, resource, reason = ?decision.reason, "device call denied");
            Err(DeviceError::forbidden(
                action,
                word,
                authz::denial_message(action, &resource, &decision.reason),
            ))
        }
    }

    /// Like [`Caller::authorize`], for optional parts of an answer.
    pub fn allowed(
        &self,
        state: &DeviceState,
        action: &'static str,
        firmware_id: Option<&str>,
    ) -> bool {
        self.authorize(state, action, firmware_id).is_ok()
    }
}

/// A `DeviceError` for store "not found" on an object the device named.
pub fn not_found(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::NotFound, message)
}
