//! `/v1/enrollments`: zero-touch provisioning rules.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use fleet_api::{ApiError, Enrollment, EnrollmentCreate, EnrollmentUpdate, Page};

use super::certificate_authorities::timestamp;
use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::{AppState, HttpError};
use crate::domain::enrollment::{self, EnrollmentSpec};
use crate::domain::{group, FieldError};
use crate::store::{Actor, EnrollmentFields, EnrollmentRecord};

const COLLECTION: &str = "/v1/enrollments";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/enrollments", get(list).post(create))
        .route("/enrollments/{id}", get(read).put(update).delete(delete))
}

/// Create an enrollment.
#[utoipa::path(
    post,
    operation_id = "create_enrollment",
    path = "/v1/enrollments",
    tag = "enrollments",
    request_body = EnrollmentCreate,
    responses(
        (status = 201, description = "Created; `Location` points at the new enrollment", body = Enrollment),
        (status = 400, description = "Invalid or unknown field; `name_template` errors give the position; a missing CA (`ca_id`) or group (`group_id`)", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 409, description = "Name already used", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<EnrollmentCreate>,
) -> Result<impl IntoResponse, HttpError> {
    let fields = validate(Input {
        name: body.name,
        ca_id: body.ca_id,
        group_id: body.group_id,
        name_template: body.name_template,
        attributes: body.attributes,
        allowed_hardware: body.allowed_hardware,
        max_devices: body.max_devices,
        enabled: body.enabled,
        common_name_pattern: body.common_name_pattern,
    })?;
    let e = state.store.create_enrollment(&actor, fields).await?;
    let location = format!("{COLLECTION}/{}", e.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(to_wire(e)),
    ))
}

