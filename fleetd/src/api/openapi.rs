//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the `fleet-api` types, served at `GET /openapi.json`.

use axum::Json;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use fleet_api::{ApiError, DeviceGroup, DeviceGroupCreate, DeviceGroupUpdate, ErrorKind, Health};
use fleet_api::{
    Certificate, CertificateAuthority, CertificateAuthorityCreate, CertificateAuthorityUpdate,
    CertificateCreate, CertificateUpdate, Enrollment, EnrollmentCreate, EnrollmentUpdate,
};
use fleet_api::{GroupCompliance, GroupComplianceReport, NonCompliantDevice};

use fleet_api::{
    Device, DeviceCreate, DeviceUpdate, FailureThreshold, Firmware, FirmwareCreate,
    MaintenanceWindow, Policy, PolicyAttachment, PolicyAttachmentCreate, PolicyCreate,
    PolicyStatement, PolicyUpdate, PolicyVersion, Rollout, RolloutCounts, RolloutCreate,
    RolloutPhase, RolloutRate, RolloutUpdate,
};

use super::{certificate_authorities, certificates, device_groups, enrollments, health};
use super::{devices, firmware, metrics, policies, policy_attachments, rollouts};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleetd admin API",
        description = "Manage a Fleetform fleet. Every route except /healthz needs \
                       `Authorization: Bearer <token>`. Errors are always \
                       `{\"error\", \"field\", \"message\"}`.",
    ),
    paths(
        health::healthz,
        document,
        device_groups::create,
        device_groups::list,
        device_groups::read,
        device_groups::update,
        device_groups::delete,
        device_groups::compliance,
        device_groups::noncompliant,
        devices::create,
        devices::list,
        devices::read,
        devices::update,
        devices::delete,
        policies::create,
        policies::list,
        policies::read,
        policies::update,
        policies::delete,
        policies::versions,
        policy_attachments::create,
        policy_attachments::list,
        policy_attachments::read,
        policy_attachments::delete,
        firmware::create,
        firmware::list,
        firmware::read,
        firmware::delete,
        rollouts::create,
        rollouts::list,
        rollouts::read,
        rollouts::update,
        rollouts::delete,
        metrics::render,
        certificate_authorities::create,
        certificate_authorities::list,
        certificate_authorities::read,
        certificate_authorities::update,
        certificate_authorities::delete,
        certificate_authorities::crl,
        certificates::create,
        certificates::list,
        certificates::read,
        certificates::update,
        certificates::delete,
        enrollments::create,
        enrollments::list,
        enrollments::read,
        enrollments::update,
        enrollments::delete,
    ),
    components(schemas(ApiError, ErrorKind, DeviceGroup, DeviceGroupCreate, DeviceGroupUpdate, Health,
        GroupCompliance, GroupComplianceReport, NonCompliantDevice,
        CertificateAuthority, CertificateAuthorityCreate, CertificateAuthorityUpdate,
        Certificate, CertificateCreate, CertificateUpdate,
        Enrollment, EnrollmentCreate, EnrollmentUpdate,
        Device, DeviceCreate, DeviceUpdate,
        Policy, PolicyCreate, PolicyUpdate, PolicyStatement, PolicyVersion,
        PolicyAttachment, PolicyAttachmentCreate,
        Firmware, FirmwareCreate,
        Rollout, RolloutCreate, RolloutUpdate, RolloutPhase, RolloutRate, FailureThreshold,
        MaintenanceWindow, RolloutCounts)),
    modifiers(&BearerAuth, &CommonResponses, &ObjectLinks),
    security(("bearer" = [])),
    tags(
        (name = "device-groups", description = "The device group tree"),
        (name = "certificate-authorities", description = "CAs that sign device certificates; their private keys never leave fleetd"),
        (name = "certificates", description = "Device certificates"),
        (name = "enrollments", description = "Zero-touch provisioning rules"),
        (name = "devices", description = "Registered devices; `?query=` filters the list"),
        (name = "policies", description = "Access policies (deny by default), their versions and attachments"),
        (name = "firmware", description = "Immutable firmware releases"),
        (name = "rollouts", description = "Staged firmware rollouts to device groups"),
        (name = "system", description = "Health, metrics and API description"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Responses that middleware and extractors give for every route of a
/// kind, added here rather than repeated on each handler: 401 wherever a
/// token is required, 413 and 415 wherever a JSON body is read.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(RefOr::Ref(Ref::from_schema_name("ApiError")))),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                let public = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|r| *r == SecurityRequirement::default()));
                let responses = &mut op.responses.responses;
                if !public {
                    responses
                        .entry("401".into())
                        .or_insert_with(|| error("Missing or wrong bearer token").into());
                }
                if op.request_body.is_some() {
                    responses
                        .entry("413".into())
                        .or_insert_with(|| error("The request body is too large").into());
                    responses.entry("415".into()).or_insert_with(|| {
                        error("The request body is not `Content-Type: application/json`").into()
                    });
                }
            }
        }
    }
}

/// OpenAPI links from each `POST /v1/<kind>` to the operations on the
/// object it created (`/v1/<kind>/{id}` and below), so clients and API
/// fuzzers can follow an object through its life.
struct ObjectLinks;

impl Modify for ObjectLinks {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let paths = &mut openapi.paths.paths;
        let mut targets: Vec<(String, Vec<String>)> = Vec::new();
        for collection in paths.keys() {
            let prefix = format!("{collection}/{{id}}");
            let mut ids = Vec::new();
            for (path, item) in paths.iter() {
                if path == &prefix || path.starts_with(&format!("{prefix}/")) {
                    for op in operations_ref(item) {
                        ids.extend(op.operation_id.clone());
                    }
                }
            }
            if !ids.is_empty() {
                targets.push((collection.clone(), ids));
            }
        }
        for (collection, ids) in targets {
            let Some(create) = paths.get_mut(&collection).and_then(|i| i.post.as_mut()) else {
                continue;
            };
            let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else {
                continue;
            };
            for id in ids {
                // utoipa 5 serialises `Link::operation_id` as
                // "operation_id", which OpenAPI does not know (and the
                // validator rejects); the flattened extensions carry the
                // right key instead.
                let extensions: Extensions = [("operationId", serde_json::json!(id))]
                    .into_iter()
                    .collect();
                let link = LinkBuilder::new()
                    .parameter("id", "$response.body#/id")
                    .extensions(Some(extensions))
                    .build();
                created.links.insert(id, RefOr::T(link));
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn operations_ref(item: &PathItem) -> impl Iterator<Item = &Operation> {
    [
        item.get.as_ref(),
        item.put.as_ref(),
        item.post.as_ref(),
        item.delete.as_ref(),
        item.patch.as_ref(),
    ]
    .into_iter()
    .flatten()
}

/// This document.
#[utoipa::path(
    get,
    operation_id = "openapi",
    path = "/openapi.json",
    tag = "system",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn document() -> Json<OpenApiDoc> {
    Json(ApiDoc::openapi())
}
