//! `/v1/certificate-authorities`: CAs generated in fleetd or imported, and
//! their CRLs.
//!
//! A CA's private key is sealed with the master key ([`crate::keystore`])
//! before it reaches the store and only unsealed, in memory, to sign. No
//! response, log line or audit row ever contains it.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use fleet_api::{
    ApiError, CertificateAuthority, CertificateAuthorityCreate, CertificateAuthorityUpdate,
    ErrorKind, Page,
};

use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::{AppState, HttpError};
use crate::domain::pki::{self, CaMaterial, KeyAlgorithm, NewCa, PkiError, Serial};
use crate::domain::{group, FieldError};
use crate::store::{self, Actor, CaRecord, CaSigner};

const COLLECTION: &str = "/v1/certificate-authorities";

/// Validity of a generated CA when `validity_days` is omitted (10 years).
pub const DEFAULT_CA_VALIDITY_DAYS: i64 = 3650;

/// How long a served CRL stays current (`nextUpdate - thisUpdate`). CRLs
/// are built on every request, so a client re-fetching more often sees
/// revocations immediately.
pub const CRL_VALIDITY_DAYS: i64 = 7;

/// Media type of the CRL route: the PEM text of the CRL.
pub const PEM_CONTENT_TYPE: &str = "application/x-pem-file";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/certificate-authorities", get(list).post(create))
        .route(
            "/certificate-authorities/{id}",
            get(read).put(update).delete(delete),
        )
        .route("/certificate-authorities/{id}/crl", get(crl))
}

/// Create (generate or import) a certificate authority.
#[utoipa::path(
    post,
    operation_id = "create_certificate_authority",
    path = "/v1/certificate-authorities",
    tag = "certificate-authorities",
    request_body = CertificateAuthorityCreate,
    responses(
        (status = 201, description = "Created; `Location` points at the new CA. The private key is never returned.", body = CertificateAuthority),
        (status = 400, description = "Invalid or unknown field; a certificate/key that is malformed, not a CA, expired or mismatched", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 409, description = "Name already used", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<CertificateAuthorityCreate>,
) -> Result<impl IntoResponse, HttpError> {
    group::validate_name(&body.name)?;
    group::validate_description(&body.description)?;
    let now = Utc::now();
    let (material, key_algorithm, validity_days, imported) = match (
        body.certificate_pem.as_deref(),
        body.private_key_pem.as_deref(),
    ) {
        (None, None) => {
            let alg = match body.key_algorithm.as_deref() {
                None => KeyAlgorithm::default(),
                Some(s) => KeyAlgorithm::parse("key_algorithm", s)?,
            };
            let validity_days = body.validity_days.unwrap_or(DEFAULT_CA_VALIDITY_DAYS);
            let common_name = body.common_name.as_deref().unwrap_or(&body.name);
            let material = pki::generate_ca(
                &NewCa {
                    common_name,
                    organization: body.organization.as_deref(),
                    validity_days,
                    key_algorithm: alg,
                },
                Serial::random(&mut rand::rng()),
                now,
            )
            .map_err(pki_error)?;
            (material, alg.as_str(), validity_days, false)
        }
        (Some(cert), Some(key)) => {
            for (field, given) in [
                ("common_name", body.common_name.is_some()),
                ("organization", body.organization.is_some()),
                ("key_algorithm", body.key_algorithm.is_some()),
                ("validity_days", body.validity_days.is_some()),
            ] {
                if given {
                    return Err(FieldError::new(
                        field,
                        "not allowed for an imported CA (certificate_pem): it is read from the certificate",
                    )
                    .into());
                }
            }
            let material = pki::import_ca(cert, key, now).map_err(pki_error)?;
            let loaded = pki::CertificateAuthority::from_pem(
                &material.certificate_pem,
                &material.private_key_pem,
            )
            .map_err(pki_error)?;
            let days = (material.info.not_after - material.info.not_before).num_days();
            (material, loaded.key_algorithm(), days, true)
        }
        (Some(_), None) => {
            return Err(FieldError::new(
                "private_key_pem",
                "required with certificate_pem: an imported CA needs its private key to sign",
            )
            .into())
        }
        (None, Some(_)) => {
            return Err(FieldError::new(
                "certificate_pem",
                "required with private_key_pem: an imported CA needs its certificate",
            )
            .into())
        }
    };
    let CaMaterial {
        certificate_pem,
        private_key_pem,
        info,
    } = material;
    let sealed_key = state
        .master_key
        .seal(private_key_pem.as_bytes(), &key_context(&info.fingerprint))
        .map_err(|e| {
            tracing::error!("sealing a CA key failed: {e:#}");
            HttpError::internal()
        })?;
    drop(private_key_pem);
    let ca = state
        .store
        .create_certificate_authority(
            &actor,
            store::NewCa {
                name: body.name,
                description: body.description,
                common_name: info.common_name.unwrap_or_default(),
                organization: info.organization,
                key_algorithm: key_algorithm.to_owned(),
                validity_days,
                imported,
                certificate_pem,
                fingerprint: info.fingerprint,
                serial: info.serial,
                not_before: info.not_before,
                not_after: info.not_after,
                sealed_key,
            },
        )
        .await?;
    let location = format!("{COLLECTION}/{}", ca.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(to_wire(ca)),
    ))
}

