//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the `fleet-api` types, served at `GET /openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};

use fleet_api::{ApiError, DeviceGroup, DeviceGroupCreate, DeviceGroupUpdate, ErrorKind, Health};

use super::{device_groups, health};

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
    ),
    components(schemas(ApiError, ErrorKind, DeviceGroup, DeviceGroupCreate, DeviceGroupUpdate, Health)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "device-groups", description = "The device group tree"),
        (name = "system", description = "Health and API description"),
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
