//! What the device API needs: certificate lookup for mutual TLS,
//! self-enrollment, check-ins and the policies that apply to a device: the
//! [`DeviceApiStore`] part of the store.
//!
//! The device API is the high-traffic side of fleetd, so its reads are
//! shaped for it: one store round trip per request
//! ([`DeviceApiStore::device_request`]) returns the caller's credential and
//! device, plus the fleet-wide tables policy evaluation needs (groups,
//! policies, group attachments) only when they changed since the caller's
//! cached copy ([`FleetView`], keyed by a [`FleetView::stamp`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Device, Policy, StoreError};

/// A fleet CA the device listener trusts for client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCa {
    pub id: String,
    pub name: String,
    pub certificate_pem: String,
    pub fingerprint: String,
}

/// What the TLS layer verifies client certificates against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSnapshot {
    pub cas: Vec<TrustedCa>,
    /// `(ca_id, serial)` of certificates refused at the handshake: CRL
    /// entries not yet expired, plus certificates that are `inactive`.
    pub refused: Vec<(String, String)>,
}

/// Status of a presented certificate, as far as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialStatus {
    /// Recorded and active, or not recorded at all (a factory-signed
    /// certificate that has not enrolled yet).
    Active,
    /// Suspended through the admin API (`status = inactive`).
    Inactive,
    /// Revoked (or deleted, which lists it in the CRL); `reason` is the
    /// revocation reason.
    Revoked { reason: String },
}

/// The store's view of the certificate `(ca_id, serial)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub status: CredentialStatus,
    /// The `certificates` row, if the certificate is recorded.
    pub certificate_id: Option<String>,
    /// The device the certificate enrolled (or was issued to), if it
    /// still exists.
    pub device: Option<Device>,
    /// Policies attached to this certificate.
    pub policy_ids: Vec<String>,
}

/// A device group as policy evaluation and config merging need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNode {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    /// Dynamic membership expression, as stored.
    pub query: Option<String>,
    /// The group's own desired config.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Devices silent for longer turn stale.
    pub stale_after_secs: Option<u64>,
}

/// The fleet-wide tables behind every device request: all groups, all
/// policies and every policy-to-group attachment. Small (hundreds of rows
/// where devices number millions) and rarely changing, so callers cache
/// it and ask again with its [`stamp`](FleetView::stamp).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetView {
    /// Changes whenever a group, policy or attachment is created, updated
    /// or deleted.
    pub stamp: String,
    pub groups: Vec<GroupNode>,
    pub policies: Vec<Policy>,
    /// `(group_id, policy_id)`.
    pub group_policies: Vec<(String, String)>,
}

/// One device request's data: see [`DeviceApiStore::device_request`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRequestData {
    pub credential: Credential,
    /// `None` when the caller's cached view (by stamp) is still current.
    pub view: Option<FleetView>,
    /// Whether the credential's device has a rollout assignment in flight
    /// (`in_progress`, or a rollback not yet reported), so a check-in asks
    /// for it only then. An assignment made a moment after this read
    /// reaches the device at its next call.
    pub assignment_pending: bool,
}

/// A device asking to enroll with the certificate it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentClaim {
    pub ca_id: String,
    pub serial: String,
    pub fingerprint: String,
    /// Subject CN, or the fingerprint's first 16 digits when it has none.
    pub common_name: String,
    pub certificate_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Reported by the device, already validated.
    pub hardware: String,
    pub attributes: BTreeMap<String, String>,
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRefusal {
    /// Machine word: `revoked`, `inactive`, `no_enrollment`, `disabled`,
    /// `hardware_not_allowed`, `limit_reached`, `missing_attribute`,
    /// `invalid_name`, `name_taken`.
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of [`DeviceApiStore::enroll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentOutcome {
    Enrolled {
        device: Box<Device>,
        certificate_id: String,
        enrollment_id: Option<String>,
        /// `false` when the certificate had already enrolled (or was
        /// issued to the device through the admin API).
        created: bool,
    },
    Refused(EnrollmentRefusal),
}

/// What a device reports at check-in; `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckinReport {
    pub firmware_version: Option<String>,
    pub health: Option<String>,
    /// Digest of the config the device applied (canonical form, see
    /// [`crate::domain::compliance`]).
    pub config_digest: Option<String>,
    /// What the fleet wants of the device now; with it the store updates
    /// the device's compliance and the group counters.
    pub compliance: Option<ComplianceInput>,
}

/// The desired side of a device's compliance, as the check-in sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComplianceInput {
    /// Digest of the device's effective config.
    pub desired_digest: String,
    /// The device's groups (direct and their ancestors), sorted.
    pub groups: Vec<String>,
    /// `stale_after` of those groups that set one.
    pub stale_after_secs: Vec<u64>,
}

/// The CA of the device listener's TLS server certificates, key sealed
/// with the master key (context [`SERVER_CA_KEY_CONTEXT`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerCa {
    pub certificate_pem: String,
    pub sealed_key: Vec<u8>,
}

