//! What the device API needs: certificate lookup for mutual TLS,
//! self-enrollment, check-ins and the policies that apply to a device: the
//! [`DeviceApiStore`] part of the store.

use async_trait::async_trait;

/// Persistence for device-facing calls. Same conventions as
/// [`super::GroupStore`].
#[async_trait]
pub trait DeviceApiStore: Send + Sync + 'static {}
