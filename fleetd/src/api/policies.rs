//! `/v1/policies`: access policies for the device API, with their kept
//! versions.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::SecondsFormat;
use fleet_api::{
    ApiError, Page, Policy, PolicyCreate, PolicyStatement, PolicyUpdate, PolicyVersion,
};

use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::{AppState, HttpError};
use crate::domain::policy::{self, Effect, Statement};
use crate::domain::{group, FieldError};
use crate::store::{self, Actor, PolicySpec};

const COLLECTION: &str = "/v1/policies";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/policies", get(list).post(create))
        .route("/policies/{id}", get(read).put(update).delete(delete))
        .route("/policies/{id}/versions", get(versions))
}

/// Create a policy (policy version 1).
#[utoipa::path(
    post,
    operation_id = "create_policy",
    path = "/v1/policies",
    tag = "policies",
    request_body = PolicyCreate,
    responses(
        (status = 201, description = "Created; `Location` points at the new policy", body = Policy),
        (status = 400, description = "Invalid or unknown field, e.g. `statements[0].actions[1]`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 409, description = "Name already used", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<PolicyCreate>,
) -> Result<impl IntoResponse, HttpError> {
    let spec = validate(body.name, body.description, &body.statements)?;
    let p = state.store.create_policy(&actor, spec).await?;
    let location = format!("{COLLECTION}/{}", p.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(to_wire(p)),
    ))
}

/// List policies, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_policies",
    path = "/v1/policies",
    tag = "policies",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of policies", body = Page<Policy>),
        (status = 400, description = "Invalid `limit` or `page_token`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<Policy>>, HttpError> {
    query.only(&["limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    let rows = state
        .store
        .list_policies(page.after.as_deref(), page.limit + 1)
        .await?;
    Ok(Json(pagination::paged(
        rows,
        page.limit,
        |p| &p.id,
        to_wire,
    )))
}

/// Read one policy.
#[utoipa::path(
    get,
    operation_id = "get_policy",
    path = "/v1/policies/{id}",
    tag = "policies",
    params(("id" = String, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The policy", body = Policy),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such policy", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Policy>, HttpError> {
    Ok(Json(to_wire(state.store.get_policy(&id).await?)))
}

/// Replace a policy. Changed statements make a new policy version; the
/// last 10 are kept.
#[utoipa::path(
    put,
    operation_id = "update_policy",
    path = "/v1/policies/{id}",
    tag = "policies",
    params(("id" = String, Path, description = "Policy id")),
    request_body = PolicyUpdate,
    responses(
        (status = 200, description = "The updated policy (version + 1)", body = Policy),
        (status = 400, description = "Invalid or unknown field", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such policy", body = ApiError),
        (status = 409, description = "Stale `version` or name taken", body = ApiError),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PolicyUpdate>,
) -> Result<Json<Policy>, HttpError> {
    let spec = validate(body.name, body.description, &body.statements)?;
    let p = state
        .store
        .update_policy(&actor, &id, body.version, spec)
        .await?;
    Ok(Json(to_wire(p)))
}

/// Delete a policy that is not attached anywhere.
#[utoipa::path(
    delete,
    operation_id = "delete_policy",
    path = "/v1/policies/{id}",
    tag = "policies",
    params(
        ("id" = String, Path, description = "Policy id"),
        ("version" = Option<i64>, Query, description = "Expected version; omit to delete unconditionally"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid `version`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such policy", body = ApiError),
        (status = 409, description = "Stale `version`, or the policy is still attached", body = ApiError),
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
    state.store.delete_policy(&actor, &id, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The kept versions of a policy's statements, newest first (one page).
#[utoipa::path(
    get,
    operation_id = "list_policy_versions",
    path = "/v1/policies/{id}/versions",
    tag = "policies",
    params(("id" = String, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The kept versions, newest first", body = Page<PolicyVersion>),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such policy", body = ApiError),
    )
)]
pub async fn versions(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    query: QueryParams,
) -> Result<Json<Page<PolicyVersion>>, HttpError> {
    query.only(&[])?;
    let versions = state.store.list_policy_versions(&id).await?;
    Ok(Json(Page {
        items: versions
            .into_iter()
            .map(|v| PolicyVersion {
                policy_id: v.policy_id,
                policy_version: v.policy_version,
                statements: v.statements.iter().map(statement_to_wire).collect(),
                created_at: v.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
            .collect(),
        next_page_token: None,
    }))
}

fn validate(
    name: String,
    description: String,
    statements: &[PolicyStatement],
) -> Result<PolicySpec, FieldError> {
    policy::validate_name(&name)?;
    group::validate_description(&description)?;
    let statements = statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let effect = match s.effect.as_str() {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                other => {
                    return Err(FieldError::new(
                        format!("statements[{i}].effect"),
                        format!("unknown effect {other:?} (use allow or deny)"),
                    ))
                }
            };
            Ok(Statement {
                effect,
                actions: s.actions.clone(),
                resources: s.resources.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    policy::validate_statements(&statements)
        .map_err(|e| wire_field(e, "statement", "statements"))?;
    Ok(PolicySpec {
        name,
        description,
        statements,
    })
}

/// The domain names list elements the way HCL blocks read (`statement[0]`,
/// `phase[1]`); the API's request field is the plural list (`statements`,
/// `phases`). Renames the leading segment `from` to `to`.
pub(super) fn wire_field(mut e: FieldError, from: &str, to: &str) -> FieldError {
    let rest = e.field.strip_prefix(from);
    if let Some(rest) = rest {
        if rest.is_empty() || rest.starts_with('[') || rest.starts_with('.') {
            e.field = format!("{to}{rest}");
        }
    }
    e
}

fn statement_to_wire(s: &Statement) -> PolicyStatement {
    PolicyStatement {
        effect: match s.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
        .to_owned(),
        actions: s.actions.clone(),
        resources: s.resources.clone(),
    }
}

fn to_wire(p: store::Policy) -> Policy {
    Policy {
        statements: p.statements.iter().map(statement_to_wire).collect(),
        id: p.id,
        name: p.name,
        description: p.description,
        policy_version: p.policy_version,
        created_at: p.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        updated_at: p.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        version: p.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_field_renames_only_the_leading_list() {
        let f = |field: &str| wire_field(FieldError::new(field, "m"), "phase", "phases").field;
        assert_eq!(f("phase[1].percent"), "phases[1].percent");
        assert_eq!(f("phase"), "phases");
        assert_eq!(f("phases_x"), "phases_x");
        assert_eq!(f("rate.per_minute"), "rate.per_minute");
    }
}
