//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the `fleet-api` types, served at `GET /openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};

use fleet_api::{ApiError, DeviceGroup, DeviceGroupCreate, DeviceGroupUpdate, ErrorKind, Health};
use fleet_api::{
    Certificate, CertificateAuthority, CertificateAuthorityCreate, CertificateAuthorityUpdate,
    CertificateCreate, CertificateUpdate, Enrollment, EnrollmentCreate, EnrollmentUpdate,
};

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
        CertificateAuthority, CertificateAuthorityCreate, CertificateAuthorityUpdate,
        Certificate, CertificateCreate, CertificateUpdate,
        Enrollment, EnrollmentCreate, EnrollmentUpdate,
        Device, DeviceCreate, DeviceUpdate,
        Policy, PolicyCreate, PolicyUpdate, PolicyStatement, PolicyVersion,
        PolicyAttachment, PolicyAttachmentCreate,
        Firmware, FirmwareCreate,
        Rollout, RolloutCreate, RolloutUpdate, RolloutPhase, RolloutRate, FailureThreshold,
        MaintenanceWindow, RolloutCounts)),
    modifiers(&BearerAuth),
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
