//! `/v1/rollouts`: staged firmware rollouts to device groups.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::SecondsFormat;
use fleet_api::{
    ApiError, FailureThreshold, MaintenanceWindow, Page, Rollout, RolloutCounts, RolloutCreate,
    RolloutPhase, RolloutRate, RolloutUpdate,
};

use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::policies::wire_field;
use super::{AppState, HttpError};
use crate::domain::rollout::{
    self, FailureThresholdSpec, MaintenanceWindowSpec, PhaseSpec, RateSpec, RolloutState,
    DEFAULT_DEVICE_TIMEOUT_SECS,
};
use crate::domain::{duration, group, FieldError};
use crate::store::{
    self, Actor, FailureThresholdRecord, MaintenanceWindowRecord, PhaseRecord, RateRecord,
    RolloutSpec,
};

const COLLECTION: &str = "/v1/rollouts";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rollouts", get(list).post(create))
        .route("/rollouts/{id}", get(read).put(update).delete(delete))
}

/// Create a rollout.
#[utoipa::path(
    post,
    operation_id = "create_rollout",
    path = "/v1/rollouts",
    tag = "rollouts",
    request_body = RolloutCreate,
    responses(
        (status = 201, description = "Created; `Location` points at the new rollout", body = Rollout),
        (status = 400, description = "Invalid or unknown field (e.g. `phases[1].percent`), or a missing firmware or group", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<RolloutCreate>,
) -> Result<impl IntoResponse, HttpError> {
    if body.firmware_id.trim().is_empty() {
        return Err(FieldError::new("firmware_id", "must not be empty").into());
    }
    let spec = validate(Definition {
        name: body.name,
        firmware_id: Some(body.firmware_id),
        target_group_ids: body.target_group_ids,
        phases: body.phases,
        rate: body.rate,
        failure_threshold: body.failure_threshold,
        device_timeout: body.device_timeout,
        max_retries: body.max_retries,
        start_at: body.start_at,
        maintenance_window: body.maintenance_window,
        continuous: body.continuous,
        state: body.state,
    })?;
    let r = state.store.create_rollout(&actor, spec).await?;
    state.engine_wake.wake();
    let location = format!("{COLLECTION}/{}", r.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(to_wire(r)),
    ))
}

