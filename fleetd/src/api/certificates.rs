//! `/v1/certificates`: device certificates issued by a fleet CA.
//!
//! Issued from a CSR (recommended: the device keeps its key) or with a key
//! fleetd generates; such a key is in the create response only, once, and
//! is never stored.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::Utc;
use fleet_api::{ApiError, Certificate, CertificateCreate, CertificateUpdate, Page};

use super::certificate_authorities::{open_ca, pki_error, timestamp};
use super::extract::{IdPath, JsonBody, QueryParams};
use super::pagination::{self, PageRequest};
use super::{AppState, HttpError};
use crate::domain::pki::{
    self, CertificateStatus, KeyAlgorithm, NewCertificate, Serial, Subject, SubjectKey,
};
use crate::domain::FieldError;
use crate::store::{self, Actor, CertificateFilter, CertificateRecord, StoreError};

const COLLECTION: &str = "/v1/certificates";

/// Validity of a certificate when `validity_days` is omitted.
pub const DEFAULT_CERTIFICATE_VALIDITY_DAYS: i64 = 365;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/certificates", get(list).post(create))
        .route("/certificates/{id}", get(read).put(update).delete(delete))
}

/// Issue a certificate.
#[utoipa::path(
    post,
    operation_id = "create_certificate",
    path = "/v1/certificates",
    tag = "certificates",
    request_body = CertificateCreate,
    responses(
        (status = 201, description = "Issued; `Location` points at it. Includes `private_key_pem` only when fleetd generated the key: it is returned this once and never stored.", body = Certificate),
        (status = 400, description = "Invalid or unknown field; a CSR that is malformed or whose signature does not verify (`csr_pem`); a validity that outlives the CA (`validity_days`); a missing CA (`ca_id`) or device (`device_id`)", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<CertificateCreate>,
) -> Result<impl IntoResponse, HttpError> {
    let req = Request::validate(&body)?;
    let signer = match state.store.get_ca_signer(&body.ca_id).await {
        Ok(signer) => signer,
        Err(StoreError::NotFound { .. }) => {
            return Err(FieldError::new(
                "ca_id",
                format!("certificate authority {:?} not found", body.ca_id),
            )
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    let ca = open_ca(&state, &signer)?;
    let issued = pki::issue_certificate(
        &ca,
        &NewCertificate {
            subject: req.subject(&body),
            validity_days: req.validity_days,
            key: match (&body.csr_pem, req.generate) {
                (Some(csr), _) => SubjectKey::Csr(csr),
                (None, alg) => SubjectKey::Generate(alg.unwrap_or_default()),
            },
        },
        Serial::random(&mut rand::rng()),
        Utc::now(),
    )
    .map_err(pki_error)?;
    let common_name = issued
        .info
        .common_name
        .clone()
        .or_else(|| body.device_id.clone())
        .or_else(|| body.common_name.clone())
        .unwrap_or_default();
    let record = state
        .store
        .create_certificate(
            &actor,
            store::NewCertificate {
                ca_id: body.ca_id,
                device_id: body.device_id,
                common_name,
                key_algorithm: body
                    .csr_pem
                    .is_none()
                    .then(|| req.generate.unwrap_or_default().as_str().to_owned()),
                csr_pem: body.csr_pem,
                validity_days: req.validity_days,
                status: req.status,
                serial: issued.info.serial,
                certificate_pem: issued.certificate_pem,
                fingerprint: issued.info.fingerprint,
                not_before: issued.info.not_before,
                not_after: issued.info.not_after,
            },
        )
        .await?;
    let location = format!("{COLLECTION}/{}", record.id);
    let mut cert = to_wire(record);
    cert.private_key_pem = issued.private_key_pem;
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            // The body may hold a private key: no cache may keep it.
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(cert),
    ))
}

/// A create request's checks that need nothing but the request.
struct Request {
    generate: Option<KeyAlgorithm>,
    validity_days: i64,
    status: CertificateStatus,
}

impl Request {
    fn validate(body: &CertificateCreate) -> Result<Request, FieldError> {
        if body.ca_id.is_empty() {
            return Err(FieldError::new("ca_id", "must not be empty"));
        }
        let generate = match (&body.csr_pem, &body.key_algorithm) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "key_algorithm",
                    "conflicts with csr_pem: either send a CSR (the key stays on the device) \
                     or have fleetd generate a key, not both",
                ))
            }
            (Some(_), None) => None,
            (None, Some(alg)) => Some(KeyAlgorithm::parse("key_algorithm", alg)?),
            (None, None) => Some(KeyAlgorithm::default()),
        };
        match (&body.device_id, &body.common_name) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "common_name",
                    "conflicts with device_id: a device's certificate is named after the device",
                ))
            }
            (None, None) => {
                return Err(FieldError::new(
                    "device_id",
                    "one of device_id and common_name is required",
                ))
            }
            _ => {}
        }
        let status = match body.status.as_deref() {
            None => CertificateStatus::Active,
            Some(s) => match CertificateStatus::parse("status", s)? {
                CertificateStatus::Revoked => return Err(FieldError::new(
                    "status",
                    "a certificate is issued \"active\" or \"inactive\"; revoke it with an update",
                )),
                other => other,
            },
        };
        Ok(Request {
            generate,
            validity_days: body
                .validity_days
                .unwrap_or(DEFAULT_CERTIFICATE_VALIDITY_DAYS),
            status,
        })
    }

    fn subject<'a>(&self, body: &'a CertificateCreate) -> Subject<'a> {
        match (&body.device_id, &body.common_name) {
            (Some(id), _) => Subject::DeviceId(id),
            (None, Some(cn)) => Subject::CommonName(cn),
            (None, None) => Subject::CommonName(""),
        }
    }
}