/// List certificate authorities, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_certificate_authorities",
    path = "/v1/certificate-authorities",
    tag = "certificate-authorities",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of CAs", body = Page<CertificateAuthority>),
        (status = 400, description = "Invalid `limit` or `page_token`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<CertificateAuthority>>, HttpError> {
    query.only(&["limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    let mut cas = state
        .store
        .list_certificate_authorities(page.after.as_deref(), page.limit + 1)
        .await?;
    let next_page_token = if cas.len() > page.limit as usize {
        cas.truncate(page.limit as usize);
        cas.last().map(|c| pagination::token_after(&c.id))
    } else {
        None
    };
    Ok(Json(Page {
        items: cas.into_iter().map(to_wire).collect(),
        next_page_token,
    }))
}

/// Read one certificate authority.
#[utoipa::path(
    get,
    operation_id = "get_certificate_authority",
    path = "/v1/certificate-authorities/{id}",
    tag = "certificate-authorities",
    params(("id" = String, Path, description = "CA id")),
    responses(
        (status = 200, description = "The CA (never its private key)", body = CertificateAuthority),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such CA", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<CertificateAuthority>, HttpError> {
    Ok(Json(to_wire(
        state.store.get_certificate_authority(&id).await?,
    )))
}

/// Rename a certificate authority or change its description.
#[utoipa::path(
    put,
    operation_id = "update_certificate_authority",
    path = "/v1/certificate-authorities/{id}",
    tag = "certificate-authorities",
    params(("id" = String, Path, description = "CA id")),
    request_body = CertificateAuthorityUpdate,
    responses(
        (status = 200, description = "The updated CA (version + 1)", body = CertificateAuthority),
        (status = 400, description = "Invalid or unknown field (only `name` and `description` can change)", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such CA", body = ApiError),
        (status = 409, description = "Stale `version` (the body names both versions) or name taken", body = ApiError),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<CertificateAuthorityUpdate>,
) -> Result<Json<CertificateAuthority>, HttpError> {
    group::validate_name(&body.name)?;
    group::validate_description(&body.description)?;
    let ca = state
        .store
        .update_certificate_authority(&actor, &id, body.version, body.name, body.description)
        .await?;
    Ok(Json(to_wire(ca)))
}

/// Delete a certificate authority.
#[utoipa::path(
    delete,
    operation_id = "delete_certificate_authority",
    path = "/v1/certificate-authorities/{id}",
    tag = "certificate-authorities",
    params(
        ("id" = String, Path, description = "CA id"),
        ("version" = Option<i64>, Query, description = "Expected version; omit to delete unconditionally"),
    ),
    responses(
        (status = 204, description = "Deleted, with its inactive and revoked certificates and its CRL"),
        (status = 400, description = "Invalid `version`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such CA", body = ApiError),
        (status = 409, description = "Stale `version`, or the CA still has active certificates, enrollments or certificates with policy attachments", body = ApiError),
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
        .delete_certificate_authority(&actor, &id, version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The CA's certificate revocation list.
///
/// Built and signed on every request, so a revocation shows up at once.
/// Lists every revoked certificate (and every certificate deleted without
/// being revoked, as `cessationOfOperation`) that has not expired yet.
#[utoipa::path(
    get,
    operation_id = "get_certificate_authority_crl",
    path = "/v1/certificate-authorities/{id}/crl",
    tag = "certificate-authorities",
    params(("id" = String, Path, description = "CA id")),
    responses(
        (status = 200, description = "The CRL, PEM-encoded (`-----BEGIN X509 CRL-----`); `nextUpdate` is 7 days after `thisUpdate`, the CRL number grows with every CRL served", content_type = "application/x-pem-file", body = String),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such CA", body = ApiError),
        (status = 500, description = "The CA's key cannot be decrypted with this fleetd's master key", body = ApiError),
    )
)]
pub async fn crl(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    query: QueryParams,
) -> Result<impl IntoResponse, HttpError> {
    query.only(&[])?;
    let signer = state.store.get_ca_signer(&id).await?;
    let ca = open_ca(&state, &signer)?;
    let now = Utc::now();
    let entries = state.store.crl_entries(&id, now).await?;
    let crl_number = u64::try_from(now.timestamp_millis()).unwrap_or_default();
    let pem = pki::build_crl(
        &ca,
        &entries,
        crl_number,
        now,
        now + Duration::days(CRL_VALIDITY_DAYS),
    )
    .map_err(pki_error)?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, PEM_CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        pem,
    ))
}

// ---------------------------------------------------------------- shared with certificates

/// Associated data binding a sealed CA key to its certificate.
fn key_context(fingerprint: &str) -> String {
    format!("fleetd ca private key v1 {fingerprint}")
}

/// Unseals a CA's key and loads it for signing. A key that does not
/// unseal (wrong master key, tampering) is a 500 that says so, with the
/// CA's id, never the key.
pub(super) fn open_ca(
    state: &AppState,
    signer: &CaSigner,
) -> Result<pki::CertificateAuthority, HttpError> {
    let ca = &signer.ca;
    let key = state
        .master_key
        .open(&signer.sealed_key, &key_context(&ca.fingerprint))
        .map_err(|e| {
            let message = format!(
                "the private key of certificate authority {:?} ({}) cannot be decrypted: {e}",
                ca.name, ca.id
            );
            tracing::error!(ca_id = %ca.id, "{message}");
            HttpError::new(ErrorKind::Internal, None, message)
        })?;
    let key = String::from_utf8(key).map_err(|_| {
        tracing::error!(ca_id = %ca.id, "a decrypted CA key is not UTF-8 PEM");
        HttpError::internal()
    })?;
    pki::CertificateAuthority::from_pem(&ca.certificate_pem, &key).map_err(|e| {
        // Stored material that no longer loads is fleetd's problem, not
        // the caller's; PkiError messages never contain key material.
        tracing::error!(ca_id = %ca.id, "stored CA does not load: {e}");
        HttpError::internal()
    })
}

/// Input problems become 400s naming the field; library failures 500s.
pub(super) fn pki_error(e: PkiError) -> HttpError {
    match e {
        PkiError::Invalid(field_error) => field_error.into(),
        PkiError::Internal(message) => {
            tracing::error!("certificate operation failed: {message}");
            HttpError::internal()
        }
    }
}

pub(super) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn to_wire(ca: CaRecord) -> CertificateAuthority {
    CertificateAuthority {
        id: ca.id,
        name: ca.name,
        description: ca.description,
        common_name: ca.common_name,
        organization: ca.organization,
        key_algorithm: ca.key_algorithm,
        validity_days: ca.validity_days,
        imported: ca.imported,
        certificate_pem: ca.certificate_pem,
        fingerprint: ca.fingerprint,
        serial: ca.serial,
        not_before: timestamp(ca.not_before),
        not_after: timestamp(ca.not_after),
        created_at: timestamp(ca.created_at),
        updated_at: timestamp(ca.updated_at),
        version: ca.version,
    }
}