/// List rollouts, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_rollouts",
    path = "/v1/rollouts",
    tag = "rollouts",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of rollouts", body = Page<Rollout>),
        (status = 400, description = "Invalid `limit` or `page_token`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<Rollout>>, HttpError> {
    query.only(&["limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    let rows = state
        .store
        .list_rollouts(page.after.as_deref(), page.limit + 1)
        .await?;
    Ok(Json(pagination::paged(
        rows,
        page.limit,
        |r| &r.id,
        to_wire,
    )))
}

/// Read one rollout, with its live status and counts.
#[utoipa::path(
    get,
    operation_id = "get_rollout",
    path = "/v1/rollouts/{id}",
    tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id")),
    responses(
        (status = 200, description = "The rollout", body = Rollout),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such rollout", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Rollout>, HttpError> {
    Ok(Json(to_wire(state.store.get_rollout(&id).await?)))
}

/// Replace a rollout's definition (everything but the firmware) or change
/// its desired `state`.
#[utoipa::path(
    put,
    operation_id = "update_rollout",
    path = "/v1/rollouts/{id}",
    tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id")),
    request_body = RolloutUpdate,
    responses(
        (status = 200, description = "The updated rollout (version + 1)", body = Rollout),
        (status = 400, description = "Invalid or unknown field, or a missing group", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such rollout", body = ApiError),
        (status = 409, description = "Stale `version`, a different `firmware_id`, or leaving the `cancelled` state", body = ApiError),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<RolloutUpdate>,
) -> Result<Json<Rollout>, HttpError> {
    let spec = validate(Definition {
        name: body.name,
        firmware_id: body.firmware_id,
        target_group_ids: body.target_group_ids,
        phases: body.phases,
        rate: body.rate,
        failure_threshold: body.failure_threshold,
        device_timeout: body.device_timeout,
        max_retries: body.max_retries,
        start_at: body.start_at,
        maintenance_window: body.maintenance_window,
        continuous: body.continuous,
        state: body.state,
    })?;
    let r = state
        .store
        .update_rollout(&actor, &id, body.version, spec)
        .await?;
    state.engine_wake.wake();
    Ok(Json(to_wire(r)))
}

/// Delete a rollout.
#[utoipa::path(
    delete,
    operation_id = "delete_rollout",
    path = "/v1/rollouts/{id}",
    tag = "rollouts",
    params(
        ("id" = String, Path, description = "Rollout id"),
        ("version" = Option<i64>, Query, description = "Expected version; omit to delete unconditionally"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid `version`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such rollout", body = ApiError),
        (status = 409, description = "Stale `version`", body = ApiError),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    query: QueryParams,
) -> Result<StatusCode, HttpError> {
    query.only(&["version"])?;
    let version = query.int::<i64>("version")?;
    state.store.delete_rollout(&actor, &id, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The fields create and update share.
struct Definition {
    name: String,
    firmware_id: Option<String>,
    target_group_ids: Vec<String>,
    phases: Vec<RolloutPhase>,
    rate: Option<RolloutRate>,
    failure_threshold: Option<FailureThreshold>,
    device_timeout: Option<String>,
    max_retries: Option<u32>,
    start_at: Option<String>,
    maintenance_window: Option<MaintenanceWindow>,
    continuous: bool,
    state: Option<String>,
}

/// Validates with the domain's rules (field paths renamed from the HCL
/// block names to the request's lists) and fills in the defaults, which
/// are then stored and returned, so a client sees what is in force.
fn validate(d: Definition) -> Result<RolloutSpec, FieldError> {
    group::validate_name(&d.name)?;
    let domain_spec = rollout::RolloutSpec {
        target_group_ids: d.target_group_ids.clone(),
        phases: d
            .phases
            .iter()
            .map(|p| PhaseSpec {
                percent: p.percent,
                soak: Some(p.soak.clone()),
            })
            .collect(),
        rate: d.rate.as_ref().map(|r| RateSpec {
            per_minute: i64::from(r.per_minute),
            growth_factor: Some(r.growth_factor),
        }),
        failure_threshold: d.failure_threshold.as_ref().map(|f| FailureThresholdSpec {
            percent: f.percent,
            min_devices: i64::from(f.min_devices),
            action: f.action.clone(),
        }),
        device_timeout: d.device_timeout.clone(),
        max_retries: d.max_retries.map(i64::from),
        start_at: d.start_at.clone(),
        maintenance_window: d
            .maintenance_window
            .as_ref()
            .map(|w| MaintenanceWindowSpec {
                days: w.days.clone(),
                start: w.start.clone(),
                duration: w.duration.clone(),
            }),
        continuous: d.continuous,
        state: d.state.clone(),
    };
    let plan = rollout::validate(&domain_spec).map_err(|e| wire_field(e, "phase", "phases"))?;
    let state = d
        .state
        .as_deref()
        .map(|s| RolloutState::parse("state", s))
        .transpose()?;
    let threshold = plan.failure_threshold;
    Ok(RolloutSpec {
        name: d.name,
        firmware_id: d.firmware_id,
        target_group_ids: d.target_group_ids,
        phases: d
            .phases
            .into_iter()
            .map(|p| PhaseRecord {
                percent: p.percent,
                soak: p.soak,
            })
            .collect(),
        rate: d.rate.map(|r| RateRecord {
            per_minute: r.per_minute,
            growth_factor: r.growth_factor,
        }),
        failure_threshold: FailureThresholdRecord {
            percent: threshold.percent,
            min_devices: threshold.min_devices,
            action: threshold.action.as_str().to_owned(),
        },
        device_timeout: d
            .device_timeout
            .unwrap_or_else(|| duration::format(DEFAULT_DEVICE_TIMEOUT_SECS)),
        max_retries: plan.max_retries,
        start_at: d.start_at,
        maintenance_window: d.maintenance_window.map(|w| MaintenanceWindowRecord {
            days: w.days,
            start: w.start,
            duration: w.duration,
        }),
        continuous: d.continuous,
        state,
    })
}

fn to_wire(r: store::Rollout) -> Rollout {
    Rollout {
        id: r.id,
        name: r.name,
        firmware_id: r.firmware_id,
        target_group_ids: r.target_group_ids,
        phases: r
            .phases
            .into_iter()
            .map(|p| RolloutPhase {
                percent: p.percent,
                soak: p.soak,
            })
            .collect(),
        rate: r.rate.map(|x| RolloutRate {
            per_minute: x.per_minute,
            growth_factor: x.growth_factor,
        }),
        failure_threshold: FailureThreshold {
            percent: r.failure_threshold.percent,
            min_devices: r.failure_threshold.min_devices,
            action: r.failure_threshold.action,
        },
        device_timeout: r.device_timeout,
        max_retries: r.max_retries,
        start_at: r.start_at,
        maintenance_window: r.maintenance_window.map(|w| MaintenanceWindow {
            days: w.days,
            start: w.start,
            duration: w.duration,
        }),
        continuous: r.continuous,
        state: r.state.as_str().to_owned(),
        status: r.status,
        counts: RolloutCounts {
            targeted: r.counts.targeted,
            pending: r.counts.pending,
            in_progress: r.counts.in_progress,
            succeeded: r.counts.succeeded,
            failed: r.counts.failed,
            rolled_back: r.counts.rolled_back,
        },
        current_phase: r.current_phase,
        created_at: r.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        updated_at: r.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        version: r.version,
    }
}
