//! The ledger: every externally visible thing each virtual device did or
//! was told, in order, so tests can assert exact numbers against fleetd
//! ("device 17 got rollout R attempt 1 at t, reported failed").

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use fleet_api::device_api::UpdateOutcome;
use serde::Serialize;

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Index of the virtual device (0-based).
    pub device: usize,
    /// fleetd's id of the device, once enrolled.
    pub device_id: Option<String>,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Enrollment accepted (`created` false: the certificate was already
    /// enrolled).
    Enrolled { name: String, created: bool },
    /// Enrollment refused with fleetd's reason word.
    EnrollRefused { status: u16, reason: String },
    /// A check-in brought an assignment not seen before.
    Assigned {
        rollout_id: String,
        firmware_id: String,
        version: String,
        attempt: u32,
    },
    /// The device reported a result and fleetd accepted it.
    Reported {
        rollout_id: String,
        firmware_id: String,
        version: String,
        attempt: u32,
        outcome: UpdateOutcome,
    },
    /// fleetd refused a result report.
    ReportRejected {
        rollout_id: String,
        status: u16,
        error: String,
    },
    /// Policy withheld part of a check-in, or refused a call (403).
    Denied { action: String },
    /// The certificate was refused (TLS alert or 401); the device stops.
    Refused { reason: String },
}

/// The ledger of one simulation.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Mutex<Vec<Entry>>,
}

/// Per-rollout tallies from the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RolloutTally {
    /// Distinct devices that got an assignment of the rollout.
    pub assigned_devices: u64,
    /// Assignments (device, firmware, attempt) handed out.
    pub assignments: u64,
    /// Distinct devices whose latest accepted report is each outcome.
    pub succeeded: u64,
    pub failed: u64,
    pub rolled_back: u64,
}

impl Ledger {
    pub fn record(&self, device: usize, device_id: Option<&str>, event: Event) {
        let entry = Entry {
            device,
            device_id: device_id.map(str::to_owned),
            at: Utc::now(),
            event,
        };
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    /// A copy of every entry, in recording order.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tallies per rollout id. A device's *latest* accepted report counts
    /// (a rollback assignment reported after a success, for instance).
    pub fn rollouts(&self) -> BTreeMap<String, RolloutTally> {
        let entries = self.entries();
        let mut tallies: BTreeMap<String, RolloutTally> = BTreeMap::new();
        let mut assigned: HashMap<(String, usize), ()> = HashMap::new();
        let mut latest: HashMap<(String, usize), UpdateOutcome> = HashMap::new();
        for e in &entries {
            match &e.event {
                Event::Assigned { rollout_id, .. } => {
                    let t = tallies.entry(rollout_id.clone()).or_default();
                    t.assignments += 1;
                    if assigned
                        .insert((rollout_id.clone(), e.device), ())
                        .is_none()
                    {
                        t.assigned_devices += 1;
                    }
                }
                Event::Reported {
                    rollout_id,
                    outcome,
                    ..
                } => {
                    latest.insert((rollout_id.clone(), e.device), *outcome);
                }
                _ => {}
            }
        }
        for ((rollout_id, _), outcome) in latest {
            let t = tallies.entry(rollout_id).or_default();
            match outcome {
                UpdateOutcome::Succeeded => t.succeeded += 1,
                UpdateOutcome::Failed => t.failed += 1,
                UpdateOutcome::RolledBack => t.rolled_back += 1,
            }
        }
        tallies
    }

    /// Devices enrolled (distinct device indexes with an `Enrolled`).
    pub fn enrolled(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        for e in self.entries() {
            if matches!(e.event, Event::Enrolled { .. }) {
                seen.insert(e.device);
            }
        }
        seen.len()
    }

    /// Entries of one device, in order.
    pub fn device(&self, index: usize) -> Vec<Entry> {
        self.entries()
            .into_iter()
            .filter(|e| e.device == index)
            .collect()
    }

    /// JSON lines, one entry per line.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for e in self.entries() {
            out.push_str(&serde_json::to_string(&e).unwrap_or_default());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(r: &str) -> Event {
        Event::Assigned {
            rollout_id: r.into(),
            firmware_id: "f".into(),
            version: "2.0.0".into(),
            attempt: 1,
        }
    }

    fn reported(r: &str, outcome: UpdateOutcome) -> Event {
        Event::Reported {
            rollout_id: r.into(),
            firmware_id: "f".into(),
            version: "2.0.0".into(),
            attempt: 1,
            outcome,
        }
    }

    #[test]
    fn tallies_latest_outcome_per_device() {
        let l = Ledger::default();
        l.record(0, Some("a"), assigned("r"));
        l.record(0, Some("a"), reported("r", UpdateOutcome::Succeeded));
        l.record(1, Some("b"), assigned("r"));
        l.record(1, Some("b"), reported("r", UpdateOutcome::Failed));
        l.record(0, Some("a"), assigned("r"));
        l.record(0, Some("a"), reported("r", UpdateOutcome::RolledBack));
        let t = &l.rollouts()["r"];
        assert_eq!(t.assigned_devices, 2);
        assert_eq!(t.assignments, 3);
        assert_eq!((t.succeeded, t.failed, t.rolled_back), (0, 1, 1));
        let line = l.to_json_lines();
        assert!(line.contains("\"event\":\"assigned\""), "{line}");
        assert_eq!(l.device(1).len(), 2);
    }
}
