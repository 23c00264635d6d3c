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

mod certificate;
mod certificate_authority;
mod device;
pub mod device_api;
mod device_group;
mod enrollment;
mod error;
mod firmware;
mod health;
mod page;
mod policy;
mod rollout;

pub use certificate::{Certificate, CertificateCreate, CertificateUpdate};
pub use certificate_authority::{
    CertificateAuthority, CertificateAuthorityCreate, CertificateAuthorityUpdate,
};
pub use device::{Device, DeviceCreate, DeviceUpdate};
pub use device_group::{
    DeviceGroup, DeviceGroupCreate, DeviceGroupUpdate, GroupCompliance, GroupComplianceReport,
    NonCompliantDevice,
};
pub use enrollment::{Enrollment, EnrollmentCreate, EnrollmentUpdate};
pub use error::{ApiError, ErrorKind};
pub use firmware::{Firmware, FirmwareCreate};
pub use health::Health;
pub use page::Page;
pub use policy::{
    Policy, PolicyAttachment, PolicyAttachmentCreate, PolicyCreate, PolicyStatement, PolicyUpdate,
    PolicyVersion,
};
pub use rollout::{
    FailureThreshold, MaintenanceWindow, Rollout, RolloutCounts, RolloutCreate, RolloutPhase,
    RolloutRate, RolloutUpdate,
};

/// Path prefix of every versioned admin API route.
pub const API_PREFIX: &str = "/v1";
