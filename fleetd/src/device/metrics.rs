//! Device API counters, rendered into the admin API's `/metrics`.
//!
//! Labels have bounded values only (route templates, catalogue actions,
//! fixed reason words), never device ids.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Counters of one fleetd's device listener.
#[derive(Debug, Default)]
pub struct DeviceMetrics {
    /// (action, decision, reason) → count.
    decisions: Mutex<BTreeMap<(String, &'static str, String), u64>>,
    /// (method, route template, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// handshake result word → count.
    handshakes: Mutex<BTreeMap<&'static str, u64>>,
    /// Open TLS connections.
    connections: AtomicI64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

impl DeviceMetrics {
    /// An authorisation decision on `action`; `reason` is `allow`,
    /// `explicit_deny`, `default_deny`, or for enrollment the refusal word.
    pub fn decision(&self, action: &str, allowed: bool, reason: &str) {
        let decision = if allowed { "allow" } else { "deny" };
        bump(
            &self.decisions,
            (action.to_owned(), decision, reason.to_owned()),
        );
    }

    pub fn request(&self, method: &str, route: &str, status: u16) {
        bump(
            &self.requests,
            (method.to_owned(), route.to_owned(), status),
        );
    }

    /// `ok`, or why the handshake failed: `unknown_ca`, `expired`,
    /// `not_yet_valid`, `revoked`, `bad_certificate`, `no_certificate`,
    /// `failed`, `timeout`.
    pub fn handshake(&self, result: &'static str) {
        bump(&self.handshakes, result);
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Decisions so far: (action, `allow`|`deny`, reason) → count.
    pub fn decisions(&self) -> BTreeMap<(String, &'static str, String), u64> {
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Appends the Prometheus text of these counters to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP fleetd_device_authz_decisions_total Device API authorisation decisions, by action, decision and reason.\n\
             # TYPE fleetd_device_authz_decisions_total counter\n",
        );
        for ((action, decision, reason), n) in self.decisions() {
            let _ = writeln!(
                out,
                "fleetd_device_authz_decisions_total{{action=\"{}\",decision=\"{decision}\",reason=\"{}\"}} {n}",
                escape(&action),
                escape(&reason)
            );
        }
        out.push_str(
            "# HELP fleetd_device_requests_total Device API requests handled, by method, route and status.\n\
             # TYPE fleetd_device_requests_total counter\n",
        );
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for ((method, route, status), n) in requests {
            let _ = writeln!(
                out,
                "fleetd_device_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(&method),
                escape(&route)
            );
        }
        out.push_str(
            "# HELP fleetd_device_tls_handshakes_total Device listener TLS handshakes, by result.\n\
             # TYPE fleetd_device_tls_handshakes_total counter\n",
        );
        let handshakes = self
            .handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (result, n) in handshakes {
            let _ = writeln!(
                out,
                "fleetd_device_tls_handshakes_total{{result=\"{result}\"}} {n}"
            );
        }
        let _ = write!(
            out,
            "# HELP fleetd_device_connections Open device API connections.\n\
             # TYPE fleetd_device_connections gauge\n\
             fleetd_device_connections {}\n",
            self.connections.load(Ordering::Relaxed)
        );
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = DeviceMetrics::default();
        m.decision("config:read", false, "explicit_deny");
        m.decision("config:read", false, "explicit_deny");
        m.decision("device:checkin", true, "allow");
        m.request("POST", "/v1/device/checkin", 200);
        m.handshake("unknown_ca");
        m.connection_opened();
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "fleetd_device_authz_decisions_total{action=\"config:read\",decision=\"deny\",reason=\"explicit_deny\"} 2"
        ), "{out}");
        assert!(out.contains("fleetd_device_tls_handshakes_total{result=\"unknown_ca\"} 1"));
        assert!(out.contains("fleetd_device_connections 1"));
    }
}
