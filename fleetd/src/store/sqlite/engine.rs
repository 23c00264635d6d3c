//! [`EngineStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::EngineStore;

#[async_trait]
impl EngineStore for SqliteStore {}
