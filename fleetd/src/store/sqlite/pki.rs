//! [`PkiStore`] on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::PkiStore;

#[async_trait]
impl PkiStore for SqliteStore {}
