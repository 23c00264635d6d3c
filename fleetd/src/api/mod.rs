//! The admin API: JSON over HTTP, bearer-token protected.
//!
//! Handlers are thin: extract and validate the request (rules from
//! [`crate::domain`]), call the [`Store`], convert the result to the wire
//! types from the `fleet-api` crate. Every failure, including the ones axum
//! would report as plain text (bad JSON, unknown route, wrong method),
//! leaves as the one JSON error shape, [`fleet_api::ApiError`].

mod auth;
mod device_groups;
mod error;
mod extract;
mod fallback;
mod health;
pub mod openapi;
mod pagination;

use std::sync::Arc;

use axum::{middleware, Router};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::HttpError;

use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub admin_token: Arc<str>,
}

/// The complete admin API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/openapi.json", axum::routing::get(openapi::document))
        .nest(fleet_api::API_PREFIX, device_groups::routes())
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_token,
        ))
        .layer(
            // Outermost, so rejected requests are logged too. Headers are
            // not recorded: they carry the bearer token.
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}
