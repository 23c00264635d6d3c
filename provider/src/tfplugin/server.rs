//! The tfplugin6 `Provider` gRPC service, driven by a framework `Provider`.
//!
//! Every RPC decodes its DynamicValues with the schema's type, hands plain
//! values to the framework, and answers with diagnostics instead of gRPC
//! errors wherever Terraform can show them next to the configuration.
//! Schemas are computed once at start, so no RPC depends on a prior
//! GetProviderSchema call (`get_provider_schema_optional`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use fleetform_proto::tfplugin6 as pb;
use tonic::{Request, Response, Status};

use super::convert::{self, decode, encode};
use super::diag::{AttrPath, Diagnostic, Diagnostics};
use super::framework::{AnyDataSource, AnyEphemeralResource, AnyResource, PlanChange, Provider};
use super::model;
use super::plan;
use super::schema::{Block, Nesting, Presence, Schema};
use super::value::{Type, Value};

struct Entry<T: ?Sized> {
    imp: Arc<T>,
    schema: Schema,
    ty: Type,
}

/// Serves a framework provider over tfplugin6.
pub struct ProviderService<P: Provider> {
    provider: P,
    provider_schema: Schema,
    provider_ty: Type,
    resources: BTreeMap<String, Entry<dyn AnyResource<P::Client>>>,
    data_sources: BTreeMap<String, Entry<dyn AnyDataSource<P::Client>>>,
    ephemeral: BTreeMap<String, Entry<dyn AnyEphemeralResource<P::Client>>>,
    client: RwLock<Option<Arc<P::Client>>>,
}

type Rpc<T> = Result<Response<T>, Status>;

impl<P: Provider> ProviderService<P> {
    pub fn new(provider: P) -> Self {
        let provider_schema = provider.schema();
        let provider_ty = provider_schema.object_type();
        let resources = provider
            .resources()
            .into_iter()
            .map(|imp| {
                let schema = imp.schema();
                let ty = schema.object_type();
                (imp.type_name().to_string(), Entry { imp, schema, ty })
            })
            .collect();
        let data_sources = provider
            .data_sources()
            .into_iter()
            .map(|imp| {
                let schema = imp.schema();
                let ty = schema.object_type();
                (imp.type_name().to_string(), Entry { imp, schema, ty })
            })
            .collect();
        let ephemeral = provider
            .ephemeral_resources()
            .into_iter()
            .map(|imp| {
                let schema = imp.schema();
                let ty = schema.object_type();
                (imp.type_name().to_string(), Entry { imp, schema, ty })
            })
            .collect();
        ProviderService {
            ephemeral,
            provider,
            provider_schema,
            provider_ty,
            resources,
            data_sources,
            client: RwLock::new(None),
        }
    }

    fn capabilities() -> pb::ServerCapabilities {
        pb::ServerCapabilities {
            plan_destroy: true,
            get_provider_schema_optional: true,
            move_resource_state: false,
            generate_resource_config: true,
        }
    }

    fn resource(&self, name: &str) -> Result<&Entry<dyn AnyResource<P::Client>>, Diagnostics> {
        self.resources.get(name).ok_or_else(|| {
            Diagnostic::error(
                "Unknown resource type",
                format!("this provider has no resource type {name:?}"),
            )
            .into()
        })
    }

    fn data_source(&self, name: &str) -> Result<&Entry<dyn AnyDataSource<P::Client>>, Diagnostics> {
        self.data_sources.get(name).ok_or_else(|| {
            Diagnostic::error(
                "Unknown data source",
                format!("this provider has no data source {name:?}"),
            )
            .into()
        })
    }

    fn ephemeral(
        &self,
        name: &str,
    ) -> Result<&Entry<dyn AnyEphemeralResource<P::Client>>, Diagnostics> {
        self.ephemeral.get(name).ok_or_else(|| {
            Diagnostic::error(
                "Unknown ephemeral resource type",
                format!("this provider has no ephemeral resource type {name:?}"),
            )
            .into()
        })
    }

    fn client(&self) -> Result<Arc<P::Client>, Diagnostics> {
        self.client
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| {
                Diagnostic::error(
                    "Provider not configured",
                    "Terraform called the provider before configuring it; this is a bug in the provider or Terraform.",
                )
                .into()
            })
    }
}

