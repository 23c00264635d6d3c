//! Certificate authorities, device certificates and enrollments: the
//! [`PkiStore`] part of the store.

use async_trait::async_trait;

/// Persistence for CAs (with their private keys, which never leave
/// fleetd), certificates and enrollment rules. Same conventions as
/// [`super::GroupStore`].
#[async_trait]
pub trait PkiStore: Send + Sync + 'static {}
