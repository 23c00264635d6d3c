//! The admin API: JSON over HTTP, bearer-token protected.
//!
//! Handlers are thin: extract and validate the request (rules from
//! [`crate::domain`]), call the [`Store`], convert the result to the wire
//! types from the `fleet-api` crate. Every failure, including the ones axum
//! would report as plain text (bad JSON, unknown route, wrong method),
//! leaves as the one JSON error shape, [`fleet_api::ApiError`].

mod auth;
mod certificate_authorities;
mod certificates;
mod device_groups;
mod devices;
mod enrollments;
mod error;
mod extract;
mod fallback;
mod firmware;
mod health;
mod metrics;
pub mod openapi;
mod pagination;
mod policies;
mod policy_attachments;
mod rollouts;

use std::sync::Arc;

use axum::{middleware, Extension, Router};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::HttpError;

use crate::keystore::MasterKey;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub admin_token: Arc<str>,
    /// Seals and unseals CA private keys (see [`crate::keystore`]).
    pub master_key: Arc<MasterKey>,
    /// The device API's counters, rendered on `/metrics`.
    pub device_metrics: Arc<crate::device::metrics::DeviceMetrics>,
    /// Wakes the rollout engine after a rollout is created or changed.
    pub engine_wake: crate::engine::EngineWake,
}

/// The complete admin API.
pub fn router(state: AppState) -> Router {
    let metrics = Arc::new(metrics::Metrics::default());
    Router::new()
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/openapi.json", axum::routing::get(openapi::document))
        .route("/metrics", axum::routing::get(metrics::render))
        .nest(
            fleet_api::API_PREFIX,
            device_groups::routes()
                .merge(devices::routes())
                .merge(policies::routes())
                .merge(policy_attachments::routes())
                .merge(firmware::routes())
                .merge(rollouts::routes())
                .merge(certificate_authorities::routes())
                .merge(certificates::routes())
                .merge(enrollments::routes()),
        )
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_token,
        ))
        // Outside auth, so refused requests are counted too.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&metrics),
            metrics::track,
        ))
        .layer(Extension(metrics))
        .layer(
            // Outermost, so rejected requests are logged too. Headers are
            // not recorded: they carry the bearer token.
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}
