//! The traits a provider implements: a provider (configuration → client),
//! resources and data sources, each declared as a schema plus typed CRUD.
//!
//! Resources work with plain serde models; `AnyResource`/`AnyDataSource`
//! are the object-safe, value-level faces the protocol server drives, and
//! are implemented for every typed resource automatically.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};

use super::diag::{AttrPath, Diagnostics};
use super::model;
use super::schema::Schema;
use super::value::{Type, Value};

/// What a plan hook may adjust: the planned state and the attributes whose
/// change forces replacement.
pub struct PlanChange<'a> {
    /// Prior state; `Value::Null` when the object is being created.
    pub prior: &'a Value,
    pub config: &'a Value,
    pub planned: Value,
    pub requires_replace: Vec<AttrPath>,
}

impl PlanChange<'_> {
    pub fn planned_attr(&self, name: &str) -> &Value {
        self.planned.attr(name).unwrap_or(&Value::Null)
    }
    pub fn prior_attr(&self, name: &str) -> &Value {
        self.prior.attr(name).unwrap_or(&Value::Null)
    }
    pub fn set_planned(&mut self, name: &str, v: Value) {
        if let Value::Object(m) = &mut self.planned {
            m.insert(name.to_string(), v);
        }
    }
    pub fn require_replace(&mut self, name: &str) {
        let p = AttrPath::root(name);
        if !self.requires_replace.contains(&p) {
            self.requires_replace.push(p);
        }
    }
    pub fn is_create(&self) -> bool {
        self.prior.is_null()
    }
}

/// A managed resource, declared with a typed model.
#[async_trait]
pub trait Resource<C: Send + Sync + 'static>: Send + Sync + 'static {
    type Model: Serialize + DeserializeOwned + Send + Sync;

    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;

    /// Cross-attribute rules beyond per-attribute validators. `config` may
    /// hold unknown values; they are never errors.
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}

    /// Adjusts a create or update plan after the framework's generic rules.
    async fn modify_plan(
        &self,
        _client: Option<&C>,
        _plan: &mut PlanChange<'_>,
        _diags: &mut Diagnostics,
    ) {
    }

    /// Creates the object. `config` carries write-only attributes, which are
    /// null in `plan`.
    async fn create(
        &self,
        client: &C,
        plan: Self::Model,
        config: Self::Model,
    ) -> Result<Self::Model, Diagnostics>;
    /// Reads the object; `None` when it no longer exists.
    async fn read(
        &self,
        client: &C,
        state: Self::Model,
    ) -> Result<Option<Self::Model>, Diagnostics>;
    async fn update(
        &self,
        client: &C,
        prior: Self::Model,
        plan: Self::Model,
        config: Self::Model,
    ) -> Result<Self::Model, Diagnostics>;
    async fn delete(&self, client: &C, state: Self::Model) -> Result<(), Diagnostics>;
    /// Reads an existing object by its import id; `None` if there is none.
    async fn import(&self, client: &C, id: &str) -> Result<Option<Self::Model>, Diagnostics>;

    /// Migrates stored state (as JSON) from an older schema version.
    fn upgrade_state(
        &self,
        _from_version: i64,
        state: serde_json::Value,
    ) -> Result<serde_json::Value, Diagnostics> {
        Ok(state)
    }
}

/// A data source, declared with a typed model.
#[async_trait]
pub trait DataSource<C: Send + Sync + 'static>: Send + Sync + 'static {
    type Model: Serialize + DeserializeOwned + Send + Sync;

    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    async fn read(&self, client: &C, config: Self::Model) -> Result<Self::Model, Diagnostics>;
}

/// An ephemeral resource (Terraform ≥ 1.10): opened during plan or apply,
/// its result handed to other configuration and never stored in state or
/// plan. Suited to secrets such as freshly issued keys.
#[async_trait]
pub trait EphemeralResource<C: Send + Sync + 'static>: Send + Sync + 'static {
    type Model: Serialize + DeserializeOwned + Send + Sync;

    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    /// Produces the result from the configuration.
    async fn open(&self, client: &C, config: Self::Model) -> Result<Self::Model, Diagnostics>;
}

/// The provider itself: its configuration schema and how a configuration
/// becomes the client every resource uses.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    type Client: Send + Sync + 'static;
    type Config: DeserializeOwned + Send;

    fn schema(&self) -> Schema;
    async fn configure(
        &self,
        config: Self::Config,
        terraform_version: &str,
    ) -> Result<Self::Client, Diagnostics>;
    fn resources(&self) -> Vec<Arc<dyn AnyResource<Self::Client>>>;
    fn data_sources(&self) -> Vec<Arc<dyn AnyDataSource<Self::Client>>>;
    fn ephemeral_resources(&self) -> Vec<Arc<dyn AnyEphemeralResource<Self::Client>>> {
        Vec::new()
    }
}

