//! Device API failures as `{error, action?, message, reason?}`.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_api::device_api::{DeviceApiError, DeviceErrorKind};

use crate::store::StoreError;

/// An error response. `close` asks the client to drop the connection
/// (used when the certificate itself is refused).
#[derive(Debug)]
pub struct DeviceError {
    pub body: DeviceApiError,
    pub close: bool,
}

impl DeviceError {
    pub fn new(kind: DeviceErrorKind, message: impl Into<String>) -> Self {
        DeviceError {
            body: DeviceApiError {
                error: kind,
                action: None,
                message: message.into(),
                reason: None,
            },
            close: false,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.body.reason = Some(reason.into());
        self
    }

    pub fn with_action(mut self, action: &str) -> Self {
        self.body.action = Some(action.to_owned());
        self
    }

    pub fn forbidden(action: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(DeviceErrorKind::Forbidden, message)
            .with_action(action)
            .with_reason(reason)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(DeviceErrorKind::InvalidArgument, message)
    }

    /// 401 for a certificate that may no longer be used; closes the
    /// connection.
    pub fn certificate_refused(reason: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(DeviceErrorKind::CertificateRefused, message).with_reason(reason);
        e.close = true;
        e
    }

    pub fn not_enrolled() -> Self {
        Self::new(
            DeviceErrorKind::NotEnrolled,
            "this certificate has not enrolled a device yet: call POST /v1/device/enroll first",
        )
        .with_reason("not_enrolled")
    }

    pub fn internal() -> Self {
        Self::new(
            DeviceErrorKind::Internal,
            "internal error; the details are in fleetd's log",
        )
    }
}

impl IntoResponse for DeviceError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.body.error.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body)).into_response();
        if self.close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<StoreError> for DeviceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => Self::new(DeviceErrorKind::NotFound, e.to_string()),
            StoreError::Conflict { message, .. } => Self::new(DeviceErrorKind::Conflict, message),
            StoreError::VersionConflict { .. } => {
                Self::new(DeviceErrorKind::Conflict, e.to_string())
            }
            StoreError::Invalid(f) => Self::invalid(format!("{}: {}", f.field, f.message)),
            StoreError::Backend(err) => {
                tracing::error!("store failure in the device API: {err:#}");
                Self::internal()
            }
        }
    }
}

impl From<JsonRejection> for DeviceError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(DeviceErrorKind::PayloadTooLarge, r.body_text())
            }
            _ => Self::invalid(r.body_text()),
        }
    }
}
