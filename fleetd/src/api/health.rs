//! `GET /healthz`: liveness, no token required so load balancers and
//! orchestrators can probe it.

use axum::Json;
use fleet_api::Health;

#[utoipa::path(
    get,
    operation_id = "healthz",
    path = "/healthz",
    tag = "system",
    security(()),
    responses((status = 200, description = "fleetd is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}