/// Runs each attribute's validators over known values, recursing into
/// nested blocks, with the attribute path of every failure.
pub fn validate_block(block: &Block, v: &Value, path: &AttrPath, diags: &mut Diagnostics) {
    let Value::Object(obj) = v else { return };
    for a in &block.attributes {
        let av = obj.get(&a.name).unwrap_or(&Value::Null);
        let p = if path.0.is_empty() {
            AttrPath::root(&a.name)
        } else {
            path.clone().attr(&a.name)
        };
        if a.presence == Presence::Required && av.is_null() {
            // Terraform core reports missing required attributes itself.
            continue;
        }
        if av.is_null() || av.is_unknown() {
            continue;
        }
        for check in &a.validators {
            check(av, &p, diags);
        }
    }
    for b in &block.blocks {
        let bv = obj.get(&b.type_name).unwrap_or(&Value::Null);
        let p = if path.0.is_empty() {
            AttrPath::root(&b.type_name)
        } else {
            path.clone().attr(&b.type_name)
        };
        match (b.nesting, bv) {
            (Nesting::Single, v) => validate_block(&b.block, v, &p, diags),
            (_, Value::List(items)) | (_, Value::Set(items)) => {
                for (i, item) in items.iter().enumerate() {
                    validate_block(&b.block, item, &p.clone().index(i), diags);
                }
            }
            _ => {}
        }
    }
}

/// Decodes a configuration and runs the schema's validators and the
/// type's own cross-attribute rules: shared by every Validate*Config RPC.
fn validate_config(
    schema: &Schema,
    ty: &Type,
    config: Option<&pb::DynamicValue>,
    custom: impl FnOnce(&Value, &mut Diagnostics),
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    match decode(config, ty, "configuration") {
        Ok(cfg) => {
            validate_block(&schema.block, &cfg, &AttrPath::default(), &mut diags);
            custom(&cfg, &mut diags);
        }
        Err(d) => diags.extend(d),
    }
    diags
}

/// Reshapes a state value into configuration: computed-only and write-only
/// attributes are dropped (used for `-generate-config-out`).
fn config_from_state(schema: &Schema, state: &Value) -> Value {
    let Value::Object(obj) = state else {
        return state.clone();
    };
    let mut out = obj.clone();
    for a in &schema.block.attributes {
        let drop = a.presence == Presence::Computed
            || a.write_only
            || (a.default.is_some() && obj.get(&a.name) == a.default.as_ref());
        if drop {
            out.insert(a.name.clone(), Value::Null);
        }
    }
    Value::Object(out)
}

fn fail<T: Default>(d: Diagnostics, set: impl FnOnce(&mut T, Vec<pb::Diagnostic>)) -> Rpc<T> {
    let mut r = T::default();
    set(&mut r, convert::diagnostics(&d));
    Ok(Response::new(r))
}

