//! The admin API's JSON shapes, shared by fleetd (server) and
//! terraform-provider-fleet (client) so the two can never disagree.
//!
//! Conventions every type here follows:
//! - field names are `snake_case`, exactly as they appear on the wire;
//! - timestamps are RFC 3339 strings in UTC (`2025-01-31T12:00:00.000Z`),
//!   kept as strings so the client never has to agree with the server on a
//!   date library;
//! - request bodies (`*Create`, `*Update`) reject unknown fields, so a typo
//!   in a client is a 400 naming the field instead of a silently ignored
//!   argument;
//! - every stored object carries a `version` used for optimistic
//!   concurrency: updates and deletes send the version they expect, and a
//!   stale one is refused with a 409 ([`ErrorKind::Conflict`]).

mod device_group;
mod error;
mod health;
mod page;

pub use device_group::{DeviceGroup, DeviceGroupCreate, DeviceGroupUpdate};
pub use error::{ApiError, ErrorKind};
pub use health::Health;
pub use page::Page;

/// Path prefix of every versioned admin API route.
pub const API_PREFIX: &str = "/v1";