/// Value-level face of a resource, driven by the protocol server.
#[async_trait]
pub trait AnyResource<C>: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, config: &Value, diags: &mut Diagnostics);
    async fn modify_plan(
        &self,
        client: Option<&C>,
        plan: &mut PlanChange<'_>,
        diags: &mut Diagnostics,
    );
    async fn create(
        &self,
        client: &C,
        plan: &Value,
        config: &Value,
        ty: &Type,
    ) -> Result<Value, Diagnostics>;
    async fn read(&self, client: &C, state: &Value, ty: &Type) -> Result<Value, Diagnostics>;
    async fn update(
        &self,
        client: &C,
        prior: &Value,
        plan: &Value,
        config: &Value,
        ty: &Type,
    ) -> Result<Value, Diagnostics>;
    async fn delete(&self, client: &C, state: &Value) -> Result<(), Diagnostics>;
    async fn import(&self, client: &C, id: &str, ty: &Type) -> Result<Option<Value>, Diagnostics>;
    fn upgrade_state(
        &self,
        from_version: i64,
        state: serde_json::Value,
    ) -> Result<serde_json::Value, Diagnostics>;
}

#[async_trait]
impl<C: Send + Sync + 'static, R: Resource<C>> AnyResource<C> for R {
    fn type_name(&self) -> &'static str {
        Resource::type_name(self)
    }
    fn schema(&self) -> Schema {
        Resource::schema(self)
    }
    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        Resource::validate(self, config, diags)
    }
    async fn modify_plan(
        &self,
        client: Option<&C>,
        plan: &mut PlanChange<'_>,
        diags: &mut Diagnostics,
    ) {
        Resource::modify_plan(self, client, plan, diags).await
    }
    async fn create(
        &self,
        client: &C,
        plan: &Value,
        config: &Value,
        ty: &Type,
    ) -> Result<Value, Diagnostics> {
        let m =
            Resource::create(self, client, model::decode(plan)?, model::decode(config)?).await?;
        model::encode(&m, ty)
    }
    async fn read(&self, client: &C, state: &Value, ty: &Type) -> Result<Value, Diagnostics> {
        match Resource::read(self, client, model::decode(state)?).await? {
            Some(m) => model::encode(&m, ty),
            None => Ok(Value::Null),
        }
    }
    async fn update(
        &self,
        client: &C,
        prior: &Value,
        plan: &Value,
        config: &Value,
        ty: &Type,
    ) -> Result<Value, Diagnostics> {
        let m = Resource::update(
            self,
            client,
            model::decode(prior)?,
            model::decode(plan)?,
            model::decode(config)?,
        )
        .await?;
        model::encode(&m, ty)
    }
    async fn delete(&self, client: &C, state: &Value) -> Result<(), Diagnostics> {
        Resource::delete(self, client, model::decode(state)?).await
    }
    async fn import(&self, client: &C, id: &str, ty: &Type) -> Result<Option<Value>, Diagnostics> {
        match Resource::import(self, client, id).await? {
            Some(m) => Ok(Some(model::encode(&m, ty)?)),
            None => Ok(None),
        }
    }
    fn upgrade_state(
        &self,
        from_version: i64,
        state: serde_json::Value,
    ) -> Result<serde_json::Value, Diagnostics> {
        Resource::upgrade_state(self, from_version, state)
    }
}

/// Value-level face of a data source.
#[async_trait]
pub trait AnyDataSource<C>: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, config: &Value, diags: &mut Diagnostics);
    async fn read(&self, client: &C, config: &Value, ty: &Type) -> Result<Value, Diagnostics>;
}

#[async_trait]
impl<C: Send + Sync + 'static, D: DataSource<C>> AnyDataSource<C> for D {
    fn type_name(&self) -> &'static str {
        DataSource::type_name(self)
    }
    fn schema(&self) -> Schema {
        DataSource::schema(self)
    }
    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        DataSource::validate(self, config, diags)
    }
    async fn read(&self, client: &C, config: &Value, ty: &Type) -> Result<Value, Diagnostics> {
        let m = DataSource::read(self, client, model::decode(config)?).await?;
        model::encode(&m, ty)
    }
}

/// Value-level face of an ephemeral resource.
#[async_trait]
pub trait AnyEphemeralResource<C>: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, config: &Value, diags: &mut Diagnostics);
    async fn open(&self, client: &C, config: &Value, ty: &Type) -> Result<Value, Diagnostics>;
}

#[async_trait]
impl<C: Send + Sync + 'static, E: EphemeralResource<C>> AnyEphemeralResource<C> for E {
    fn type_name(&self) -> &'static str {
        EphemeralResource::type_name(self)
    }
    fn schema(&self) -> Schema {
        EphemeralResource::schema(self)
    }
    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        EphemeralResource::validate(self, config, diags)
    }
    async fn open(&self, client: &C, config: &Value, ty: &Type) -> Result<Value, Diagnostics> {
        let m = EphemeralResource::open(self, client, model::decode(config)?).await?;
        model::encode(&m, ty)
    }
}
