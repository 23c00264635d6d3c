//! Desired vs reported device state.
//!
//! At every check-in a device reports the firmware version it runs and the
//! digest of the config it applied; fleetd compares them with what the
//! device should run and keeps one compliance state per device:
//!
//! | state | meaning |
//! |---|---|
//! | `in_sync` | firmware and config are what the fleet wants |
//! | `config_drift` | the applied config's digest is not the desired one's |
//! | `firmware_drift` | the device runs another version than its last completed rollout installed (takes precedence over config drift) |
//! | `stale` | not seen for longer than the `stale_after` of one of its groups |
//!
//! **Canonical config digest** (what a device computes over the config it
//! received): the config as JSON with every object's keys sorted by their
//! UTF-8 bytes, at every depth, no whitespace, strings escaped as JSON
//! requires (`serde_json`'s escaping: `"`, `\`, and control characters;
//! other characters as UTF-8), numbers written exactly as they appear in
//! the desired config; then SHA-256 of those bytes, as 64 lower-case hex
//! digits. `{"b": 1, "a": {"y": true, "x": null}}` → the bytes
//! `{"a":{"x":null,"y":true},"b":1}`.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A device's compliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    InSync,
    ConfigDrift,
    FirmwareDrift,
    Stale,
}

impl State {
    pub const ALL: [State; 4] = [
        State::InSync,
        State::ConfigDrift,
        State::FirmwareDrift,
        State::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::InSync => "in_sync",
            State::ConfigDrift => "config_drift",
            State::FirmwareDrift => "firmware_drift",
            State::Stale => "stale",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// The canonical JSON text of a config (see the module docs).
pub fn canonical_json(config: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_object(config, &mut out);
    out
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => write_object(m, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        // Scalars: serde_json's compact form (numbers keep their text).
        other => out.push_str(&other.to_string()),
    }
}

fn write_object(m: &Map<String, Value>, out: &mut String) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        write_value(&m[k], out);
    }
    out.push('}');
}

/// SHA-256 (lower-case hex) of the canonical JSON of `config`.
pub fn config_digest(config: &Map<String, Value>) -> String {
    hex::encode(Sha256::digest(canonical_json(config).as_bytes()))
}

/// What a check-in says and what the fleet wants, for [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    /// The version the device reports running (`None`: not reported).
    pub reported_firmware: Option<&'a str>,
    /// The digest of the config the device applied (`None`: not reported).
    pub applied_digest: Option<&'a str>,
    /// The version the device's last completed rollout installed, if any.
    pub desired_firmware: Option<&'a str>,
    /// The digest of the device's effective config now.
    pub desired_digest: &'a str,
}

