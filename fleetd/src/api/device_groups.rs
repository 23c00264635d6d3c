//! `/v1/device-groups`: CRUD for the group tree.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::SecondsFormat;
use fleet_api::{
    ApiError, DeviceGroup, DeviceGroupCreate, DeviceGroupUpdate, GroupCompliance,
    GroupComplianceReport, NonCompliantDevice, Page,
};

use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::{AppState, HttpError};
use crate::domain::compliance::State as ComplianceState;
use crate::domain::group;
use crate::domain::FieldError;
use crate::store::{self, Actor, DeviceGroupSpec};

const COLLECTION: &str = "/v1/device-groups";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/device-groups", get(list).post(create))
        .route("/device-groups/{id}", get(read).put(update).delete(delete))
        .route("/device-groups/{id}/compliance", get(compliance))
        .route("/device-groups/{id}/compliance/devices", get(noncompliant))
}

/// Compliance of a group's devices (subgroups included): counts by state,
/// read in O(1), and a sample of non-compliant devices.
#[utoipa::path(
    get,
    operation_id = "get_device_group_compliance",
    path = "/v1/device-groups/{id}/compliance",
    tag = "device-groups",
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "Counts by state and up to 10 non-compliant devices", body = GroupComplianceReport),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such group", body = ApiError),
    )
)]
pub async fn compliance(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<GroupComplianceReport>, HttpError> {
    let group = state.store.get_device_group(&id).await?;
    let sample = state
        .store
        .noncompliant_devices(&id, None, None, 10)
        .await?;
    let s = compliance_to_wire(&group.compliance);
    Ok(Json(GroupComplianceReport {
        group_id: group.id,
        path: group.path,
        in_sync: s.in_sync,
        config_drift: s.config_drift,
        firmware_drift: s.firmware_drift,
        stale: s.stale,
        total: s.total,
        in_sync_ratio: s.in_sync_ratio,
        noncompliant_sample: sample.into_iter().map(noncompliant_to_wire).collect(),
    }))
}

/// The group's devices (subgroups included) that are not in sync, with
/// the reason, by id.
#[utoipa::path(
    get,
    operation_id = "list_noncompliant_devices",
    path = "/v1/device-groups/{id}/compliance/devices",
    tag = "device-groups",
    params(
        ("id" = String, Path, description = "Group id"),
        ("state" = Option<String>, Query, description = "Only `config_drift`, `firmware_drift` or `stale`"),
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of non-compliant devices", body = Page<NonCompliantDevice>),
        (status = 400, description = "Invalid `state`, `limit` or `page_token`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such group", body = ApiError),
    )
)]
pub async fn noncompliant(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    query: QueryParams,
) -> Result<Json<Page<NonCompliantDevice>>, HttpError> {
    query.only(&["state", "limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    let filter = match query.get("state") {
        None => None,
        Some(s) => match ComplianceState::parse(s) {
            Some(st) if st != ComplianceState::InSync => Some(st),
            _ => {
                return Err(FieldError::new(
                    "state",
                    format!("{s:?} is not one of config_drift, firmware_drift, stale"),
                )
                .into())
            }
        },
    };
    let rows = state
        .store
        .noncompliant_devices(&id, filter, page.after.as_deref(), page.limit + 1)
        .await?;
    Ok(Json(pagination::paged(
        rows,
        page.limit,
        |d| d.device_id.as_str(),
        noncompliant_to_wire,
    )))
}

fn noncompliant_to_wire(d: store::compliance::NonCompliantDevice) -> NonCompliantDevice {
    NonCompliantDevice {
        device_id: d.device_id,
        name: d.name,
        state: d.state.as_str().to_owned(),
        reason: d.reason,
        last_seen: d
            .last_seen
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
    }
}

/// Create a device group.
#[utoipa::path(
    post,
    operation_id = "create_device_group",
    path = "/v1/device-groups",
    tag = "device-groups",
    request_body = DeviceGroupCreate,
    responses(
        (status = 201, description = "Created; `Location` points at the new group", body = DeviceGroup),
        (status = 400, description = "Invalid field (a `query` syntax error names its line and column), unknown field or missing parent", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 409, description = "Name already used among the siblings", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<DeviceGroupCreate>,
) -> Result<impl IntoResponse, HttpError> {
    let spec = DeviceGroupSpec {
        name: body.name,
        description: body.description,
        parent_id: body.parent_id,
        tags: body.tags,
        query: body.query,
        config: body.config,
        stale_after_secs: stale_after(body.stale_after.as_deref())?,
    };
    validate(&spec)?;
    let group = state.store.create_device_group(&actor, spec).await?;
    let location = format!("{COLLECTION}/{}", group.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(to_wire(group)),
    ))
}

/// List device groups, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_device_groups",
    path = "/v1/device-groups",
    tag = "device-groups",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of groups", body = Page<DeviceGroup>),
        (status = 400, description = "Invalid `limit` or `page_token`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<DeviceGroup>>, HttpError> {
    query.only(&["limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    // One extra row tells whether another page exists, so the last page
    // never comes with a token that leads to an empty page.
    let mut groups = state
        .store
        .list_device_groups(page.after.as_deref(), page.limit + 1)
        .await?;
    let next_page_token = if groups.len() > page.limit as usize {
        groups.truncate(page.limit as usize);
        groups.last().map(|g| pagination::token_after(&g.id))
    } else {
        None
    };
    Ok(Json(Page {
        items: groups.into_iter().map(to_wire).collect(),
        next_page_token,
    }))
}

/// Read one device group.
#[utoipa::path(
    get,
    operation_id = "get_device_group",
    path = "/v1/device-groups/{id}",
    tag = "device-groups",
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group", body = DeviceGroup),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such group", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<DeviceGroup>, HttpError> {
    Ok(Json(to_wire(state.store.get_device_group(&id).await?)))
}

/// Replace a device group's mutable fields.
#[utoipa::path(
    put,
    operation_id = "update_device_group",
    path = "/v1/device-groups/{id}",
    tag = "device-groups",
    params(("id" = String, Path, description = "Group id")),
    request_body = DeviceGroupUpdate,
    responses(
        (status = 200, description = "The updated group (version + 1)", body = DeviceGroup),
        (status = 400, description = "Invalid field, unknown field, missing parent or cycle", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such group", body = ApiError),
        (status = 409, description = "Stale `version` (the body names both versions) or name taken", body = ApiError),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<DeviceGroupUpdate>,
) -> Result<Json<DeviceGroup>, HttpError> {
    let spec = DeviceGroupSpec {
        name: body.name,
        description: body.description,
        parent_id: body.parent_id,
        tags: body.tags,
        query: body.query,
        config: body.config,
        stale_after_secs: stale_after(body.stale_after.as_deref())?,
    };
    validate(&spec)?;
    let group = state
        .store
        .update_device_group(&actor, &id, body.version, spec)
        .await?;
    Ok(Json(to_wire(group)))
}

/// Delete a device group that has no child groups, no attached policies and
/// no unfinished rollout targeting it. Its static members leave it.
#[utoipa::path(
    delete,
    operation_id = "delete_device_group",
    path = "/v1/device-groups/{id}",
    tag = "device-groups",
    params(
        ("id" = String, Path, description = "Group id"),
        ("version" = Option<i64>, Query, description = "Expected version; omit to delete unconditionally"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid `version`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such group", body = ApiError),
        (status = 409, description = "Stale `version`, or the group still has children, attached policies or unfinished rollouts targeting it", body = ApiError),
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
    state
        .store
        .delete_device_group(&actor, &id, version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `stale_after`: 1 second to 365 days.
fn stale_after(value: Option<&str>) -> Result<Option<u64>, FieldError> {
    value
        .map(|v| fleet_domain::duration::parse_bounded("stale_after", v, 1, 365 * 86_400))
        .transpose()
}

/// Checks that need nothing but the request, with the domain's rules; the
/// store checks the rest (parent exists, no cycle, depth, name free among
/// siblings) inside its write transaction.
fn validate(spec: &DeviceGroupSpec) -> Result<(), FieldError> {
    group::validate_name(&spec.name)?;
    group::validate_description(&spec.description)?;
    // JSON clients (and Terraform providers) sometimes send "" for "no
    // value"; say how to express that instead of "group \"\" not found".
    if spec.parent_id.as_deref() == Some("") {
        return Err(FieldError::new(
            "parent_id",
            "must not be empty; omit it or use null for a top-level group",
        ));
    }
    group::validate_tags(&spec.tags)?;
    if let Some(query) = &spec.query {
        group::validate_query(query)?;
    }
    group::validate_config(&serde_json::Value::Object(spec.config.clone()))?;
    Ok(())
}

fn to_wire(g: store::DeviceGroup) -> DeviceGroup {
    DeviceGroup {
        id: g.id,
        name: g.name,
        description: g.description,
        parent_id: g.parent_id,
        tags: g.tags,
        path: g.path,
        query: g.query,
        config: g.config,
        effective_config: g.effective_config,
        device_count: g.device_count,
        stale_after: g.stale_after_secs.map(fleet_domain::duration::format),
        compliance: compliance_to_wire(&g.compliance),
        created_at: g.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        updated_at: g.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        version: g.version,
    }
}

pub(super) fn compliance_to_wire(s: &crate::domain::compliance::Summary) -> GroupCompliance {
    GroupCompliance {
        in_sync: s.in_sync,
        config_drift: s.config_drift,
        firmware_drift: s.firmware_drift,
        stale: s.stale,
        total: s.total(),
        in_sync_ratio: s.in_sync_ratio(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> DeviceGroupSpec {
        DeviceGroupSpec {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn validates_names() {
        assert!(validate(&spec("prod.eu-1_a")).is_ok());
        assert_eq!(validate(&spec("")).unwrap_err().field, "name");
        assert_eq!(validate(&spec("a b")).unwrap_err().field, "name");
        assert_eq!(validate(&spec(&"a".repeat(129))).unwrap_err().field, "name");
        assert!(validate(&spec(&"a".repeat(128))).is_ok());
    }

    #[test]
    fn validates_description_parent_and_tags() {
        let mut s = spec("a");
        s.description = "x".repeat(1025);
        assert_eq!(validate(&s).unwrap_err().field, "description");

        let mut s = spec("a");
        s.parent_id = Some(String::new());
        assert_eq!(validate(&s).unwrap_err().field, "parent_id");

        let mut s = spec("a");
        s.tags.insert("env".into(), "x".repeat(257));
        assert_eq!(validate(&s).unwrap_err().field, r#"tags["env"]"#);

        let mut s = spec("a");
        s.tags = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(validate(&s).unwrap_err().field, "tags");
    }
}