/// List enrollments, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_enrollments",
    path = "/v1/enrollments",
    tag = "enrollments",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of enrollments", body = Page<Enrollment>),
        (status = 400, description = "Invalid `limit` or `page_token`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<Enrollment>>, HttpError> {
    query.only(&["limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    let mut items = state
        .store
        .list_enrollments(page.after.as_deref(), page.limit + 1)
        .await?;
    let next_page_token = if items.len() > page.limit as usize {
        items.truncate(page.limit as usize);
        items.last().map(|e| pagination::token_after(&e.id))
    } else {
        None
    };
    Ok(Json(Page {
        items: items.into_iter().map(to_wire).collect(),
        next_page_token,
    }))
}

/// Read one enrollment.
#[utoipa::path(
    get,
    operation_id = "get_enrollment",
    path = "/v1/enrollments/{id}",
    tag = "enrollments",
    params(("id" = String, Path, description = "Enrollment id")),
    responses(
        (status = 200, description = "The enrollment", body = Enrollment),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such enrollment", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Enrollment>, HttpError> {
    Ok(Json(to_wire(state.store.get_enrollment(&id).await?)))
}

/// Replace an enrollment's settings.
#[utoipa::path(
    put,
    operation_id = "update_enrollment",
    path = "/v1/enrollments/{id}",
    tag = "enrollments",
    params(("id" = String, Path, description = "Enrollment id")),
    request_body = EnrollmentUpdate,
    responses(
        (status = 200, description = "The updated enrollment (version + 1); `enrolled_count` is kept", body = Enrollment),
        (status = 400, description = "Invalid or unknown field, or a missing CA or group", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such enrollment", body = ApiError),
        (status = 409, description = "Stale `version` (the body names both versions) or name taken", body = ApiError),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<EnrollmentUpdate>,
) -> Result<Json<Enrollment>, HttpError> {
    let fields = validate(Input {
        name: body.name,
        ca_id: body.ca_id,
        group_id: body.group_id,
        name_template: body.name_template,
        attributes: body.attributes,
        allowed_hardware: body.allowed_hardware,
        max_devices: body.max_devices,
        enabled: body.enabled,
        common_name_pattern: body.common_name_pattern,
    })?;
    let e = state
        .store
        .update_enrollment(&actor, &id, body.version, fields)
        .await?;
    Ok(Json(to_wire(e)))
}

/// Delete an enrollment. Devices it enrolled stay.
#[utoipa::path(
    delete,
    operation_id = "delete_enrollment",
    path = "/v1/enrollments/{id}",
    tag = "enrollments",
    params(
        ("id" = String, Path, description = "Enrollment id"),
        ("version" = Option<i64>, Query, description = "Expected version; omit to delete unconditionally"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid `version`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such enrollment", body = ApiError),
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
    state.store.delete_enrollment(&actor, &id, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The fields create and update share.
struct Input {
    name: String,
    ca_id: String,
    group_id: String,
    name_template: Option<String>,
    attributes: BTreeMap<String, String>,
    allowed_hardware: Vec<String>,
    max_devices: Option<u64>,
    enabled: bool,
    common_name_pattern: Option<String>,
}

/// Checks that need only the request, with the domain's enrollment rules;
/// the store checks that the CA and group exist and the name is free.
fn validate(input: Input) -> Result<EnrollmentFields, FieldError> {
    group::validate_name(&input.name)?;
    if input.ca_id.is_empty() {
        return Err(FieldError::new("ca_id", "must not be empty"));
    }
    if input.group_id.is_empty() {
        return Err(FieldError::new("group_id", "must not be empty"));
    }
    let max_devices = input
        .max_devices
        .map(|n| {
            i64::try_from(n).map_err(|_| {
                FieldError::new("max_devices", format!("must be at most {}", i64::MAX))
            })
        })
        .transpose()?;
    let rules = enrollment::validate(&EnrollmentSpec {
        enabled: input.enabled,
        name_template: input.name_template,
        allowed_hardware: input.allowed_hardware,
        max_devices,
        attributes: input.attributes,
        common_name_pattern: input.common_name_pattern,
    })?;
    Ok(EnrollmentFields {
        name: input.name,
        ca_id: input.ca_id,
        group_id: input.group_id,
        name_template: rules.name_template.as_str().to_owned(),
        attributes: rules.attributes,
        allowed_hardware: rules.allowed_hardware,
        max_devices: rules.max_devices,
        enabled: rules.enabled,
        common_name_pattern: rules.common_name_pattern,
    })
}

fn to_wire(e: EnrollmentRecord) -> Enrollment {
    Enrollment {
        id: e.id,
        name: e.name,
        ca_id: e.ca_id,
        group_id: e.group_id,
        name_template: e.name_template,
        attributes: e.attributes,
        allowed_hardware: e.allowed_hardware,
        max_devices: e.max_devices,
        enabled: e.enabled,
        common_name_pattern: e.common_name_pattern,
        enrolled_count: e.enrolled_count,
        created_at: timestamp(e.created_at),
        updated_at: timestamp(e.updated_at),
        version: e.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            name: "e".into(),
            ca_id: "ca".into(),
            group_id: "g".into(),
            name_template: None,
            attributes: BTreeMap::new(),
            allowed_hardware: vec![],
            max_devices: None,
            enabled: true,
            common_name_pattern: None,
        }
    }

    #[test]
    fn defaults_and_field_errors() {
        assert_eq!(validate(input()).unwrap().name_template, "{cn}");
        let e = validate(Input {
            name_template: Some("meter-{sn}".into()),
            ..input()
        })
        .unwrap_err();
        assert_eq!(e.field, "name_template");
        assert!(e.message.ends_with("at position 7"), "{}", e.message);
        let e = validate(Input {
            max_devices: Some(0),
            ..input()
        })
        .unwrap_err();
        assert_eq!(e.field, "max_devices");
        let e = validate(Input {
            max_devices: Some(u64::MAX),
            ..input()
        })
        .unwrap_err();
        assert_eq!(e.field, "max_devices");
        let e = validate(Input {
            allowed_hardware: vec!["a".into(), "a".into()],
            ..input()
        })
        .unwrap_err();
        assert_eq!(e.field, "allowed_hardware[1]");
        assert_eq!(
            validate(Input {
                group_id: String::new(),
                ..input()
            })
            .unwrap_err()
            .field,
            "group_id"
        );
        assert_eq!(
            validate(Input {
                name: "a b".into(),
                ..input()
            })
            .unwrap_err()
            .field,
            "name"
        );
    }
}
