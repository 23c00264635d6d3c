//! `/v1/devices`: devices registered by the admin (or enrolled), with a
//! query filter on the list.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::SecondsFormat;
use fleet_api::{ApiError, Device, DeviceCreate, DeviceUpdate, Page};

use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::{AppState, HttpError};
use crate::domain::FieldError;
use crate::domain::{device, group};
use crate::store::{self, Actor, DeviceSpec};

const COLLECTION: &str = "/v1/devices";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices", get(list).post(create))
        .route("/devices/{id}", get(read).put(update).delete(delete))
}

/// Register a device.
#[utoipa::path(
    post,
    operation_id = "create_device",
    path = "/v1/devices",
    tag = "devices",
    request_body = DeviceCreate,
    responses(
        (status = 201, description = "Created; `Location` points at the new device", body = Device),
        (status = 400, description = "Invalid or unknown field, or a group in `group_ids` that does not exist (`group_ids[i]`)", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 409, description = "Name already used", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<DeviceCreate>,
) -> Result<impl IntoResponse, HttpError> {
    let spec = validate(body.name, body.hardware, body.attributes, &body.group_ids)?;
    let d = state.store.create_device(&actor, spec).await?;
    let location = format!("{COLLECTION}/{}", d.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(to_wire(d)),
    ))
}

/// List devices, oldest first, optionally only those matching a query.
#[utoipa::path(
    get,
    operation_id = "list_devices",
    path = "/v1/devices",
    tag = "devices",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
        ("query" = Option<String>, Query, description = "Only devices matching this expression, e.g. `hardware == \"m1\" and attr.region == \"eu\"`"),
    ),
    responses(
        (status = 200, description = "One page of devices", body = Page<Device>),
        (status = 400, description = "Invalid `limit`, `page_token` or `query` (the message gives line and column)", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<Device>>, HttpError> {
    query.only(&["limit", "page_token", "query"])?;
    let page = PageRequest::from_query(&query)?;
    let filter = query.get("query").map(group::validate_query).transpose()?;
    let devices = state
        .store
        .list_devices(page.after.as_deref(), page.limit + 1, filter)
        .await?;
    Ok(Json(pagination::paged(
        devices,
        page.limit,
        |d| &d.id,
        to_wire,
    )))
}

/// Read one device.
#[utoipa::path(
    get,
    operation_id = "get_device",
    path = "/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, description = "The device", body = Device),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such device", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Device>, HttpError> {
    Ok(Json(to_wire(state.store.get_device(&id).await?)))
}

/// Replace a device's admin-controlled fields.
#[utoipa::path(
    put,
    operation_id = "update_device",
    path = "/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    request_body = DeviceUpdate,
    responses(
        (status = 200, description = "The updated device (version + 1)", body = Device),
        (status = 400, description = "Invalid or unknown field, or a missing group", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such device", body = ApiError),
        (status = 409, description = "Stale `version` or name taken", body = ApiError),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<DeviceUpdate>,
) -> Result<Json<Device>, HttpError> {
    let spec = validate(body.name, body.hardware, body.attributes, &body.group_ids)?;
    let d = state
        .store
        .update_device(&actor, &id, body.version, spec)
        .await?;
    Ok(Json(to_wire(d)))
}

/// Delete a device.
#[utoipa::path(
    delete,
    operation_id = "delete_device",
    path = "/v1/devices/{id}",
    tag = "devices",
    params(
        ("id" = String, Path, description = "Device id"),
        ("version" = Option<i64>, Query, description = "Expected version; omit to delete unconditionally"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid `version`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such device", body = ApiError),
        (status = 409, description = "Stale `version`, or still referenced (certificates)", body = ApiError),
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
    state.store.delete_device(&actor, &id, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn validate(
    name: String,
    hardware: String,
    attributes: std::collections::BTreeMap<String, String>,
    group_ids: &[String],
) -> Result<DeviceSpec, FieldError> {
    device::validate_name(&name)?;
    device::validate_hardware(&hardware)?;
    device::validate_attributes(&attributes)?;
    device::validate_group_ids(group_ids)?;
    Ok(DeviceSpec {
        name,
        hardware,
        attributes,
        group_ids: group_ids.to_vec(),
    })
}

fn to_wire(d: store::Device) -> Device {
    Device {
        id: d.id,
        name: d.name,
        hardware: d.hardware,
        attributes: d.attributes,
        group_ids: d.group_ids,
        firmware_version: d.firmware_version,
        last_seen: d
            .last_seen
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        health: d.health,
        created_at: d.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        updated_at: d.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        version: d.version,
    }
}
