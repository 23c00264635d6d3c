//! What can go wrong in a store, in terms the API can map to status codes.

use super::ObjectKind;
use crate::domain::FieldError;

/// A store failure.
///
/// The variants are about the *request* (not found, stale, conflicting,
/// pointing at something invalid) except [`StoreError::Backend`], which is
/// about the database itself. The API maps the first group to 4xx with a
/// message naming the field, and `Backend` to a 500 whose details only go
/// to the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object of this kind has this id.
    #[error("{kind} {id} not found")]
    NotFound { kind: ObjectKind, id: String },

    /// Optimistic concurrency: the caller's view of the object is stale.
    #[error("{kind} {id} is at version {current}, but the request expected version {expected}")]
    VersionConflict {
        kind: ObjectKind,
        id: String,
        expected: i64,
        current: i64,
    },

    /// The request is valid on its own but clashes with stored state: a
    /// name already taken among siblings, or a group that still has
    /// children. `field` names the request field at fault, if one is.
    #[error("{message}")]
    Conflict {
        field: Option<&'static str>,
        message: String,
    },

    /// The request breaks a domain rule that can only be checked against
    /// stored state: a parent that does not exist, a move that would
    /// create a cycle or nest groups too deeply. The rule (and its wording)
    /// comes from [`crate::domain`]; the store only supplies the data,
    /// inside the write transaction.
    #[error(transparent)]
    Invalid(#[from] FieldError),

    /// The database failed (I/O, corruption, a bug in a query).
    #[error("store backend error: {0:#}")]
    Backend(#[source] anyhow::Error),
}

impl StoreError {
    pub(crate) fn backend(err: impl Into<anyhow::Error>) -> Self {
        StoreError::Backend(err.into())
    }
}
