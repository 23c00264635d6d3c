//! [`FleetStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::FleetStore;

#[async_trait]
impl FleetStore for SqliteStore {}