/// The compliance of a device that just checked in, with the reason when
/// it is not in sync.
pub fn evaluate(o: &Observation<'_>) -> (State, Option<String>) {
    if let Some(want) = o.desired_firmware {
        match o.reported_firmware {
            Some(have) if versions_equal(have, want) => {}
            Some(have) => {
                return (
                    State::FirmwareDrift,
                    Some(format!(
                        "runs firmware {have}, its completed rollout installed {want}"
                    )),
                )
            }
            None => {
                return (
                    State::FirmwareDrift,
                    Some(format!("reports no firmware version; expected {want}")),
                )
            }
        }
    }
    match o.applied_digest {
        Some(d) if d.eq_ignore_ascii_case(o.desired_digest) => (State::InSync, None),
        Some(d) => (
            State::ConfigDrift,
            Some(format!(
                "applied config {} differs from the desired {}",
                short(d),
                short(o.desired_digest)
            )),
        ),
        None => (
            State::ConfigDrift,
            Some("reports no applied config digest".to_owned()),
        ),
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Versions compare as semantic versions when both parse (so `2.0.0` and
/// `2.0.0+build.7` are the same release), else as text.
fn versions_equal(a: &str, b: &str) -> bool {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => {
            x.major == y.major && x.minor == y.minor && x.patch == y.patch && x.pre == y.pre
        }
        _ => a == b,
    }
}

/// When a device seen at `last_seen` turns stale: after the shortest
/// `stale_after` (seconds) among its groups; never if none has one.
pub fn stale_at(
    last_seen: DateTime<Utc>,
    stale_after_secs: impl IntoIterator<Item = u64>,
) -> Option<DateTime<Utc>> {
    let secs = stale_after_secs.into_iter().min()?;
    Some(last_seen + Duration::seconds(secs.min(i64::MAX as u64 / 2) as i64))
}

/// The reason recorded when a device turns stale.
pub fn stale_reason(last_seen: Option<DateTime<Utc>>) -> String {
    match last_seen {
        Some(t) => format!(
            "not seen since {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "never seen".to_owned(),
    }
}

/// Compliance counts of a group (its own devices and its subgroups').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub in_sync: u64,
    pub config_drift: u64,
    pub firmware_drift: u64,
    pub stale: u64,
}

impl Summary {
    pub fn add(&mut self, state: State, n: u64) {
        *self.slot(state) += n;
    }

    fn slot(&mut self, state: State) -> &mut u64 {
        match state {
            State::InSync => &mut self.in_sync,
            State::ConfigDrift => &mut self.config_drift,
            State::FirmwareDrift => &mut self.firmware_drift,
            State::Stale => &mut self.stale,
        }
    }

    /// Devices that reported at least once.
    pub fn total(&self) -> u64 {
        self.in_sync + self.config_drift + self.firmware_drift + self.stale
    }

    /// `in_sync / total`; 1 for a group with no reporting device (nothing
    /// is out of sync).
    pub fn in_sync_ratio(&self) -> f64 {
        match self.total() {
            0 => 1.0,
            t => self.in_sync as f64 / t as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_depth() {
        let a = map(json!({"b": 1, "a": {"y": true, "x": null}, "c": [{"z": 1, "k": "v"}]}));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":true},"b":1,"c":[{"k":"v","z":1}]}"#
        );
        let b = map(json!({"c": [{"k": "v", "z": 1}], "a": {"x": null, "y": true}, "b": 1}));
        assert_eq!(
            config_digest(&a),
            config_digest(&b),
            "key order does not matter"
        );
        assert_eq!(
            config_digest(&Map::new()),
            // SHA-256 of "{}".
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let escaped = map(json!({"q\"uote": "line\nbreak", "ü": "é"}));
        assert_eq!(
            canonical_json(&escaped),
            "{\"q\\\"uote\":\"line\\nbreak\",\"ü\":\"é\"}"
        );
        let order = map(json!({"é": 1, "z": 2, "Z": 3}));
        assert_eq!(
            canonical_json(&order),
            r#"{"Z":3,"z":2,"é":1}"#,
            "byte order"
        );
    }

    #[test]
    fn evaluation() {
        let d = config_digest(&map(json!({"interval": 30})));
        let obs = |fw: Option<&'static str>, applied: Option<&str>, want: Option<&'static str>| {
            let applied = applied.map(str::to_owned);
            let desired = d.clone();
            move || {
                evaluate(&Observation {
                    reported_firmware: fw,
                    applied_digest: applied.as_deref(),
                    desired_firmware: want,
                    desired_digest: &desired,
                })
            }
        };
        assert_eq!(obs(Some("1.0.0"), Some(&d), None)(), (State::InSync, None));
        assert_eq!(
            obs(Some("2.0.0"), Some(&d.to_uppercase()), Some("2.0.0"))().0,
            State::InSync
        );
        assert_eq!(
            obs(Some("2.0.0+b7"), Some(&d), Some("2.0.0"))().0,
            State::InSync
        );
        let (s, r) = obs(Some("1.0.0"), Some(&d), Some("2.0.0"))();
        assert_eq!(s, State::FirmwareDrift);
        assert_eq!(
            r.unwrap(),
            "runs firmware 1.0.0, its completed rollout installed 2.0.0"
        );
        // Firmware drift wins over config drift.
        assert_eq!(
            obs(Some("1.0.0"), Some("00"), Some("2.0.0"))().0,
            State::FirmwareDrift
        );
        assert_eq!(obs(None, Some(&d), Some("2.0.0"))().0, State::FirmwareDrift);
        let (s, r) = obs(Some("1.0.0"), Some("0123456789abcdef"), None)();
        assert_eq!(s, State::ConfigDrift);
        assert!(r.unwrap().contains("0123456789ab differs"));
        assert_eq!(obs(Some("1.0.0"), None, None)().0, State::ConfigDrift);
    }

    #[test]
    fn staleness_uses_the_strictest_group() {
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(stale_at(t, []), None);
        assert_eq!(stale_at(t, [3600, 60]), Some(t + Duration::seconds(60)));
        assert_eq!(stale_reason(Some(t)), "not seen since 2026-01-01T00:00:00Z");
    }

    #[test]
    fn summaries() {
        let mut s = Summary::default();
        assert_eq!(s.in_sync_ratio(), 1.0);
        s.add(State::InSync, 3);
        s.add(State::Stale, 1);
        assert_eq!(s.total(), 4);
        assert_eq!(s.in_sync_ratio(), 0.75);
        for st in State::ALL {
            assert_eq!(State::parse(st.as_str()), Some(st));
        }
        assert_eq!(State::parse("unknown"), None);
    }
}
