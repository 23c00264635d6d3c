//! The device API's JSON shapes: what a device sends to and receives from
//! fleetd's mutual-TLS listener (`/v1/device/...`).
//!
//! A device is identified by its client certificate, never by a field in
//! a body: nothing here names the calling device except in responses.
//!
//! Unlike the admin API's request bodies, device request bodies *accept*
//! unknown fields: devices in the field are updated slowly, and a newer
//! firmware reporting one more field must not be locked out by an older
//! fleetd.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Path prefix of every device API route.
pub const DEVICE_API_PREFIX: &str = "/v1/device";

/// Body of `POST /v1/device/enroll`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollRequest {
    /// The device's hardware model, checked against the enrollment's
    /// `allowed_hardware`.
    #[schema(example = "m1")]
    pub hardware: String,
    /// Attributes the device reports; the enrollment's own attributes are
    /// laid over them (the platform team's labels win).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Response of `POST /v1/device/enroll`: 201 when the device was created,
/// 200 when the certificate was already enrolled (enrolling is idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollResponse {
    pub device_id: String,
    pub name: String,
    pub hardware: String,
    pub attributes: BTreeMap<String, String>,
    /// Static group memberships (the enrollment's group).
    pub group_ids: Vec<String>,
    /// The enrollment that admitted the device; `null` for a device that
    /// was registered through the admin API with this certificate.
    pub enrollment_id: Option<String>,
    /// The certificate as recorded in fleetd (revoke it through the admin
    /// API's `/v1/certificates/{id}`).
    pub certificate_id: String,
    /// `true` if this call created the device.
    pub created: bool,
}

/// Body of `POST /v1/device/checkin`. Every field is optional: a device
/// reports what it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckinRequest {
    /// The firmware version running now.
    #[serde(default)]
    pub firmware_version: Option<String>,
    /// The hardware model, for consistency checks (the stored hardware is
    /// admin-controlled and does not change on check-in).
    #[serde(default)]
    pub hardware: Option<String>,
    /// Free-form health word, e.g. `ok`, `degraded`.
    #[serde(default)]
    pub health: Option<String>,
    /// Digest of the config the device holds; when it is still current the
    /// response carries `config: null` with the same digest.
    #[serde(default)]
    pub config_digest: Option<String>,
}

/// Response of `POST /v1/device/checkin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckinResponse {
    pub device_id: String,
    /// The effective config (merged over the device's groups); `null` when
    /// unchanged since `config_digest` or when `config:read` is denied.
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// SHA-256 (hex) of the effective config's JSON; `null` when
    /// `config:read` is denied.
    pub config_digest: Option<String>,
    /// The firmware to install, if a rollout targets the device now.
    pub assignment: Option<FirmwareAssignment>,
    /// Parts of the answer withheld by policy: each names the action
    /// (`config:read`, `firmware:download`) that was denied.
    #[serde(default)]
    pub denied: Vec<String>,
    /// Server time (RFC 3339, UTC).
    pub server_time: String,
}

/// Response of `GET /v1/device/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigResponse {
    pub device_id: String,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub config_digest: String,
}

/// Response of `GET /v1/device/assignment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentResponse {
    pub device_id: String,
    pub assignment: Option<FirmwareAssignment>,
}

/// A firmware the device should install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FirmwareAssignment {
    pub rollout_id: String,
    pub firmware_id: String,
    /// The release's semantic version.
    #[schema(example = "1.4.2")]
    pub version: String,
    pub url: String,
    /// SHA-256 of the image, lowercase hex.
    pub sha256: String,
    pub size_bytes: i64,
    /// Base64 Ed25519 signature over the image's SHA-256, if any.
    pub signature: Option<String>,
    /// 1 for the first delivery, +1 for each retry.
    pub attempt: u32,
    /// Report a result before this time (RFC 3339, UTC), or the attempt
    /// counts as timed out.
    pub deadline: String,
}

/// What happened to an assignment on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    Succeeded,
    Failed,
    RolledBack,
}

impl UpdateOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOutcome::Succeeded => "succeeded",
            UpdateOutcome::Failed => "failed",
            UpdateOutcome::RolledBack => "rolled_back",
        }
    }
}

