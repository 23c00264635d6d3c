//! `/v1/policy-attachments`: a policy attached to one group (inherited by
//! its subgroups) or one certificate. Immutable: create, read, delete.

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::SecondsFormat;
use fleet_api::{ApiError, ErrorKind, Page, PolicyAttachment, PolicyAttachmentCreate};

use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::{AppState, HttpError};
use crate::domain::FieldError;
use crate::store::{self, Actor, AttachmentTarget, PolicyAttachmentSpec};

const COLLECTION: &str = "/v1/policy-attachments";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/policy-attachments", get(list).post(create))
        .route(
            "/policy-attachments/{id}",
            get(read).delete(delete).put(immutable).patch(immutable),
        )
}

/// Attach a policy to a group or a certificate.
#[utoipa::path(
    post,
    operation_id = "create_policy_attachment",
    path = "/v1/policy-attachments",
    tag = "policies",
    request_body = PolicyAttachmentCreate,
    responses(
        (status = 201, description = "Created; `Location` points at the new attachment", body = PolicyAttachment),
        (status = 400, description = "Not exactly one of `group_id`, `certificate_id`; or the policy, group or certificate does not exist", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 409, description = "The policy is already attached there", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<PolicyAttachmentCreate>,
) -> Result<impl IntoResponse, HttpError> {
    let spec = validate(body)?;
    let a = state.store.create_policy_attachment(&actor, spec).await?;
    let location = format!("{COLLECTION}/{}", a.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(to_wire(a)),
    ))
}

/// List policy attachments, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_policy_attachments",
    path = "/v1/policy-attachments",
    tag = "policies",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of attachments", body = Page<PolicyAttachment>),
        (status = 400, description = "Invalid `limit` or `page_token`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<PolicyAttachment>>, HttpError> {
    query.only(&["limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    let rows = state
        .store
        .list_policy_attachments(page.after.as_deref(), page.limit + 1)
        .await?;
    Ok(Json(pagination::paged(
        rows,
        page.limit,
        |a| &a.id,
        to_wire,
    )))
}

/// Read one policy attachment.
#[utoipa::path(
    get,
    operation_id = "get_policy_attachment",
    path = "/v1/policy-attachments/{id}",
    tag = "policies",
    params(("id" = String, Path, description = "Attachment id")),
    responses(
        (status = 200, description = "The attachment", body = PolicyAttachment),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such attachment", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<PolicyAttachment>, HttpError> {
    Ok(Json(to_wire(state.store.get_policy_attachment(&id).await?)))
}

/// Detach: delete a policy attachment.
#[utoipa::path(
    delete,
    operation_id = "delete_policy_attachment",
    path = "/v1/policy-attachments/{id}",
    tag = "policies",
    params(
        ("id" = String, Path, description = "Attachment id"),
        ("version" = Option<i64>, Query, description = "Expected version (always 1); omit to delete unconditionally"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid `version`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such attachment", body = ApiError),
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
    state
        .store
        .delete_policy_attachment(&actor, &id, version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Attachments cannot be changed: say so instead of a bare 405, with the
/// `Allow` header every 405 carries (RFC 9110).
async fn immutable(method: Method) -> impl IntoResponse {
    let allow = [(header::ALLOW, "GET,HEAD,DELETE")];
    let error = HttpError::new(
        ErrorKind::MethodNotAllowed,
        None,
        format!(
            "policy attachments are immutable and do not support {method}: delete the \
             attachment and create a new one"
        ),
    );
    (allow, error)
}

fn validate(body: PolicyAttachmentCreate) -> Result<PolicyAttachmentSpec, FieldError> {
    if body.policy_id.trim().is_empty() {
        return Err(FieldError::new("policy_id", "must not be empty"));
    }
    let target =
        match (body.group_id, body.certificate_id) {
            (Some(_), Some(_)) => return Err(FieldError::new(
                "certificate_id",
                "conflicts with group_id: a policy attachment targets exactly one of group_id, \
                 certificate_id",
            )),
            (None, None) => {
                return Err(FieldError::new(
                    "group_id",
                    "one of group_id or certificate_id is required",
                ))
            }
            (Some(g), None) if g.trim().is_empty() => {
                return Err(FieldError::new("group_id", "must not be empty"))
            }
            (None, Some(c)) if c.trim().is_empty() => {
                return Err(FieldError::new("certificate_id", "must not be empty"))
            }
            (Some(g), None) => AttachmentTarget::Group(g),
            (None, Some(c)) => AttachmentTarget::Certificate(c),
        };
    Ok(PolicyAttachmentSpec {
        policy_id: body.policy_id,
        target,
    })
}

fn to_wire(a: store::PolicyAttachment) -> PolicyAttachment {
    let (group_id, certificate_id) = match a.target {
        AttachmentTarget::Group(g) => (Some(g), None),
        AttachmentTarget::Certificate(c) => (None, Some(c)),
    };
    let at = a.created_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    PolicyAttachment {
        id: a.id,
        policy_id: a.policy_id,
        group_id,
        certificate_id,
        created_at: at.clone(),
        updated_at: at,
        version: a.version,
    }
}