#[tonic::async_trait]
impl<P: Provider> pb::provider_server::Provider for ProviderService<P> {
    async fn get_metadata(
        &self,
        _: Request<pb::get_metadata::Request>,
    ) -> Rpc<pb::get_metadata::Response> {
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(Self::capabilities()),
            resources: self
                .resources
                .keys()
                .map(|k| pb::get_metadata::ResourceMetadata {
                    type_name: k.clone(),
                })
                .collect(),
            data_sources: self
                .data_sources
                .keys()
                .map(|k| pb::get_metadata::DataSourceMetadata {
                    type_name: k.clone(),
                })
                .collect(),
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<pb::get_provider_schema::Request>,
    ) -> Rpc<pb::get_provider_schema::Response> {
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(convert::schema(&self.provider_schema)),
            resource_schemas: self
                .resources
                .iter()
                .map(|(k, e)| (k.clone(), convert::schema(&e.schema)))
                .collect(),
            data_source_schemas: self
                .data_sources
                .iter()
                .map(|(k, e)| (k.clone(), convert::schema(&e.schema)))
                .collect(),
            ephemeral_resource_schemas: self
                .ephemeral
                .iter()
                .map(|(k, e)| (k.clone(), convert::schema(&e.schema)))
                .collect(),
            server_capabilities: Some(Self::capabilities()),
            ..Default::default()
        }))
    }

    async fn get_resource_identity_schemas(
        &self,
        _: Request<pb::get_resource_identity_schemas::Request>,
    ) -> Rpc<pb::get_resource_identity_schemas::Response> {
        Ok(Response::new(Default::default()))
    }

    async fn validate_provider_config(
        &self,
        req: Request<pb::validate_provider_config::Request>,
    ) -> Rpc<pb::validate_provider_config::Response> {
        let req = req.into_inner();
        let mut diags = Diagnostics::new();
        match decode(
            req.config.as_ref(),
            &self.provider_ty,
            "provider configuration",
        ) {
            Ok(cfg) => validate_block(
                &self.provider_schema.block,
                &cfg,
                &AttrPath::default(),
                &mut diags,
            ),
            Err(d) => diags.extend(d),
        }
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: convert::diagnostics(&diags),
        }))
    }

    async fn configure_provider(
        &self,
        req: Request<pb::configure_provider::Request>,
    ) -> Rpc<pb::configure_provider::Response> {
        let req = req.into_inner();
        let result = async {
            let cfg = decode(req.config.as_ref(), &self.provider_ty, "provider configuration")?;
            if !cfg.is_fully_known() {
                return Err(Diagnostics::from(Diagnostic::error(
                    "Provider configuration is not known yet",
                    "The provider's configuration depends on values known only after apply. Configure the provider from values known at plan time.",
                )));
            }
            let typed = model::decode(&cfg)?;
            self.provider.configure(typed, &req.terraform_version).await
        }
        .await;
        let diags = match result {
            Ok(c) => {
                *self.client.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(c));
                Diagnostics::new()
            }
            Err(d) => d,
        };
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: convert::diagnostics(&diags),
        }))
    }

    async fn validate_resource_config(
        &self,
        req: Request<pb::validate_resource_config::Request>,
    ) -> Rpc<pb::validate_resource_config::Response> {
        let req = req.into_inner();
        let diags = self
            .resource(&req.type_name)
            .map(|e| {
                validate_config(&e.schema, &e.ty, req.config.as_ref(), |c, d| {
                    e.imp.validate(c, d)
                })
            })
            .unwrap_or_else(|d| d);
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: convert::diagnostics(&diags),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        req: Request<pb::validate_data_resource_config::Request>,
    ) -> Rpc<pb::validate_data_resource_config::Response> {
        let req = req.into_inner();
        let diags = self
            .data_source(&req.type_name)
            .map(|e| {
                validate_config(&e.schema, &e.ty, req.config.as_ref(), |c, d| {
                    e.imp.validate(c, d)
                })
            })
            .unwrap_or_else(|d| d);
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: convert::diagnostics(&diags),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        req: Request<pb::upgrade_resource_state::Request>,
    ) -> Rpc<pb::upgrade_resource_state::Response> {
        let req = req.into_inner();
        let result = (|| {
            let e = self.resource(&req.type_name)?;
            let raw = req.raw_state.unwrap_or_default();
            let json: serde_json::Value = if !raw.json.is_empty() {
                serde_json::from_slice(&raw.json).map_err(|err| {
                    Diagnostics::from(Diagnostic::error("Invalid stored state", err.to_string()))
                })?
            } else if !raw.flatmap.is_empty() {
                return Err(Diagnostics::from(Diagnostic::error(
                    "Unsupported state format",
                    "this state was written in the legacy flatmap format, which this provider never produced",
                )));
            } else {
                serde_json::Value::Null
            };
            if req.version > e.schema.version {
                return Err(Diagnostics::from(Diagnostic::error(
                    "State written by a newer provider",
                    format!(
                        "the stored state has schema version {} but this provider knows up to {}; upgrade the provider",
                        req.version, e.schema.version
                    ),
                )));
            }
            let json = if req.version < e.schema.version {
                e.imp.upgrade_state(req.version, json)?
            } else {
                json
            };
            let v = model::from_json(&json, &e.ty, true)
                .map_err(|err| Diagnostics::from(Diagnostic::error("Invalid stored state", err)))?;
            encode(&v, &e.ty)
        })();
        match result {
            Ok(state) => Ok(Response::new(pb::upgrade_resource_state::Response {
                upgraded_state: Some(state),
                diagnostics: vec![],
            })),
            Err(d) => fail(d, |r: &mut pb::upgrade_resource_state::Response, d| {
                r.diagnostics = d
            }),
        }
    }

    async fn read_resource(
        &self,
        req: Request<pb::read_resource::Request>,
    ) -> Rpc<pb::read_resource::Response> {
        let req = req.into_inner();
        let result = async {
            let e = self.resource(&req.type_name)?;
            let state = decode(req.current_state.as_ref(), &e.ty, "state")?;
            if state.is_null() {
                return Ok((Value::Null, e));
            }
            let client = self.client()?;
            Ok((e.imp.read(&client, &state, &e.ty).await?, e))
        }
        .await;
        match result.and_then(|(v, e)| encode(&v, &e.ty)) {
            Ok(new_state) => Ok(Response::new(pb::read_resource::Response {
                new_state: Some(new_state),
                private: req.private,
                ..Default::default()
            })),
            Err(d) => fail(d, |r: &mut pb::read_resource::Response, d| {
                r.diagnostics = d
            }),
        }
    }

    async fn plan_resource_change(
        &self,
        req: Request<pb::plan_resource_change::Request>,
    ) -> Rpc<pb::plan_resource_change::Response> {
        let req = req.into_inner();
        let result = async {
            let e = self.resource(&req.type_name)?;
            let prior = decode(req.prior_state.as_ref(), &e.ty, "prior state")?;
            let proposed = decode(req.proposed_new_state.as_ref(), &e.ty, "proposed state")?;
            let config = decode(req.config.as_ref(), &e.ty, "configuration")?;
            let p = plan::plan(&e.schema, &prior, &proposed, &config);
            let mut diags = Diagnostics::new();
            let mut change = PlanChange {
                prior: &prior,
                config: &config,
                planned: p.planned,
                requires_replace: p.requires_replace,
            };
            if !change.planned.is_null() {
                let client = self.client().ok();
                e.imp
                    .modify_plan(client.as_deref(), &mut change, &mut diags)
                    .await;
            }
            if diags.has_errors() {
                return Err(diags);
            }
            Ok((
                encode(&change.planned, &e.ty)?,
                change.requires_replace,
                diags,
            ))
        }
        .await;
        match result {
            Ok((planned, rr, diags)) => Ok(Response::new(pb::plan_resource_change::Response {
                planned_state: Some(planned),
                requires_replace: rr.iter().map(convert::path).collect(),
                planned_private: req.prior_private,
                diagnostics: convert::diagnostics(&diags),
                ..Default::default()
            })),
            Err(d) => fail(d, |r: &mut pb::plan_resource_change::Response, d| {
                r.diagnostics = d
            }),
        }
    }

    async fn apply_resource_change(
        &self,
        req: Request<pb::apply_resource_change::Request>,
    ) -> Rpc<pb::apply_resource_change::Response> {
        let req = req.into_inner();
        let e = match self.resource(&req.type_name) {
            Ok(e) => e,
            Err(d) => {
                return fail(d, |r: &mut pb::apply_resource_change::Response, d| {
                    r.diagnostics = d
                })
            }
        };
        let decoded = (|| {
            Ok::<_, Diagnostics>((
                decode(req.prior_state.as_ref(), &e.ty, "prior state")?,
                decode(req.planned_state.as_ref(), &e.ty, "planned state")?,
                decode(req.config.as_ref(), &e.ty, "configuration")?,
            ))
        })();
        let (prior, planned, config) = match decoded {
            Ok(x) => x,
            Err(d) => {
                return fail(d, |r: &mut pb::apply_resource_change::Response, d| {
                    r.diagnostics = d
                })
            }
        };
        let client = match self.client() {
            Ok(c) => c,
            Err(d) => {
                return fail(d, |r: &mut pb::apply_resource_change::Response, d| {
                    r.diagnostics = d
                })
            }
        };
        let (new_state, diags) = if planned.is_null() {
            match e.imp.delete(&client, &prior).await {
                Ok(()) => (Value::Null, Diagnostics::new()),
                Err(d) => (prior.clone(), d),
            }
        } else if prior.is_null() {
            match e.imp.create(&client, &planned, &config, &e.ty).await {
                Ok(v) => (v, Diagnostics::new()),
                Err(d) => (Value::Null, d),
            }
        } else {
            match e
                .imp
                .update(&client, &prior, &planned, &config, &e.ty)
                .await
            {
                Ok(v) => (v, Diagnostics::new()),
                Err(d) => (prior.clone(), d),
            }
        };
        let new_state = strip_write_only(&e.schema, new_state);
        match encode(&new_state, &e.ty) {
            Ok(ns) => Ok(Response::new(pb::apply_resource_change::Response {
                new_state: Some(ns),
                private: req.planned_private,
                diagnostics: convert::diagnostics(&diags),
                ..Default::default()
            })),
            Err(mut d) => {
                d.extend(diags);
                fail(d, |r: &mut pb::apply_resource_change::Response, d| {
                    r.diagnostics = d
                })
            }
        }
    }

    async fn import_resource_state(
        &self,
        req: Request<pb::import_resource_state::Request>,
    ) -> Rpc<pb::import_resource_state::Response> {
        let req = req.into_inner();
        let result = async {
            let e = self.resource(&req.type_name)?;
            let client = self.client()?;
            match e.imp.import(&client, &req.id, &e.ty).await? {
                Some(v) => Ok(pb::import_resource_state::ImportedResource {
                    type_name: req.type_name.clone(),
                    state: Some(encode(&strip_write_only(&e.schema, v), &e.ty)?),
                    ..Default::default()
                }),
                None => Err(Diagnostics::from(Diagnostic::error(
                    "Cannot import non-existent remote object",
                    format!(
                        "no {} with id {:?} exists in fleetd; check the id (and that the provider points at the right endpoint)",
                        req.type_name, req.id
                    ),
                ))),
            }
        }
        .await;
        match result {
            Ok(r) => Ok(Response::new(pb::import_resource_state::Response {
                imported_resources: vec![r],
                ..Default::default()
            })),
            Err(d) => fail(d, |r: &mut pb::import_resource_state::Response, d| {
                r.diagnostics = d
            }),
        }
    }

    async fn generate_resource_config(
        &self,
        req: Request<pb::generate_resource_config::Request>,
    ) -> Rpc<pb::generate_resource_config::Response> {
        let req = req.into_inner();
        let result = self.resource(&req.type_name).and_then(|e| {
            let state = decode(req.state.as_ref(), &e.ty, "state")?;
            encode(&config_from_state(&e.schema, &state), &e.ty)
        });
        match result {
            Ok(cfg) => Ok(Response::new(pb::generate_resource_config::Response {
                config: Some(cfg),
                diagnostics: vec![],
            })),
            Err(d) => fail(d, |r: &mut pb::generate_resource_config::Response, d| {
                r.diagnostics = d
            }),
        }
    }

    async fn read_data_source(
        &self,
        req: Request<pb::read_data_source::Request>,
    ) -> Rpc<pb::read_data_source::Response> {
        let req = req.into_inner();
        let result = async {
            let e = self.data_source(&req.type_name)?;
            let config = decode(req.config.as_ref(), &e.ty, "configuration")?;
            let client = self.client()?;
            let v = e.imp.read(&client, &config, &e.ty).await?;
            encode(&v, &e.ty)
        }
        .await;
        match result {
            Ok(state) => Ok(Response::new(pb::read_data_source::Response {
                state: Some(state),
                ..Default::default()
            })),
            Err(d) => fail(d, |r: &mut pb::read_data_source::Response, d| {
                r.diagnostics = d
            }),
        }
    }

    async fn validate_ephemeral_resource_config(
        &self,
        req: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Rpc<pb::validate_ephemeral_resource_config::Response> {
        let req = req.into_inner();
        let diags = self
            .ephemeral(&req.type_name)
            .map(|e| {
                validate_config(&e.schema, &e.ty, req.config.as_ref(), |c, d| {
                    e.imp.validate(c, d)
                })
            })
            .unwrap_or_else(|d| d);
        Ok(Response::new(
            pb::validate_ephemeral_resource_config::Response {
                diagnostics: convert::diagnostics(&diags),
            },
        ))
    }

    async fn open_ephemeral_resource(
        &self,
        req: Request<pb::open_ephemeral_resource::Request>,
    ) -> Rpc<pb::open_ephemeral_resource::Response> {
        let req = req.into_inner();
        let result = async {
            let e = self.ephemeral(&req.type_name)?;
            let config = decode(req.config.as_ref(), &e.ty, "configuration")?;
            let client = self.client()?;
            let v = e.imp.open(&client, &config, &e.ty).await?;
            encode(&v, &e.ty)
        }
        .await;
        match result {
            Ok(v) => Ok(Response::new(pb::open_ephemeral_resource::Response {
                result: Some(v),
                ..Default::default()
            })),
            Err(d) => fail(d, |r: &mut pb::open_ephemeral_resource::Response, d| {
                r.diagnostics = d
            }),
        }
    }

    async fn renew_ephemeral_resource(
        &self,
        _: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Rpc<pb::renew_ephemeral_resource::Response> {
        // We never ask for renewal (no renew_at), so there is nothing to do.
        Ok(Response::new(Default::default()))
    }

    async fn close_ephemeral_resource(
        &self,
        _: Request<pb::close_ephemeral_resource::Request>,
    ) -> Rpc<pb::close_ephemeral_resource::Response> {
        Ok(Response::new(Default::default()))
    }

    async fn stop_provider(
        &self,
        _: Request<pb::stop_provider::Request>,
    ) -> Rpc<pb::stop_provider::Response> {
        Ok(Response::new(pb::stop_provider::Response::default()))
    }
}

fn strip_write_only(schema: &Schema, v: Value) -> Value {
    match v {
        Value::Object(mut m) => {
            for a in schema.block.attributes.iter().filter(|a| a.write_only) {
                m.insert(a.name.clone(), Value::Null);
            }
            Value::Object(m)
        }
        other => other,
    }
}