/// Body of `POST /v1/device/results`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResultReport {
    pub rollout_id: String,
    pub outcome: UpdateOutcome,
    /// Why it failed; recommended with `failed`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Response of `POST /v1/device/results`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResultAck {
    pub device_id: String,
    pub rollout_id: String,
    pub outcome: UpdateOutcome,
}

/// What went wrong, as a stable word devices can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceErrorKind {
    /// 400: malformed body or an invalid field.
    InvalidArgument,
    /// 401: the client certificate is revoked, suspended (`inactive`) or
    /// expired; the connection is closed.
    CertificateRefused,
    /// 403: the policies deny `action`, or (for `device:enroll`) no
    /// enrollment admits the device; `reason` says which rule.
    Forbidden,
    /// 403: the certificate is valid but not enrolled yet: call
    /// `POST /v1/device/enroll` first.
    NotEnrolled,
    /// 404: unknown route or object (e.g. a rollout id).
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the request clashes with stored state (e.g. the device name
    /// an enrollment would give is taken).
    Conflict,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 500: a bug or an unavailable store; details are in fleetd's log.
    Internal,
    /// A kind this device does not know yet (a newer fleetd).
    #[serde(other)]
    Unknown,
}

impl DeviceErrorKind {
    pub fn status(self) -> u16 {
        match self {
            DeviceErrorKind::InvalidArgument => 400,
            DeviceErrorKind::CertificateRefused => 401,
            DeviceErrorKind::Forbidden | DeviceErrorKind::NotEnrolled => 403,
            DeviceErrorKind::NotFound => 404,
            DeviceErrorKind::MethodNotAllowed => 405,
            DeviceErrorKind::Conflict => 409,
            DeviceErrorKind::PayloadTooLarge => 413,
            DeviceErrorKind::Internal | DeviceErrorKind::Unknown => 500,
        }
    }
}

/// Body of every device API 4xx/5xx response.
///
/// ```json
/// {"error": "forbidden", "action": "firmware:download",
///  "message": "firmware:download on fleet:device/0193… is denied (no policy allows it)",
///  "reason": "default_deny"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceApiError {
    pub error: DeviceErrorKind,
    /// The policy action at stake, for `forbidden`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// A sentence for humans.
    pub message: String,
    /// A machine-readable cause: `default_deny`, `explicit_deny`,
    /// `no_enrollment`, `disabled`, `hardware_not_allowed`,
    /// `limit_reached`, `missing_attribute`, `invalid_name`, `revoked`,
    /// `inactive`, `expired`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_bodies_tolerate_new_fields() {
        let c: CheckinRequest =
            serde_json::from_str(r#"{"firmware_version":"1.0.0","battery":97}"#).unwrap();
        assert_eq!(c.firmware_version.as_deref(), Some("1.0.0"));
        let e: EnrollRequest = serde_json::from_str(r#"{"hardware":"m1"}"#).unwrap();
        assert!(e.attributes.is_empty());
    }

    #[test]
    fn outcomes_are_snake_case() {
        let r: ResultReport =
            serde_json::from_str(r#"{"rollout_id":"r","outcome":"rolled_back"}"#).unwrap();
        assert_eq!(r.outcome, UpdateOutcome::RolledBack);
        assert_eq!(r.outcome.as_str(), "rolled_back");
        assert!(
            serde_json::from_str::<ResultReport>(r#"{"rollout_id":"r","outcome":"ok"}"#).is_err()
        );
    }

    #[test]
    fn error_shape() {
        let e = DeviceApiError {
            error: DeviceErrorKind::Forbidden,
            action: Some("config:read".into()),
            message: "denied".into(),
            reason: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["error"], "forbidden");
        assert_eq!(v["action"], "config:read");
        assert!(v.get("reason").is_none());
        assert_eq!(DeviceErrorKind::Forbidden.status(), 403);
        let k: DeviceErrorKind = serde_json::from_str(r#""brand_new""#).unwrap();
        assert_eq!(k, DeviceErrorKind::Unknown);
    }
}
