//! Device requests' credential reads, kept in memory between writes.
//!
//! Every device request needs its certificate's status, its device and
//! whether an assignment is in flight ([`DeviceApiStore::device_request`]).
//! Reading them from the store is most of what a check-in costs, yet they
//! change only when something is written: a revocation, a device update,
//! a rollout assigning the device. So answers are kept here, valid for
//! one store write generation ([`DeviceApiStore::request_generation`]),
//! which the store moves after every such write and *before* the writer
//! gets its answer. A request that finds the generation moved drops every
//! entry and reads the store again; a revocation answered by the admin
//! API therefore refuses the very next request, as without the cache.
//!
//! Check-ins do not move the generation (a busy fleet would otherwise
//! never hit). What they change of the cached device, its reported
//! firmware, health and last contact, their writer patches in
//! ([`RequestCache::reported`]) once the batch is committed. A read that
//! raced with such a batch is not kept: see [`RequestCache::put`].
//!
//! A store that cannot tell its generation (PostgreSQL, whose other
//! writers this process does not see) is never cached.
//!
//! [`DeviceApiStore::device_request`]: crate::store::DeviceApiStore::device_request
//! [`DeviceApiStore::request_generation`]: crate::store::DeviceApiStore::request_generation

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::store::device_api::{Credential, CredentialStatus, DeviceRequestData};
use crate::store::Device;

/// Most credentials kept (about 1 KiB each); further ones are read from
/// the store every time until the next write generation.
pub const CAPACITY: usize = 100_000;
/// Check-in batches remembered for [`RequestCache::put`]'s race check.
const RECENT_BATCHES: usize = 64;

/// What a [`RequestCache::begin`] saw; passed back to
/// [`RequestCache::put`] with the store's answer.
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket {
    generation: u64,
    batch: u64,
}

/// The cache (one per device listener).
#[derive(Debug)]
pub struct RequestCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// The store write generation the entries are valid for.
    generation: u64,
    /// `(ca_id, serial)` → the credential's answer, device left out.
    credentials: HashMap<(String, String), Entry>,
    /// Devices of the cached credentials, by id.
    devices: HashMap<String, Device>,
    /// Committed check-in batches so far.
    batches: u64,
    /// Device ids of the last [`RECENT_BATCHES`] batches, newest last,
    /// with each batch's number.
    recent: VecDeque<(u64, HashSet<String>)>,
}

