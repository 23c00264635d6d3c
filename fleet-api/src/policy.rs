//! Access policies (deny by default) and their attachments to groups and
//! certificates.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyStatement {
    /// `allow` or `deny`; a matching `deny` always wins.
    #[schema(example = "allow")]
    #[schema(pattern = "^(allow|deny)$")]
    pub effect: String,
    /// Device API actions such as `device:checkin`, `config:read`,
    /// `firmware:*` or `*`.
    #[schema(example = json!(["device:checkin", "config:read"]))]
    pub actions: Vec<String>,
    /// Resource patterns, e.g. `fleet:device/${device.id}` or
    /// `fleet:group/${device.group}/*`.
    #[schema(example = json!(["fleet:device/${device.id}"]))]
    pub resources: Vec<String>,
}

/// A policy as fleetd stores and returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    pub id: String,
    /// Unique across the fleet.
    pub name: String,
    /// Free text; empty when not set.
    pub description: String,
    pub statements: Vec<PolicyStatement>,
    /// Computed: 1 on creation, +1 each time `statements` change (renames
    /// and description edits do not count). The last 10 versions are kept;
    /// see `GET /v1/policies/{id}/versions`.
    #[schema(example = 3)]
    pub policy_version: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Optimistic-concurrency version: +1 on every update.
    pub version: i64,
}

/// Body of `POST /v1/policies`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyCreate {
    /// Same character rules as group names. Unique.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// At most 1024 characters.
    #[serde(default)]
    pub description: String,
    /// 1–100 statements.
    pub statements: Vec<PolicyStatement>,
}

/// Body of `PUT /v1/policies/{id}`: a full replacement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub statements: Vec<PolicyStatement>,
    /// The version this update is based on; a stale one is refused with 409.
    pub version: i64,
}

/// One kept version of a policy's statements
/// (`GET /v1/policies/{id}/versions`, newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersion {
    pub policy_id: String,
    pub policy_version: i64,
    pub statements: Vec<PolicyStatement>,
    /// When this version was written (RFC 3339, UTC).
    pub created_at: String,
}

/// A policy attached to exactly one group (inherited by its subgroups) or
/// one certificate. Immutable: create and delete only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyAttachment {
    pub id: String,
    pub policy_id: String,
    /// Set when attached to a group; then `certificate_id` is `null`.
    pub group_id: Option<String>,
    /// Set when attached to a certificate; then `group_id` is `null`.
    pub certificate_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Always 1: attachments are never updated.
    pub version: i64,
}

/// Body of `POST /v1/policy-attachments`: `policy_id` and exactly one of
/// `group_id`, `certificate_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyAttachmentCreate {
    pub policy_id: String,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub certificate_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_rejects_unknown_fields() {
        let err = serde_json::from_str::<PolicyStatement>(
            r#"{"effect":"allow","actions":[],"resources":[],"condition":{}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `condition`"),
            "{err}"
        );
    }

    #[test]
    fn attachment_create_defaults_targets_to_none() {
        let a: PolicyAttachmentCreate =
            serde_json::from_str(r#"{"policy_id":"p","group_id":"g"}"#).unwrap();
        assert_eq!(a.group_id.as_deref(), Some("g"));
        assert_eq!(a.certificate_id, None);
    }
}
