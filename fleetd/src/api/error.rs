//! Turning every failure into `{"error", "field", "message"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_api::{ApiError, ErrorKind};

use crate::domain::FieldError;
use crate::store::StoreError;

/// An error response. Handlers return `Result<_, HttpError>`; `?` converts
/// store and validation errors.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl HttpError {
    pub fn new(kind: ErrorKind, field: Option<&str>, message: impl Into<String>) -> Self {
        HttpError(ApiError::new(kind, field, message))
    }

    /// 400 about one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, Some(field), message)
    }

    /// 400 about the request as a whole.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, None, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, None, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, None, message)
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorKind::Internal,
            None,
            "internal error; the details are in fleetd's log",
        )
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.0)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="fleetd""#),
            );
        }
        response
    }
}

/// Validation failures name their field and say what is wrong with it.
impl From<FieldError> for HttpError {
    fn from(e: FieldError) -> Self {
        let message = format!("{}: {}", e.field, e.message);
        HttpError::invalid_field(&e.field, message)
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => HttpError::not_found(e.to_string()),
            StoreError::VersionConflict {
                kind,
                ref id,
                expected,
                current,
            } => {
                let mut err = ApiError::new(
                    ErrorKind::Conflict,
                    Some("version"),
                    format!(
                        "version: {kind} {id} is at version {current}, but the request \
                         expected version {expected}; read it again and retry"
                    ),
                );
                err.expected_version = Some(expected);
                err.current_version = Some(current);
                HttpError(err)
            }
            StoreError::Conflict { field, message } => {
                HttpError::new(ErrorKind::Conflict, field, message)
            }
            StoreError::Invalid(field_error) => field_error.into(),
            StoreError::Backend(err) => {
                tracing::error!("store failure: {err:#}");
                HttpError::internal()
            }
        }
    }
}
