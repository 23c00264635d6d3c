//! `/v1/firmware`: immutable firmware releases. There is no update: a
//! change is a new version.

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::SecondsFormat;
use fleet_api::{ApiError, ErrorKind, Firmware, FirmwareCreate, Page};

use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::{AppState, HttpError};
use crate::domain::firmware::{self, FirmwareRelease};
use crate::domain::FieldError;
use crate::store::{self, Actor, FirmwareSpec};

const COLLECTION: &str = "/v1/firmware";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/firmware", get(list).post(create))
        .route(
            "/firmware/{id}",
            get(read).delete(delete).put(immutable).patch(immutable),
        )
}

/// Publish a firmware release.
#[utoipa::path(
    post,
    operation_id = "create_firmware",
    path = "/v1/firmware",
    tag = "firmware",
    request_body = FirmwareCreate,
    responses(
        (status = 201, description = "Created; `Location` points at the new release", body = Firmware),
        (status = 400, description = "Invalid or unknown field (e.g. a `version` that is not semver, or a `signature` that does not verify)", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 409, description = "This product already has this version", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<FirmwareCreate>,
) -> Result<impl IntoResponse, HttpError> {
    let spec = validate(body)?;
    let f = state.store.create_firmware(&actor, spec).await?;
    let location = format!("{COLLECTION}/{}", f.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(to_wire(f)),
    ))
}

/// List firmware releases, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_firmware",
    path = "/v1/firmware",
    tag = "firmware",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of releases", body = Page<Firmware>),
        (status = 400, description = "Invalid `limit` or `page_token`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<Firmware>>, HttpError> {
    query.only(&["limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    let rows = state
        .store
        .list_firmware(page.after.as_deref(), page.limit + 1)
        .await?;
    Ok(Json(pagination::paged(
        rows,
        page.limit,
        |f| &f.id,
        to_wire,
    )))
}

/// Read one firmware release.
#[utoipa::path(
    get,
    operation_id = "get_firmware",
    path = "/v1/firmware/{id}",
    tag = "firmware",
    params(("id" = String, Path, description = "Firmware id")),
    responses(
        (status = 200, description = "The release", body = Firmware),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such release", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Firmware>, HttpError> {
    Ok(Json(to_wire(state.store.get_firmware(&id).await?)))
}

/// Delete a firmware release that no rollout references.
#[utoipa::path(
    delete,
    operation_id = "delete_firmware",
    path = "/v1/firmware/{id}",
    tag = "firmware",
    params(("id" = String, Path, description = "Firmware id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such release", body = ApiError),
        (status = 409, description = "A rollout still references the release", body = ApiError),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    query: QueryParams,
) -> Result<StatusCode, HttpError> {
    // Releases never change, so there is no version to check.
    query.only(&[])?;
    state.store.delete_firmware(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Releases cannot be changed: say so instead of a bare 405, with the
/// `Allow` header every 405 carries (RFC 9110).
async fn immutable(method: Method) -> impl IntoResponse {
    let allow = [(header::ALLOW, "GET,HEAD,DELETE")];
    let error = HttpError::new(
        ErrorKind::MethodNotAllowed,
        None,
        format!(
            "firmware releases are immutable and do not support {method}: publish a new version \
             (POST {COLLECTION}) instead"
        ),
    );
    (allow, error)
}

fn validate(body: FirmwareCreate) -> Result<FirmwareSpec, FieldError> {
    let key = body
        .signing_public_key
        .as_deref()
        .map(|pem| firmware::parse_public_key("signing_public_key", pem))
        .transpose()?;
    if key.is_some() && body.signature.is_none() {
        return Err(FieldError::new(
            "signature",
            "is required when signing_public_key is given (the key only serves to verify it)",
        ));
    }
    let release = FirmwareRelease {
        product: body.product,
        version: body.version,
        hardware: body.hardware,
        url: body.url,
        sha256: body.sha256,
        size_bytes: body.size_bytes,
        signature: body.signature,
    };
    let valid = firmware::validate_release(&release, key.as_ref())?;
    Ok(FirmwareSpec {
        product: release.product,
        version: release.version,
        hardware: valid.hardware,
        url: release.url,
        sha256: valid.sha256,
        size_bytes: release.size_bytes,
        signature: release.signature,
        signature_verified: valid.signature_verified,
    })
}

fn to_wire(f: store::Firmware) -> Firmware {
    let at = f.created_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    Firmware {
        id: f.id,
        product: f.product,
        version: f.version,
        hardware: f.hardware,
        url: f.url,
        sha256: f.sha256,
        size_bytes: f.size_bytes,
        signature: f.signature,
        signature_verified: f.signature_verified,
        created_at: at.clone(),
        updated_at: at,
    }
}
