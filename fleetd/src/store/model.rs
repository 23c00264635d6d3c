//! The records a [`Store`](super::Store) reads and writes.
//!
//! These are fleetd's internal representation; the API converts them to
//! the wire types in the `fleet-api` crate. Keeping the two apart lets the
//! storage shape (typed timestamps, for one) evolve without breaking
//! clients.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

/// Who made a change, as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The holder of the admin bearer token.
    pub fn admin() -> Self {
        Actor("admin".to_owned())
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of objects the store keeps; used in errors and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    DeviceGroup,
    Device,
    Policy,
    PolicyAttachment,
    Firmware,
    Rollout,
    CertificateAuthority,
    Certificate,
    Enrollment,
}

impl ObjectKind {
    /// Stable name stored in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::DeviceGroup => "device_group",
            ObjectKind::Device => "device",
            ObjectKind::Policy => "policy",
            ObjectKind::PolicyAttachment => "policy_attachment",
            ObjectKind::Firmware => "firmware",
            ObjectKind::Rollout => "rollout",
            ObjectKind::CertificateAuthority => "certificate_authority",
            ObjectKind::Certificate => "certificate",
            ObjectKind::Enrollment => "enrollment",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "device_group" => Some(ObjectKind::DeviceGroup),
            "device" => Some(ObjectKind::Device),
            "policy" => Some(ObjectKind::Policy),
            "policy_attachment" => Some(ObjectKind::PolicyAttachment),
            "firmware" => Some(ObjectKind::Firmware),
            "rollout" => Some(ObjectKind::Rollout),
            "certificate_authority" => Some(ObjectKind::CertificateAuthority),
            "certificate" => Some(ObjectKind::Certificate),
            "enrollment" => Some(ObjectKind::Enrollment),
            _ => None,
        }
    }
}

impl fmt::Display for ObjectKind {
    /// Human form used in messages: "device group".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::DeviceGroup => "device group",
            ObjectKind::Device => "device",
            ObjectKind::Policy => "policy",
            ObjectKind::PolicyAttachment => "policy attachment",
            ObjectKind::Firmware => "firmware",
            ObjectKind::Rollout => "rollout",
            ObjectKind::CertificateAuthority => "certificate authority",
            ObjectKind::Certificate => "certificate",
            ObjectKind::Enrollment => "enrollment",
        })
    }
}

/// A stored device group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub parent_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Names from the root to this group joined by `/`; computed on read,
    /// so renaming an ancestor never leaves a stale path behind.
    pub path: String,
    /// Dynamic membership expression, as written.
    pub query: Option<String>,
    /// Desired device configuration of this group alone.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Computed on read: configs from the root down, merged.
    pub effective_config: serde_json::Map<String, serde_json::Value>,
    /// Computed on read: static members plus query matches, each once.
    pub device_count: i64,
    /// Devices silent for longer turn stale; `None`: never.
    pub stale_after_secs: Option<u64>,
    /// Computed on read (O(1)): compliance of the group's devices,
    /// subgroups included.
    pub compliance: crate::domain::compliance::Summary,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// The caller-controlled fields of a device group, for create and for a
/// full-replacement update alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceGroupSpec {
    pub name: String,
    pub description: String,
    pub parent_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Validated by the API before it reaches the store.
    pub query: Option<String>,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub stale_after_secs: Option<u64>,
}

/// What a write did, as recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Create,
    Update,
    Delete,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(AuditAction::Create),
            "update" => Some(AuditAction::Update),
            "delete" => Some(AuditAction::Delete),
            _ => None,
        }
    }
}

/// One row of the audit log: written in the same transaction as the
/// change it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Monotonic sequence number; orders events store-wide.
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: AuditAction,
    pub object_kind: ObjectKind,
    pub object_id: String,
    /// `None` on create.
    pub before_version: Option<i64>,
    /// `None` on delete.
    pub after_version: Option<i64>,
}
