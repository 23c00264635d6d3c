//! Devices, policies and their attachments, firmware releases and rollout
//! definitions: the [`FleetStore`] part of the store.

use async_trait::async_trait;

/// Persistence for devices, policies, attachments, firmware and rollouts.
/// Same conventions as [`super::GroupStore`].
#[async_trait]
pub trait FleetStore: Send + Sync + 'static {}
