//! `GET /metrics`: Prometheus text exposition of request counts (by
//! method, route template and status) and stored objects (by kind).
//!
//! Protected by the admin token like every route but `/healthz`: object
//! counts and route traffic describe the fleet. Configure the scraper with
//! `authorization: { credentials: <token> }`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{AppState, HttpError};

/// Request counters of one router instance.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route template, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl Metrics {
    fn count(&self, method: &str, route: &str, status: u16) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<(String, String, u16), u64> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Middleware counting every response. Routes are labelled by their
/// template (`/v1/devices/{id}`), never the raw path, so label cardinality
/// stays bounded; requests no route matched count as `unmatched`.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    metrics.count(&method, &route, response.status().as_u16());
    response
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain"),
        (status = 401, description = "Missing or wrong bearer token", body = fleet_api::ApiError),
    )
)]
pub async fn render(
    State(state): State<AppState>,
    Extension(metrics): Extension<Arc<Metrics>>,
) -> Result<Response, HttpError> {
    let objects = state.store.object_counts().await?;
    let mut out = String::new();
    out.push_str(
        "# HELP fleetd_http_requests_total Admin API requests handled, by method, route and status.\n\
         # TYPE fleetd_http_requests_total counter\n",
    );
    for ((method, route, status), n) in metrics.snapshot() {
        let _ = writeln!(
            out,
            "fleetd_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
            escape(&method),
            escape(&route)
        );
    }
    out.push_str(
        "# HELP fleetd_objects Objects in the store, by kind.\n# TYPE fleetd_objects gauge\n",
    );
    for (kind, n) in objects {
        let _ = writeln!(out, "fleetd_objects{{kind=\"{}\"}} {n}", escape(&kind));
    }
    state.device_metrics.render(&mut out);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }

    #[test]
    fn counts_by_method_route_and_status() {
        let m = Metrics::default();
        m.count("GET", "/v1/devices", 200);
        m.count("GET", "/v1/devices", 200);
        m.count("POST", "/v1/devices", 201);
        let snap = m.snapshot();
        assert_eq!(snap[&("GET".into(), "/v1/devices".into(), 200)], 2);
        assert_eq!(snap.len(), 2);
    }
}