/// What a committed check-in changed of its device (`None`: unchanged).
#[derive(Debug, Clone)]
pub struct Reported {
    pub device_id: String,
    pub firmware_version: Option<String>,
    pub health: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Entry {
    certificate_id: Option<String>,
    device_id: String,
    policy_ids: Vec<String>,
    assignment_pending: bool,
}

impl Default for RequestCache {
    fn default() -> Self {
        RequestCache::new(CAPACITY)
    }
}

impl RequestCache {
    pub fn new(capacity: usize) -> RequestCache {
        RequestCache {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached answer for `(ca_id, serial)` at the store's current
    /// `generation`, or, on a miss, the ticket to [`RequestCache::put`]
    /// the store's answer with. Read the generation just before calling.
    pub fn begin(
        &self,
        generation: u64,
        ca_id: &str,
        serial: &str,
    ) -> Result<DeviceRequestData, ReadTicket> {
        let mut inner = self.lock();
        if inner.generation != generation {
            inner.generation = generation;
            inner.credentials.clear();
            inner.devices.clear();
        }
        let key = (ca_id.to_owned(), serial.to_owned());
        let hit = inner.credentials.get(&key).and_then(|e| {
            let device = inner.devices.get(&e.device_id)?;
            Some(DeviceRequestData {
                credential: Credential {
                    status: CredentialStatus::Active,
                    certificate_id: e.certificate_id.clone(),
                    device: Some(device.clone()),
                    policy_ids: e.policy_ids.clone(),
                },
                view: None,
                assignment_pending: e.assignment_pending,
            })
        });
        hit.ok_or(ReadTicket {
            generation,
            batch: inner.batches,
        })
    }

    /// Keeps the store's answer `data` for `(ca_id, serial)`, read after
    /// [`RequestCache::begin`] gave `ticket`. Only an active credential
    /// with a device is kept, and only if nothing it depends on was
    /// written since: not when the generation moved, and not when a
    /// check-in of its device was committed meanwhile (the answer may
    /// predate it, and no later patch would mend it).
    pub fn put(&self, ticket: ReadTicket, ca_id: &str, serial: &str, data: &DeviceRequestData) {
        let Credential {
            status: CredentialStatus::Active,
            certificate_id,
            device: Some(device),
            policy_ids,
        } = &data.credential
        else {
            return;
        };
        let mut inner = self.lock();
        if inner.generation != ticket.generation || inner.credentials.len() >= self.capacity {
            return;
        }
        if inner.batches != ticket.batch {
            let oldest = inner.recent.front().map_or(inner.batches + 1, |(n, _)| *n);
            let raced = oldest > ticket.batch + 1
                || inner
                    .recent
                    .iter()
                    .any(|(n, ids)| *n > ticket.batch && ids.contains(&device.id));
            if raced {
                return;
            }
        }
        inner.credentials.insert(
            (ca_id.to_owned(), serial.to_owned()),
            Entry {
                certificate_id: certificate_id.clone(),
                device_id: device.id.clone(),
                policy_ids: policy_ids.clone(),
                assignment_pending: data.assignment_pending,
            },
        );
        inner.devices.insert(device.id.clone(), device.clone());
    }

    /// A committed batch of check-ins: the reported fields of each cached
    /// device become what the store now holds.
    pub fn reported<'a>(&self, batch: impl IntoIterator<Item = &'a Reported>) {
        let mut inner = self.lock();
        let mut ids = HashSet::new();
        for r in batch {
            if let Some(device) = inner.devices.get_mut(&r.device_id) {
                if let Some(v) = &r.firmware_version {
                    device.firmware_version = Some(v.clone());
                }
                if let Some(h) = &r.health {
                    device.health = Some(h.clone());
                }
                device.last_seen = Some(r.at);
            }
            ids.insert(r.device_id.clone());
        }
        inner.batches += 1;
        let n = inner.batches;
        inner.recent.push_back((n, ids));
        if inner.recent.len() > RECENT_BATCHES {
            inner.recent.pop_front();
        }
    }

    /// Cached credentials (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().credentials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn device(id: &str, firmware: &str) -> Device {
        Device {
            id: id.to_owned(),
            name: format!("name-{id}"),
            hardware: "m1".to_owned(),
            attributes: BTreeMap::new(),
            group_ids: vec!["g".to_owned()],
            firmware_version: Some(firmware.to_owned()),
            last_seen: None,
            health: None,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            version: 1,
        }
    }

    fn data(status: CredentialStatus, device: Option<Device>, pending: bool) -> DeviceRequestData {
        DeviceRequestData {
            credential: Credential {
                status,
                certificate_id: Some("cert".to_owned()),
                device,
                policy_ids: vec!["p".to_owned()],
            },
            view: None,
            assignment_pending: pending,
        }
    }

    fn reported(id: &str, firmware: Option<&str>) -> Reported {
        Reported {
            device_id: id.to_owned(),
            firmware_version: firmware.map(str::to_owned),
            health: Some("ok".to_owned()),
            at: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(7),
        }
    }

    #[test]
    fn a_kept_answer_is_returned_until_the_generation_moves() {
        let cache = RequestCache::new(10);
        let ticket = cache.begin(3, "ca", "s1").unwrap_err();
        let stored = data(CredentialStatus::Active, Some(device("d1", "1.0")), true);
        cache.put(ticket, "ca", "s1", &stored);
        assert_eq!(cache.begin(3, "ca", "s1").unwrap(), stored);
        // Another serial of the same CA is not this one.
        assert!(cache.begin(3, "ca", "s2").is_err());
        // Any write: everything is read again.
        assert!(cache.begin(4, "ca", "s1").is_err());
        assert!(cache.is_empty());
    }