impl std::fmt::Debug for ServerCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCa").finish_non_exhaustive()
    }
}

/// The sealing context of [`ServerCa::sealed_key`].
pub const SERVER_CA_KEY_CONTEXT: &str = "fleetd device server CA";

/// Persistence for device-facing calls. Same conventions as
/// [`super::GroupStore`]; writes made on a device's behalf are audited
/// with the actor `device:<id>` (enrollment: `enrollment:<id>`), except
/// check-ins, which only refresh reported state and are not audited.
#[async_trait]
pub trait DeviceApiStore: Send + Sync + 'static {
    /// Every CA valid at `now`, and the certificates to refuse at the TLS
    /// handshake.
    async fn trust_snapshot(&self, now: DateTime<Utc>) -> Result<TrustSnapshot, StoreError>;

    /// A cheap value that changes whenever [`DeviceApiStore::trust_snapshot`]
    /// would return something else (except for the passage of time: a CA
    /// starting or ending its validity). Checked at every TLS handshake.
    async fn trust_stamp(&self) -> Result<String, StoreError>;

    /// A number that moves after every write that could change what
    /// [`DeviceApiStore::device_request`] returns, before the writer gets
    /// its answer; check-ins ([`DeviceApiStore::record_checkins`]) do not
    /// move it (they change only the reported fields of their own device).
    /// `None` when the store cannot tell (other processes may write to
    /// it): then device requests must not be cached.
    fn request_generation(&self) -> Option<u64>;

    /// The credential `(ca_id, serial)` and its device, plus the fleet
    /// view when `known_stamp` is not the current stamp.
    async fn device_request(
        &self,
        ca_id: &str,
        serial: &str,
        known_stamp: Option<&str>,
    ) -> Result<DeviceRequestData, StoreError>;

    /// Zero-touch enrollment, in one transaction: a recorded certificate
    /// that is bound to an existing device returns it; otherwise the CA's
    /// enabled enrollments are tried in creation order with
    /// [`crate::domain::enrollment::EnrollmentRules::decide`], and the
    /// first that accepts creates the device in its group, records the
    /// certificate, binds it to the device and increments its
    /// `enrolled_count` (never beyond `max_devices`).
    async fn enroll(
        &self,
        claim: EnrollmentClaim,
        now: DateTime<Utc>,
    ) -> Result<EnrollmentOutcome, StoreError>;

    /// Stores what the device reported and `last_seen = at`. Reported
    /// state is not admin-controlled: the device's `version` and
    /// `updated_at` do not change.
    async fn record_checkin(
        &self,
        device_id: &str,
        report: CheckinReport,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// [`DeviceApiStore::record_checkin`] for many devices in one
    /// transaction (group commit under load); `false` for a device that
    /// does not exist.
    async fn record_checkins(
        &self,
        batch: Vec<(String, CheckinReport, DateTime<Utc>)>,
    ) -> Result<Vec<bool>, StoreError>;

    /// The device listener's server CA, if one was created.
    async fn device_server_ca(&self) -> Result<Option<ServerCa>, StoreError>;

    /// Stores `ca` unless a server CA exists already; returns the one
    /// stored (so concurrent first starts agree on one CA).
    async fn init_device_server_ca(
        &self,
        ca: ServerCa,
        master_key_id: &str,
    ) -> Result<ServerCa, StoreError>;
}
