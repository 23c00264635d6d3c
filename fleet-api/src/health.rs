//! Liveness probe body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when fleetd answers at all.
    #[schema(example = "ok")]
    pub status: String,
}