    #[test]
    fn only_active_credentials_with_a_device_are_kept() {
        let cache = RequestCache::new(10);
        for (serial, d) in [
            (
                "a",
                data(CredentialStatus::Inactive, Some(device("d1", "1")), false),
            ),
            (
                "b",
                data(
                    CredentialStatus::Revoked {
                        reason: "key_compromise".to_owned(),
                    },
                    Some(device("d2", "1")),
                    false,
                ),
            ),
            ("c", data(CredentialStatus::Active, None, false)),
        ] {
            let ticket = cache.begin(1, "ca", serial).unwrap_err();
            cache.put(ticket, "ca", serial, &d);
            assert!(cache.begin(1, "ca", serial).is_err(), "{serial} was kept");
        }
        assert!(cache.is_empty());
    }

    #[test]
    fn an_answer_read_before_a_write_is_not_kept() {
        let cache = RequestCache::new(10);
        let ticket = cache.begin(1, "ca", "s1").unwrap_err();
        // A write moves the generation while the store read runs.
        assert!(cache.begin(2, "ca", "other").is_err());
        cache.put(
            ticket,
            "ca",
            "s1",
            &data(CredentialStatus::Active, Some(device("d1", "1")), false),
        );
        assert!(cache.begin(2, "ca", "s1").is_err());
    }

    #[test]
    fn check_ins_patch_cached_devices_and_refuse_answers_they_raced() {
        let cache = RequestCache::new(10);
        let t1 = cache.begin(1, "ca", "s1").unwrap_err();
        cache.put(
            t1,
            "ca",
            "s1",
            &data(CredentialStatus::Active, Some(device("d1", "1.0")), false),
        );

        // d1 is cached: its reported fields follow the committed check-in;
        // a check-in that omits the firmware keeps the stored one.
        cache.reported(&[reported("d1", Some("2.0"))]);
        cache.reported(&[reported("d1", None)]);
        let hit = cache.begin(1, "ca", "s1").unwrap();
        let d = hit.credential.device.unwrap();
        assert_eq!(d.firmware_version.as_deref(), Some("2.0"));
        assert_eq!(d.health.as_deref(), Some("ok"));
        assert_eq!(
            d.last_seen,
            Some(DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(7))
        );

        // d2's answer was read before its check-in committed: not kept.
        let t2 = cache.begin(1, "ca", "s2").unwrap_err();
        cache.reported(&[reported("d2", Some("2.0"))]);
        cache.put(
            t2,
            "ca",
            "s2",
            &data(CredentialStatus::Active, Some(device("d2", "1.0")), false),
        );
        assert!(cache.begin(1, "ca", "s2").is_err());

        // d3's read overlapped only other devices' check-ins: kept.
        let t3 = cache.begin(1, "ca", "s3").unwrap_err();
        cache.reported(&[reported("d9", Some("2.0"))]);
        let stored = data(CredentialStatus::Active, Some(device("d3", "1.0")), true);
        cache.put(t3, "ca", "s3", &stored);
        assert_eq!(cache.begin(1, "ca", "s3").unwrap(), stored);

        // More batches than are remembered: not kept, whoever was in them.
        let t4 = cache.begin(1, "ca", "s4").unwrap_err();
        for _ in 0..=RECENT_BATCHES {
            cache.reported(&[reported("d9", None)]);
        }
        cache.put(
            t4,
            "ca",
            "s4",
            &data(CredentialStatus::Active, Some(device("d4", "1.0")), false),
        );
        assert!(cache.begin(1, "ca", "s4").is_err());
    }

    #[test]
    fn nothing_is_added_beyond_the_capacity() {
        let cache = RequestCache::new(2);
        for (i, serial) in ["s1", "s2", "s3"].into_iter().enumerate() {
            let t = cache.begin(1, "ca", serial).unwrap_err();
            let d = device(&format!("d{i}"), "1.0");
            cache.put(
                t,
                "ca",
                serial,
                &data(CredentialStatus::Active, Some(d), false),
            );
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.begin(1, "ca", "s1").is_ok());
        assert!(cache.begin(1, "ca", "s3").is_err());
    }
}
