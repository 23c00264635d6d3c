//! The one error shape every admin API failure uses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What went wrong, as a stable machine-readable word. Clients branch on
/// this, never on `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 400: the request is malformed or a field fails validation.
    InvalidArgument,
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 404: the object (or route) does not exist.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the request conflicts with the current state: a stale
    /// `version`, a duplicate name, or a group that still has children.
    Conflict,
    /// 413: the request body is too large.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 500: a bug or an unavailable store; details are in fleetd's log.
    Internal,
    /// A kind this client does not know yet (a newer fleetd).
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The HTTP status that carries this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Internal | ErrorKind::Unknown => 500,
        }
    }
}

/// Body of every 4xx/5xx response.
///
/// ```json
/// {"error": "conflict", "field": "version",
///  "message": "device group 0193… is at version 3, but the request expected version 2",
///  "expected_version": 2, "current_version": 3}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub error: ErrorKind,
    /// The request field at fault (`name`, `tags["env"]`, `version`), or
    /// `null` when the error is not about one field.
    pub field: Option<String>,
    /// A sentence for humans that names the field.
    pub message: String,
    /// On a version conflict: the version the request expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    /// On a version conflict: the version currently stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

impl ApiError {
    pub fn new(error: ErrorKind, field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError {
            error,
            field: field.map(str::to_owned),
            message: message.into(),
            expected_version: None,
            current_version: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_null_field_and_no_versions() {
        let e = ApiError::new(ErrorKind::NotFound, None, "device group x not found");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":"not_found","field":null,"message":"device group x not found"}"#
        );
    }

    #[test]
    fn unknown_kinds_deserialize() {
        let e: ApiError =
            serde_json::from_str(r#"{"error":"rate_limited","field":null,"message":"slow down"}"#)
                .unwrap();
        assert_eq!(e.error, ErrorKind::Unknown);
    }
}
