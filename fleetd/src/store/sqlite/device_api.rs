//! [`DeviceApiStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::DeviceApiStore;

#[async_trait]
impl DeviceApiStore for SqliteStore {}
