//! Persistence: the [`Store`] trait and its implementations.
//!
//! Everything above this module talks to `Arc<dyn Store>` and never to a
//! database directly, so the embedded SQLite store used by `fleetd serve`
//! and a PostgreSQL store for replicated deployments can be swapped by a
//! `--database-url` without touching the API or the domain rules.
//!
//! The store is the authority on anything that depends on *other* rows:
//! parents existing, names being unique among siblings, cycles, nesting
//! depth, versions. Those checks run inside the same transaction as the
//! write they guard, so two concurrent requests can never both pass them.
//! Where the rule itself is a domain rule (the group hierarchy), the store
//! calls the pure function in [`crate::domain`] and only feeds it rows.
//! Checks that look at the request alone (name syntax, lengths) happen
//! before the store is called, in `api`, with the same domain rules.

pub mod compliance;
pub mod device_api;
pub mod engine;
mod error;
pub mod fleet;
mod fleet_model;
mod model;
pub mod pki;
mod pki_model;
// The modules under `sql/` are one source compiled into each backend
// (`#[path]`), each time against that backend's `db` layer.
#[allow(clippy::duplicate_mod)]
pub mod postgres;
#[allow(clippy::duplicate_mod)]
pub mod sqlite;
mod url;

use std::sync::Arc;

use async_trait::async_trait;

pub use error::StoreError;
pub use fleet_model::{
    AttachmentTarget, Device, DeviceSpec, FailureThresholdRecord, Firmware, FirmwareSpec,
    MaintenanceWindowRecord, PhaseRecord, Policy, PolicyAttachment, PolicyAttachmentSpec,
    PolicySpec, PolicyVersion, RateRecord, Rollout, RolloutCounts, RolloutSpec,
};
pub use model::{Actor, AuditAction, AuditEvent, DeviceGroup, DeviceGroupSpec, ObjectKind};
pub use pki_model::{
    CaRecord, CaSigner, CertificateFilter, CertificateRecord, EnrollmentFields, EnrollmentRecord,
    NewCa, NewCertificate,
};
pub use url::{DatabaseUrl, SqliteLocation};

/// Largest page a list call returns, whatever the caller asks for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Device groups: the hierarchy every other object hangs from.
///
/// Conventions shared by every method:
/// - writes take the [`Actor`] responsible and record an [`AuditEvent`] in
///   the same transaction: either both happen or neither does;
/// - updates and deletes take the version the caller expects; if the
///   stored object has another one nothing changes and
///   [`StoreError::VersionConflict`] reports both;
/// - lists are keyset-paginated: `after` is the last id of the previous
///   page (exclusive), results are ordered by id. Ids are UUIDv7, so this
///   is also creation order.
///
/// Methods are `async` (through `async_trait`, which keeps the trait
/// object-safe) so that a network database fits behind the same trait;
/// the SQLite implementation runs its blocking calls on Tokio's blocking
/// pool.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group with version 1. The parent, if any, must exist and
    /// the name must be free among its siblings.
    async fn create_device_group(
        &self,
        actor: &Actor,
        spec: DeviceGroupSpec,
    ) -> Result<DeviceGroup, StoreError>;

    /// The group with this id, or [`StoreError::NotFound`].
    async fn get_device_group(&self, id: &str) -> Result<DeviceGroup, StoreError>;

    /// Up to `limit` groups (capped at [`MAX_PAGE_SIZE`] + 1, the extra row telling
    /// the API that another page exists) with an id
    /// greater than `after`, ordered by id.
    async fn list_device_groups(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceGroup>, StoreError>;

    /// Replaces the mutable fields of a group and bumps its version. A new
    /// parent must exist, must not be the group itself or one of its
    /// descendants, and must not push the group's subtree deeper than
    /// [`crate::domain::group::MAX_HIERARCHY_DEPTH`].
    async fn update_device_group(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: DeviceGroupSpec,
    ) -> Result<DeviceGroup, StoreError>;

    /// Deletes a group that has no child groups. With `expected_version`
    /// `None` the delete is unconditional.
    async fn delete_device_group(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError>;

    /// The audit trail of one object, oldest first.
    async fn audit_events(&self, kind: ObjectKind, id: &str)
        -> Result<Vec<AuditEvent>, StoreError>;
}

/// fleetd's whole persistent state: one sub-trait per area of the model,
/// so each area's methods live beside its rows. Callers hold
/// `Arc<dyn Store>` and bring the sub-traits into scope with
/// `use crate::store::prelude::*`.
pub trait Store:
    GroupStore + FleetStore + PkiStore + EngineStore + DeviceApiStore + ComplianceStore
{
}

impl<T: GroupStore + FleetStore + PkiStore + EngineStore + DeviceApiStore + ComplianceStore> Store
    for T
{
}

/// The store traits, for `use crate::store::prelude::*`.
pub mod prelude {
    pub use super::compliance::ComplianceStore;
    pub use super::device_api::DeviceApiStore;
    pub use super::engine::EngineStore;
    pub use super::fleet::FleetStore;
    pub use super::pki::PkiStore;
    pub use super::{GroupStore, Store};
}

pub use compliance::ComplianceStore;
pub use device_api::DeviceApiStore;
pub use engine::EngineStore;
pub use fleet::FleetStore;
pub use pki::PkiStore;

/// Opens (creating and migrating if needed) the store a database URL
/// points at.
pub async fn open(url: &DatabaseUrl) -> anyhow::Result<Arc<dyn Store>> {
    match url {
        DatabaseUrl::Sqlite(location) => {
            let store = sqlite::SqliteStore::open(location.clone()).await?;
            Ok(Arc::new(store))
        }
        DatabaseUrl::Postgres(url) => {
            let store = postgres::PgStore::open(url).await?;
            Ok(Arc::new(store))
        }
    }
}
