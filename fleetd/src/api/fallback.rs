//! JSON answers for requests no route handles (axum's own are empty).

use axum::http::{Method, Uri};
use fleet_api::ErrorKind;

use super::HttpError;

pub async fn not_found(method: Method, uri: Uri) -> HttpError {
    HttpError::not_found(format!("no route for {method} {}", uri.path()))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        ErrorKind::MethodNotAllowed,
        None,
        format!("{} does not support {method}", uri.path()),
    )
}
