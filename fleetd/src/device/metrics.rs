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
    decisions: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    /// route template → (method, status, count); looked up without
    /// allocating, as every request counts itself here.
    requests: Mutex<BTreeMap<String, RouteCounts>>,
    /// handshake result word → count.
    handshakes: Mutex<BTreeMap<&'static str, u64>>,
    /// Open TLS connections.
    connections: AtomicI64,
}

/// (method, status, count) of one route.
type RouteCounts = Vec<(String, u16, u64)>;

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

impl DeviceMetrics {
    /// An authorisation decision on `action`; `reason` is `allow`,
    /// `explicit_deny`, `default_deny`, or for enrollment the refusal word.
    pub fn decision(&self, action: &'static str, allowed: bool, reason: &'static str) {
        let decision = if allowed { "allow" } else { "deny" };
        bump(&self.decisions, (action, decision, reason));
    }

    pub fn request(&self, method: &str, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let counts = match requests.get_mut(route) {
            Some(counts) => counts,
            None => requests.entry(route.to_owned()).or_default(),
        };
        match counts
            .iter_mut()
            .find(|(m, s, _)| *s == status && m == method)
        {
            Some((_, _, n)) => *n += 1,
            None => counts.push((method.to_owned(), status, 1)),
        }
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
    pub fn decisions(&self) -> BTreeMap<(&'static str, &'static str, &'static str), u64> {
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
                escape(action),
                escape(reason)
            );
        }
        out.push_str(
            "# HELP fleetd_device_requests_total Device API requests handled, by method, route and status.\n\
             # TYPE fleetd_device_requests_total counter\n",
        );
        let mut requests: Vec<(String, String, u16, u64)> = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(route, counts)| {
                counts
                    .iter()
                    .map(|(method, status, n)| (method.clone(), route.clone(), *status, *n))
            })
            .collect();
        requests.sort();
        for (method, route, status, n) in requests {
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
        m.request("POST", "/v1/device/checkin", 200);
        m.request("GET", "/v1/device/checkin", 405);
        m.request("POST", "/v1/device/checkin", 403);
        m.handshake("unknown_ca");
        m.connection_opened();
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "fleetd_device_authz_decisions_total{action=\"config:read\",decision=\"deny\",reason=\"explicit_deny\"} 2"
        ), "{out}");
        for line in [
            "fleetd_device_requests_total{method=\"GET\",route=\"/v1/device/checkin\",status=\"405\"} 1",
            "fleetd_device_requests_total{method=\"POST\",route=\"/v1/device/checkin\",status=\"200\"} 2",
            "fleetd_device_requests_total{method=\"POST\",route=\"/v1/device/checkin\",status=\"403\"} 1",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        assert!(out.contains("fleetd_device_tls_handshakes_total{result=\"unknown_ca\"} 1"));
        assert!(out.contains("fleetd_device_connections 1"));
    }
}
