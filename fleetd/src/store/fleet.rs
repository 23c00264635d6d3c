//! Devices, policies and their attachments, firmware releases and rollout
//! definitions: the [`FleetStore`] part of the store.

use async_trait::async_trait;

use super::fleet_model::{
    Device, DeviceSpec, Firmware, FirmwareSpec, Policy, PolicyAttachment, PolicyAttachmentSpec,
    PolicySpec, PolicyVersion, Rollout, RolloutSpec,
};
use super::{Actor, StoreError};
use crate::domain::query::Query;

/// Persistence for devices, policies, attachments, firmware and rollouts.
/// Same conventions as [`super::GroupStore`]: every write is one
/// transaction with its audit row, updates and deletes take the expected
/// version, lists are keyset-paginated by id.
///
/// References are checked inside the write transaction and reported as
/// [`StoreError::Invalid`] naming the request field (`group_ids[1]`,
/// `firmware_id`); objects still referenced elsewhere refuse deletion with
/// [`StoreError::Conflict`].
#[async_trait]
pub trait FleetStore: Send + Sync + 'static {
    // ---------------------------------------------------------- devices

    /// Creates a device. The name must be free; every group must exist.
    async fn create_device(&self, actor: &Actor, spec: DeviceSpec) -> Result<Device, StoreError>;

    async fn get_device(&self, id: &str) -> Result<Device, StoreError>;

    /// Up to `limit` devices with an id greater than `after` that match
    /// `filter` (all devices without one), ordered by id. A filtered list
    /// scans devices in id order until the page is full.
    async fn list_devices(
        &self,
        after: Option<&str>,
        limit: u32,
        filter: Option<Query>,
    ) -> Result<Vec<Device>, StoreError>;

    async fn update_device(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: DeviceSpec,
    ) -> Result<Device, StoreError>;

    async fn delete_device(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError>;

    // ---------------------------------------------------------- policies

    /// Creates a policy at policy version 1 (kept in its version history).
    async fn create_policy(&self, actor: &Actor, spec: PolicySpec) -> Result<Policy, StoreError>;

    async fn get_policy(&self, id: &str) -> Result<Policy, StoreError>;

    async fn list_policies(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Policy>, StoreError>;

    /// Replaces a policy. When the statements change, the policy version
    /// goes up by one and the oldest versions beyond
    /// [`crate::domain::policy::DEFAULT_KEEP_VERSIONS`] are pruned.
    async fn update_policy(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: PolicySpec,
    ) -> Result<Policy, StoreError>;

    /// Refused while the policy is attached anywhere.
    async fn delete_policy(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError>;

    /// The kept versions of a policy, newest first.
    async fn list_policy_versions(&self, id: &str) -> Result<Vec<PolicyVersion>, StoreError>;

    /// Attaches a policy to a group or a certificate; both must exist and
    /// the pair must not be attached already.
    async fn create_policy_attachment(
        &self,
        actor: &Actor,
        spec: PolicyAttachmentSpec,
    ) -> Result<PolicyAttachment, StoreError>;

    async fn get_policy_attachment(&self, id: &str) -> Result<PolicyAttachment, StoreError>;

    async fn list_policy_attachments(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PolicyAttachment>, StoreError>;

    async fn delete_policy_attachment(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError>;

    // ---------------------------------------------------------- firmware

    /// Stores a release; `(product, version)` must be new.
    async fn create_firmware(
        &self,
        actor: &Actor,
        spec: FirmwareSpec,
    ) -> Result<Firmware, StoreError>;

    async fn get_firmware(&self, id: &str) -> Result<Firmware, StoreError>;

    async fn list_firmware(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Firmware>, StoreError>;

    /// Refused while any rollout references the release.
    async fn delete_firmware(&self, actor: &Actor, id: &str) -> Result<(), StoreError>;

    // ---------------------------------------------------------- rollouts

    /// Creates a rollout with status `pending` (or its paused/cancelled
    /// state) and `counts.targeted` computed from the target groups.
    async fn create_rollout(&self, actor: &Actor, spec: RolloutSpec)
        -> Result<Rollout, StoreError>;

    async fn get_rollout(&self, id: &str) -> Result<Rollout, StoreError>;

    async fn list_rollouts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Rollout>, StoreError>;

    /// Replaces a rollout's definition. The firmware cannot change and a
    /// state change must be allowed by
    /// [`crate::domain::rollout::RolloutState::transition`].
    async fn update_rollout(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        spec: RolloutSpec,
    ) -> Result<Rollout, StoreError>;

    async fn delete_rollout(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<(), StoreError>;

    // ---------------------------------------------------------- metrics

    /// Number of stored objects per kind (`device_group`, `device`, ...),
    /// for `/metrics`.
    async fn object_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
}
