//! Bearer-token authentication for everything except [`PUBLIC_PATHS`].
//!
//! It runs as a middleware over the whole router rather than per route,
//! so a new route is protected by default and unknown paths answer 401
//! to anonymous callers instead of revealing which routes exist.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppState, HttpError};
use crate::store::Actor;

/// Paths served without a token.
pub const PUBLIC_PATHS: &[&str] = &["/healthz"];

pub async fn require_admin_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if PUBLIC_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match presented {
        None => HttpError::unauthorized(
            "missing bearer token: send the header \"Authorization: Bearer <token>\" \
             (the token is in <data-dir>/admin-token unless fleetd was given --token)",
        )
        .into_response(),
        Some(token) if !constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => {
            HttpError::unauthorized("invalid bearer token").into_response()
        }
        Some(_) => {
            req.extensions_mut().insert(Actor::admin());
            next.run(req).await
        }
    }
}

/// `Bearer <token>`, scheme case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares without an early exit, so response timing does not reveal how
/// many leading characters of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