/// List certificates, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_certificates",
    path = "/v1/certificates",
    tag = "certificates",
    params(
        ("ca_id" = Option<String>, Query, description = "Only certificates issued by this CA"),
        ("device_id" = Option<String>, Query, description = "Only certificates issued to this device"),
        ("limit" = Option<u32>, Query, description = "Page size, 1–1000 (default 100)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of certificates (never with a private key)", body = Page<Certificate>),
        (status = 400, description = "Invalid or unknown query parameter", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Page<Certificate>>, HttpError> {
    query.only(&["ca_id", "device_id", "limit", "page_token"])?;
    let page = PageRequest::from_query(&query)?;
    let filter = CertificateFilter {
        ca_id: query.get("ca_id").map(str::to_owned),
        device_id: query.get("device_id").map(str::to_owned),
    };
    let mut certs = state
        .store
        .list_certificates(filter, page.after.as_deref(), page.limit + 1)
        .await?;
    let next_page_token = if certs.len() > page.limit as usize {
        certs.truncate(page.limit as usize);
        certs.last().map(|c| pagination::token_after(&c.id))
    } else {
        None
    };
    Ok(Json(Page {
        items: certs.into_iter().map(to_wire).collect(),
        next_page_token,
    }))
}

/// Read one certificate.
#[utoipa::path(
    get,
    operation_id = "get_certificate",
    path = "/v1/certificates/{id}",
    tag = "certificates",
    params(("id" = String, Path, description = "Certificate id")),
    responses(
        (status = 200, description = "The certificate (never with a private key)", body = Certificate),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such certificate", body = ApiError),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Certificate>, HttpError> {
    Ok(Json(to_wire(state.store.get_certificate(&id).await?)))
}

/// Change a certificate's status (activate, deactivate, revoke).
#[utoipa::path(
    put,
    operation_id = "update_certificate",
    path = "/v1/certificates/{id}",
    tag = "certificates",
    params(("id" = String, Path, description = "Certificate id")),
    request_body = CertificateUpdate,
    responses(
        (status = 200, description = "The updated certificate (version + 1 when the status changed). A revocation is in the CA's CRL at once.", body = Certificate),
        (status = 400, description = "Invalid or unknown field (only `status` and `revocation_reason` can change)", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such certificate", body = ApiError),
        (status = 409, description = "Stale `version`; or the certificate is revoked (terminal: `status`, or `revocation_reason` for a different reason)", body = ApiError),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<CertificateUpdate>,
) -> Result<Json<Certificate>, HttpError> {
    let (status, reason) = pki::status_change(&body.status, body.revocation_reason.as_deref())?;
    let cert = state
        .store
        .update_certificate_status(&actor, &id, body.version, status, reason)
        .await?;
    Ok(Json(to_wire(cert)))
}

/// Delete a certificate.
#[utoipa::path(
    delete,
    operation_id = "delete_certificate",
    path = "/v1/certificates/{id}",
    tag = "certificates",
    params(
        ("id" = String, Path, description = "Certificate id"),
        ("version" = Option<i64>, Query, description = "Expected version; omit to delete unconditionally"),
    ),
    responses(
        (status = 204, description = "Deleted. A certificate that was not revoked is added to the CA's CRL as `cessation_of_operation`, so it cannot be used anywhere the CRL is checked."),
        (status = 400, description = "Invalid `version`", body = ApiError),
        (status = 401, description = "Missing or wrong bearer token", body = ApiError),
        (status = 404, description = "No such certificate", body = ApiError),
        (status = 409, description = "Stale `version`, or policies are still attached to the certificate", body = ApiError),
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
    state.store.delete_certificate(&actor, &id, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn to_wire(c: CertificateRecord) -> Certificate {
    Certificate {
        id: c.id,
        ca_id: c.ca_id,
        device_id: c.device_id,
        common_name: c.common_name,
        csr_pem: c.csr_pem,
        key_algorithm: c.key_algorithm,
        validity_days: c.validity_days,
        status: c.status.as_str().to_owned(),
        revocation_reason: c.revocation_reason.map(|r| r.as_str().to_owned()),
        revoked_at: c.revoked_at.map(timestamp),
        serial: c.serial,
        certificate_pem: c.certificate_pem,
        fingerprint: c.fingerprint,
        not_before: timestamp(c.not_before),
        not_after: timestamp(c.not_after),
        private_key_pem: None,
        created_at: timestamp(c.created_at),
        updated_at: timestamp(c.updated_at),
        version: c.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> CertificateCreate {
        CertificateCreate {
            ca_id: "ca".into(),
            common_name: Some("x".into()),
            ..Default::default()
        }
    }

    fn field(b: &CertificateCreate) -> String {
        Request::validate(b)
            .err()
            .map(|e| e.field)
            .unwrap_or_default()
    }

    #[test]
    fn key_and_subject_are_exclusive_choices() {
        let r = Request::validate(&body()).unwrap();
        assert_eq!(r.generate, Some(KeyAlgorithm::EcdsaP256));
        assert_eq!(r.validity_days, 365);
        assert_eq!(r.status, CertificateStatus::Active);

        let mut b = body();
        b.csr_pem = Some("csr".into());
        assert_eq!(Request::validate(&b).unwrap().generate, None);
        b.key_algorithm = Some("ED25519".into());
        assert_eq!(field(&b), "key_algorithm");

        let mut b = body();
        b.key_algorithm = Some("RSA".into());
        assert_eq!(field(&b), "key_algorithm");

        let mut b = body();
        b.device_id = Some("d".into());
        assert_eq!(field(&b), "common_name");
        b.common_name = None;
        assert!(Request::validate(&b).is_ok());
        b.device_id = None;
        assert_eq!(field(&b), "device_id");

        let mut b = body();
        b.status = Some("revoked".into());
        assert_eq!(field(&b), "status");
        b.status = Some("inactive".into());
        assert_eq!(
            Request::validate(&b).unwrap().status,
            CertificateStatus::Inactive
        );

        let mut b = body();
        b.ca_id = String::new();
        assert_eq!(field(&b), "ca_id");
    }
}
