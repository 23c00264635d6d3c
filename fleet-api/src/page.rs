//! Cursor pagination for list endpoints.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One page of a list. Pass `next_page_token` back as `?page_token=` to get
/// the next page; it is `null` on the last page.
///
/// Tokens are opaque cursors, not offsets, so objects created or deleted
/// while a client pages through a list never make it skip or repeat one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}
