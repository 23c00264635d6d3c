//! The device API over real mutual TLS: a real fleetd in-process, real
//! certificates (a factory CA imported into fleetd, device certificates
//! signed locally or by fleetd), a real TLS client.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::{send, TestServer};
use fleetd::config::Config;
use fleetd::domain::pki::{self, CertificateAuthority, KeyAlgorithm, NewCa, Serial, Subject};
use reqwest::StatusCode;
use serde_json::{json, Value};

// ------------------------------------------------------------------ harness

struct Fleet {
    server: TestServer,
    device_addr: String,
    server_ca_pem: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.listen = "127.0.0.1:0".to_owned();
    let server = TestServer::start_with(config).await;
    let device_addr = std::fs::read_to_string(dir.path().join("device.addr"))
        .unwrap()
        .trim()
        .to_owned();
    let server_ca_pem = std::fs::read_to_string(dir.path().join("device-server-ca.pem")).unwrap();
    Fleet {
        server,
        device_addr,
        server_ca_pem,
        _dir: dir,
    }
}

/// A factory CA: generated here (valid from `from`), imported into fleetd.
struct Factory {
    ca: CertificateAuthority,
    id: String,
}

impl Factory {
    async fn new(fleet: &Fleet, name: &str) -> Factory {
        Self::valid_from(fleet, name, Utc::now()).await
    }

    async fn valid_from(fleet: &Fleet, name: &str, from: DateTime<Utc>) -> Factory {
        let material = pki::generate_ca(
            &NewCa {
                common_name: &format!("{name} factory CA"),
                organization: Some("Acme"),
                validity_days: 3650,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            Serial::random(&mut rand::rng()),
            from,
        )
        .unwrap();
        let (status, body) = send(fleet.server.post(
            "/v1/certificate-authorities",
            &json!({
                "name": name,
                "certificate_pem": material.certificate_pem,
                "private_key_pem": material.private_key_pem,
            }),
        ))
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Factory {
            ca: CertificateAuthority::from_pem(
                &material.certificate_pem,
                &material.private_key_pem,
            )
            .unwrap(),
            id: body["id"].as_str().unwrap().to_owned(),
        }
    }

    /// A device certificate + key, as if issued at `at` for `days`.
    fn issue_at(&self, cn: &str, at: DateTime<Utc>, days: i64) -> (String, String) {
        let issued = pki::issue_certificate(
            &self.ca,
            &pki::NewCertificate {
                subject: Subject::CommonName(cn),
                validity_days: days,
                key: pki::SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            Serial::random(&mut rand::rng()),
            at,
        )
        .unwrap();
        (issued.certificate_pem, issued.private_key_pem.unwrap())
    }

    fn issue(&self, cn: &str) -> (String, String) {
        self.issue_at(cn, Utc::now(), 30)
    }
}

/// One device: its own TLS client (connection pool of one host).
struct Device {
    http: reqwest::Client,
    base: String,
}

impl Device {
    fn new(fleet: &Fleet, (cert, key): &(String, String)) -> Device {
        let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
        Self::with(fleet, Some(identity))
    }

    fn anonymous(fleet: &Fleet) -> Device {
        Self::with(fleet, None)
    }

    fn with(fleet: &Fleet, identity: Option<reqwest::Identity>) -> Device {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(fleet.server_ca_pem.as_bytes()).unwrap(),
            )
            .timeout(Duration::from_secs(10));
        if let Some(identity) = identity {
            b = b.identity(identity);
        }
        let port = fleet.device_addr.rsplit_once(':').unwrap().1;
        Device {
            http: b.build().unwrap(),
            base: format!("https://localhost:{port}/v1/device"),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value), reqwest::Error> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        Ok(common::split(resp).await)
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Value), reqwest::Error> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok(common::split(resp).await)
    }

    async fn enroll(&self, hardware: &str) -> (StatusCode, Value) {
        self.post(
            "/enroll",
            json!({"hardware": hardware, "attributes": {"site": "plant-7"}}),
        )
        .await
        .expect("enroll reaches fleetd")
    }

    async fn checkin(&self, body: Value) -> (StatusCode, Value) {
        self.post("/checkin", body)
            .await
            .expect("checkin reaches fleetd")
    }
}

async fn group(fleet: &Fleet, body: Value) -> String {
    fleet.server.create_group(body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn enrollment(fleet: &Fleet, body: Value) -> Value {
    let (status, json) = send(fleet.server.post("/v1/enrollments", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json
}

async fn policy(fleet: &Fleet, name: &str, statements: Value) -> String {
    let (status, json) = send(fleet.server.post(
        "/v1/policies",
        &json!({"name": name, "statements": statements}),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json["id"].as_str().unwrap().to_owned()
}

async fn attach(fleet: &Fleet, policy_id: &str, target: Value) {
    let mut body = json!({"policy_id": policy_id});
    body.as_object_mut()
        .unwrap()
        .extend(target.as_object().unwrap().clone());
    let (status, json) = send(fleet.server.post("/v1/policy-attachments", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
}

/// A fleet with a factory CA, a group `sensors` (with a policy allowing
/// every device action on the device itself) and an enrollment into it.
async fn enrolled_fleet() -> (Fleet, Factory, String) {
    let fleet = start().await;
    let factory = Factory::new(&fleet, "factory").await;
    let g = group(
        &fleet,
        json!({"name": "sensors", "config": {"interval": 60}}),
    )
    .await;
    enrollment(
        &fleet,
        json!({"name": "line-1", "ca_id": factory.id, "group_id": g,
               "name_template": "sensor-{cn}", "enabled": true}),
    )
    .await;
    let p = policy(
        &fleet,
        "device-baseline",
        json!([{"effect": "allow",
                "actions": ["device:checkin", "config:read", "firmware:*"],
                "resources": ["fleet:device/${device.id}"]}]),
    )
    .await;
    attach(&fleet, &p, json!({"group_id": g})).await;
    (fleet, factory, g)
}

async fn metrics(fleet: &Fleet) -> String {
    fleet
        .server
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// ------------------------------------------------------------------ TLS

#[tokio::test]
async fn publishes_its_address_and_server_ca() {
    let fleet = start().await;
    assert!(fleet.device_addr.starts_with("127.0.0.1:"));
    assert_ne!(fleet.device_addr, fleet.server.addr.to_string());
    assert!(fleet.server_ca_pem.contains("BEGIN CERTIFICATE"));
}

#[tokio::test]
async fn handshake_refuses_missing_unknown_expired_and_not_yet_valid_certificates() {
    let fleet = start().await;
    let now = Utc::now();
    let factory = Factory::valid_from(&fleet, "factory", now - ChronoDuration::days(60)).await;
    let g = group(&fleet, json!({"name": "g"})).await;
    enrollment(
        &fleet,
        json!({"name": "e", "ca_id": factory.id, "group_id": g, "enabled": true}),
    )
    .await;

    // A CA fleetd does not know.
    let stranger = Factory::valid_from(&fleet, "stranger", now).await;
    let (status, _) = send(
        fleet
            .server
            .delete(&format!("/v1/certificate-authorities/{}", stranger.id)),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let cases = [
        ("no certificate", Device::anonymous(&fleet)),
        (
            "unknown CA",
            Device::new(&fleet, &stranger.issue("intruder")),
        ),
        (
            "expired",
            Device::new(
                &fleet,
                &factory.issue_at("old", now - ChronoDuration::days(40), 10),
            ),
        ),
        (
            "not yet valid",
            Device::new(
                &fleet,
                &factory.issue_at("future", now + ChronoDuration::days(2), 10),
            ),
        ),
    ];
    for (what, device) in &cases {
        let result = device.post("/enroll", json!({"hardware": "m1"})).await;
        assert!(
            result.is_err(),
            "{what}: expected the handshake to fail, got {result:?}"
        );
    }

    // The same factory's valid certificate goes through.
    let ok = Device::new(&fleet, &factory.issue("fresh"));
    let (status, body) = ok.enroll("m1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let m = metrics(&fleet).await;
    for word in [
        "no_certificate",
        "unknown_ca",
        "expired",
        "not_yet_valid",
        "ok",
    ] {
        assert!(
            m.contains(&format!(
                "fleetd_device_tls_handshakes_total{{result=\"{word}\"}}"
            )),
            "{word} missing from\n{m}"
        );
    }
}

#[tokio::test]
async fn a_new_ca_is_trusted_without_restart() {
    let fleet = start().await;
    // The listener has loaded its (empty) CA set; a CA created now is
    // trusted from the next handshake on.
    let _ = Device::anonymous(&fleet).get("/config").await;
    let first = Device::new(&fleet, &Factory::new(&fleet, "a").await.issue("d"));
    // Known CA, no enrollment: the handshake succeeds, enrollment says why not.
    let (status, body) = first.enroll("m1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert_eq!(body["action"], "device:enroll");
    assert_eq!(body["reason"], "no_enrollment");
}

#[tokio::test]
async fn revocation_takes_effect_without_restart_even_on_an_open_connection() {
    let (fleet, factory, _) = enrolled_fleet().await;
    let credentials = factory.issue("rev-1");
    let device = Device::new(&fleet, &credentials);
    let (status, enrolled) = device.enroll("m1").await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let cert_id = enrolled["certificate_id"].as_str().unwrap().to_owned();
    let (status, body) = device.checkin(json!({"firmware_version": "1.0.0"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The certificate recorded at enrollment is an ordinary fleet certificate.
    let (s, c) = send(fleet.server.get(&format!("/v1/certificates/{cert_id}"))).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["device_id"], enrolled["device_id"]);
    assert_eq!(c["ca_id"], factory.id.as_str());
    assert_eq!(c["status"], "active");

    // Suspend: refused on the open connection, accepted again once re-activated.
    let set = |status: &str, version: i64| json!({"status": status, "version": version});
    let (s, c) = send(
        fleet
            .server
            .put(&format!("/v1/certificates/{cert_id}"), &set("inactive", 1)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (status, body) = device.checkin(json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "certificate_refused");
    assert_eq!(body["reason"], "inactive");
    let (s, c) = send(
        fleet
            .server
            .put(&format!("/v1/certificates/{cert_id}"), &set("active", 2)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (status, body) = device.checkin(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Revoke: the very next request on the open connection is refused...
    let (s, c) = send(fleet.server.put(
        &format!("/v1/certificates/{cert_id}"),
        &json!({"status": "revoked", "revocation_reason": "key_compromise", "version": 3}),
    ))
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (status, body) = device.checkin(json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["reason"], "revoked");
    assert!(
        body["message"].as_str().unwrap().contains("key_compromise"),
        "{body}"
    );

    // ...and a new connection fails the handshake.
    let result = Device::new(&fleet, &credentials)
        .post("/checkin", json!({}))
        .await;
    assert!(result.is_err(), "{result:?}");
    let m = metrics(&fleet).await;
    assert!(
        m.contains("fleetd_device_tls_handshakes_total{result=\"revoked\"}"),
        "{m}"
    );
    assert!(
        m.contains("fleetd_device_requests_total{method=\"POST\",route=\"/v1/device/checkin\",status=\"401\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn a_certificate_issued_by_fleetd_works_too() {
    let fleet = start().await;
    let (s, ca) = send(fleet.server.post(
        "/v1/certificate-authorities",
        &json!({"name": "fleet-root", "common_name": "Fleet Root"}),
    ))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{ca}");
    let g = group(&fleet, json!({"name": "bench"})).await;
    let (s, dev) = send(fleet.server.post(
        "/v1/devices",
        &json!({"name": "bench-1", "hardware": "m1", "group_ids": [g]}),
    ))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    let (s, cert) = send(fleet.server.post(
        "/v1/certificates",
        &json!({"ca_id": ca["id"], "device_id": dev["id"]}),
    ))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{cert}");
    let p = policy(
        &fleet,
        "bench",
        json!([{"effect": "allow", "actions": ["device:checkin"], "resources": ["fleet:device/${device.id}"]}]),
    )
    .await;
    attach(&fleet, &p, json!({"certificate_id": cert["id"]})).await;

    let device = Device::new(
        &fleet,
        &(
            cert["certificate_pem"].as_str().unwrap().to_owned(),
            cert["private_key_pem"].as_str().unwrap().to_owned(),
        ),
    );
    // Registered through the admin API: no enrollment needed, and enrolling
    // returns the same device.
    let (status, body) = device.checkin(json!({"health": "ok"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], dev["id"]);
    assert_eq!(body["denied"], json!(["config:read", "firmware:download"]));
    let (status, body) = device.enroll("m1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], dev["id"]);
    assert_eq!(body["created"], false);
    assert!(body["enrollment_id"].is_null());
}

// ------------------------------------------------------------------ enrollment

#[tokio::test]
async fn enrollment_creates_the_device_once() {
    let (fleet, factory, g) = enrolled_fleet().await;
    let device = Device::new(&fleet, &factory.issue("0001"));
    let (status, body) = device.enroll("m1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "sensor-0001");
    assert_eq!(body["group_ids"], json!([g]));
    assert_eq!(body["attributes"], json!({"site": "plant-7"}));
    assert_eq!(body["created"], true);
    let id = body["device_id"].as_str().unwrap().to_owned();

    // Idempotent, on this connection and on a new one.
    let (status, again) = device.enroll("m1").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["device_id"], id.as_str());
    assert_eq!(again["created"], false);

    let (s, dev) = send(fleet.server.get(&format!("/v1/devices/{id}"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(dev["hardware"], "m1");
    let (s, e) = send(fleet.server.get("/v1/enrollments")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(e["items"][0]["enrolled_count"], 1, "{e}");
    let (_, grp) = send(fleet.server.get(&format!("/v1/device-groups/{g}"))).await;
    assert_eq!(grp["device_count"], 1);
}

#[tokio::test]
async fn enrollment_rules_max_devices_hardware_disabled() {
    let fleet = start().await;
    let factory = Factory::new(&fleet, "factory").await;
    let g = group(&fleet, json!({"name": "g"})).await;
    let e = enrollment(
        &fleet,
        json!({"name": "line", "ca_id": factory.id, "group_id": g, "enabled": true,
               "max_devices": 2, "allowed_hardware": ["m1", "m2"],
               "attributes": {"line": "1"}}),
    )
    .await;

    let refused = |body: &Value, reason: &str| {
        assert_eq!(body["error"], "forbidden", "{body}");
        assert_eq!(body["action"], "device:enroll", "{body}");
        assert_eq!(body["reason"], reason, "{body}");
    };

    let (status, body) = Device::new(&fleet, &factory.issue("x1")).enroll("m9").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    refused(&body, "hardware_not_allowed");
    assert!(body["message"].as_str().unwrap().contains("m9"), "{body}");

    // Two devices concurrently fill the limit; the third is refused.
    let a = Device::new(&fleet, &factory.issue("a"));
    let b = Device::new(&fleet, &factory.issue("b"));
    let (ra, rb) = tokio::join!(a.enroll("m1"), b.enroll("m2"));
    assert_eq!(ra.0, StatusCode::CREATED, "{}", ra.1);
    assert_eq!(rb.0, StatusCode::CREATED, "{}", rb.1);
    assert_eq!(ra.1["attributes"]["line"], "1");
    let (status, body) = Device::new(&fleet, &factory.issue("c")).enroll("m1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    refused(&body, "limit_reached");
    // An enrolled device re-enrolling does not count against the limit.
    assert_eq!(a.enroll("m1").await.0, StatusCode::OK);

    // Disabled.
    let mut update = e.clone();
    for k in ["id", "enrolled_count", "created_at", "updated_at"] {
        update.as_object_mut().unwrap().remove(k);
    }
    update["enabled"] = json!(false);
    update["max_devices"] = json!(10);
    let (s, body) = send(fleet.server.put(
        &format!("/v1/enrollments/{}", e["id"].as_str().unwrap()),
        &update,
    ))
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (status, body) = Device::new(&fleet, &factory.issue("d")).enroll("m1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    refused(&body, "disabled");

    // Bad input is a 400, before any rule.
    let (status, body) = Device::new(&fleet, &factory.issue("e"))
        .post("/enroll", json!({"hardware": "bad hw!"}))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_argument");

    let (_, list) = send(fleet.server.get("/v1/enrollments")).await;
    assert_eq!(list["items"][0]["enrolled_count"], 2);
    let m = metrics(&fleet).await;
    assert!(m.contains("fleetd_device_authz_decisions_total{action=\"device:enroll\",decision=\"deny\",reason=\"limit_reached\"} 1"), "{m}");
    assert!(m.contains("fleetd_device_authz_decisions_total{action=\"device:enroll\",decision=\"allow\",reason=\"enrollment\"}"), "{m}");
}

#[tokio::test]
async fn the_most_specific_enrollment_wins_and_patterns_refuse_other_names() {
    let fleet = start().await;
    let factory = Factory::new(&fleet, "factory").await;
    let any = group(&fleet, json!({"name": "any"})).await;
    let meters = group(&fleet, json!({"name": "meters"})).await;
    let prod = group(&fleet, json!({"name": "prod-meters"})).await;
    // Created catch-all first, so creation order alone would pick it.
    enrollment(
        &fleet,
        json!({"name": "catch-all", "ca_id": factory.id, "group_id": any}),
    )
    .await;
    enrollment(
        &fleet,
        json!({"name": "meters", "ca_id": factory.id, "group_id": meters,
               "allowed_hardware": ["m1"]}),
    )
    .await;
    let e = enrollment(
        &fleet,
        json!({"name": "prod", "ca_id": factory.id, "group_id": prod,
               "allowed_hardware": ["m1"], "common_name_pattern": "meter-prod-*"}),
    )
    .await;
    assert_eq!(e["common_name_pattern"], "meter-prod-*");

    let landed = |body: &Value| body["group_ids"][0].as_str().unwrap().to_owned();
    let (s, b) = Device::new(&fleet, &factory.issue("meter-prod-1"))
        .enroll("m1")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(landed(&b), prod, "pattern + hardware beats the rest");
    let (s, b) = Device::new(&fleet, &factory.issue("meter-lab-1"))
        .enroll("m1")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(landed(&b), meters, "hardware beats the catch-all");
    let (s, b) = Device::new(&fleet, &factory.issue("meter-prod-2"))
        .enroll("m9")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(landed(&b), any, "only the catch-all admits hardware m9");

    // A pattern alone refuses other names, saying why.
    let other = Factory::new(&fleet, "other").await;
    enrollment(
        &fleet,
        json!({"name": "gw", "ca_id": other.id, "group_id": any,
               "common_name_pattern": "gw-??"}),
    )
    .await;
    let (s, b) = Device::new(&fleet, &other.issue("gw-123"))
        .enroll("m1")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["reason"], "common_name_mismatch", "{b}");
    assert!(b["message"].as_str().unwrap().contains("gw-??"), "{b}");
    let (s, b) = Device::new(&fleet, &other.issue("gw-12"))
        .enroll("m1")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Invalid patterns are refused naming the field.
    let (s, b) = send(fleet.server.post(
        "/v1/enrollments",
        &json!({"name": "bad", "ca_id": other.id, "group_id": any, "common_name_pattern": " "}),
    ))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["field"], "common_name_pattern", "{b}");
}

#[tokio::test]
async fn calls_before_enrollment_are_refused() {
    let (fleet, factory, _) = enrolled_fleet().await;
    let device = Device::new(&fleet, &factory.issue("early"));
    let (status, body) = device.checkin(json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_enrolled");
    let (status, body) = device.get("/nope").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
}

// ------------------------------------------------------------------ check-in

#[tokio::test]
async fn checkin_stores_reported_state_and_returns_the_effective_config() {
    let fleet = start().await;
    let factory = Factory::new(&fleet, "factory").await;
    let root = group(
        &fleet,
        json!({"name": "prod", "config": {"interval": 60, "log": {"level": "info"}}}),
    )
    .await;
    let child = group(
        &fleet,
        json!({"name": "meters", "parent_id": root, "config": {"log": {"level": "debug"}, "meter": true}}),
    )
    .await;
    // A dynamic group matching what the device reports.
    group(
        &fleet,
        json!({"name": "new-fw", "query": "firmware == \"2.0.0\"", "config": {"beta": true}}),
    )
    .await;
    enrollment(
        &fleet,
        json!({"name": "e", "ca_id": factory.id, "group_id": child, "enabled": true}),
    )
    .await;
    let p = policy(
        &fleet,
        "baseline",
        json!([{"effect": "allow", "actions": ["device:checkin", "config:read", "firmware:download"],
                "resources": ["fleet:device/${device.id}"]}]),
    )
    .await;
    // Attached to the parent: inherited by the subgroup.
    attach(&fleet, &p, json!({"group_id": root})).await;

    let device = Device::new(&fleet, &factory.issue("m-1"));
    let (status, enrolled) = device.enroll("m1").await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let id = enrolled["device_id"].as_str().unwrap().to_owned();
    let before = Utc::now();

    let (status, body) = device
        .checkin(json!({"firmware_version": "1.0.0", "hardware": "m1", "health": "ok"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], id.as_str());
    assert_eq!(
        body["config"],
        json!({"interval": 60, "log": {"level": "debug"}, "meter": true})
    );
    assert!(body["assignment"].is_null());
    assert_eq!(body["denied"], json!([]));
    let digest = body["config_digest"].as_str().unwrap().to_owned();

    let (_, dev) = send(fleet.server.get(&format!("/v1/devices/{id}"))).await;
    assert_eq!(dev["firmware_version"], "1.0.0");
    assert_eq!(dev["health"], "ok");
    assert_eq!(
        dev["version"], 1,
        "reported state does not bump the version: {dev}"
    );
    let last_seen: DateTime<Utc> = dev["last_seen"].as_str().unwrap().parse().unwrap();
    assert!(last_seen >= before - ChronoDuration::seconds(1));

    // Same digest: no config in the answer.
    let (_, body) = device.checkin(json!({"config_digest": digest})).await;
    assert!(body["config"].is_null(), "{body}");
    assert_eq!(body["config_digest"], digest.as_str());

    // Reporting 2.0.0 puts the device in the dynamic group at once.
    let (_, body) = device
        .checkin(json!({"firmware_version": "2.0.0", "config_digest": digest}))
        .await;
    assert_eq!(body["config"]["beta"], true, "{body}");
    assert_ne!(body["config_digest"], digest.as_str());

    // A config change is seen on the next check-in.
    let (_, g) = send(fleet.server.get(&format!("/v1/device-groups/{child}"))).await;
    let (s, b) = send(fleet.server.put(
        &format!("/v1/device-groups/{child}"),
        &json!({"name": "meters", "parent_id": root, "config": {"meter": false}, "version": g["version"]}),
    ))
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, body) = device.get("/config").await.unwrap();
    assert_eq!(
        body["config"],
        json!({"interval": 60, "log": {"level": "info"}, "meter": false, "beta": true})
    );
    let (status, body) = device.get("/assignment").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["assignment"].is_null());

    // Bad reports are refused.
    let (status, body) = device.checkin(json!({"health": "a\u{7}b"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Device requests are answered from memory between writes: an admin
/// change made between two check-ins on one open connection is seen by
/// the second, and what a check-in reported is seen by the calls after it.
#[tokio::test]
async fn check_ins_see_admin_writes_made_between_them() {
    let (fleet, factory, g) = enrolled_fleet().await;
    group(
        &fleet,
        json!({"name": "site-b", "query": "attr.site == \"b\"", "config": {"site_b": true}}),
    )
    .await;
    group(
        &fleet,
        json!({"name": "fw-2", "query": "firmware == \"2.0.0\"", "config": {"fw_2": true}}),
    )
    .await;
    let device = Device::new(&fleet, &factory.issue("cache-1"));
    let (status, enrolled) = device.enroll("m1").await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let id = enrolled["device_id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (status, body) = device.checkin(json!({"firmware_version": "1.0.0"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["config"].get("site_b").is_none(), "{body}");
    }

    let (_, dev) = send(fleet.server.get(&format!("/v1/devices/{id}"))).await;
    let (s, b) = send(fleet.server.put(
        &format!("/v1/devices/{id}"),
        &json!({"name": dev["name"], "hardware": "m1", "attributes": {"site": "b"},
                "group_ids": [g], "version": dev["version"]}),
    ))
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (status, body) = device.checkin(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["config"]["site_b"], true, "{body}");

    // A check-in without a firmware version keeps the one reported before,
    // in the store and in what the next calls see.
    let (_, body) = device.checkin(json!({"firmware_version": "2.0.0"})).await;
    assert_eq!(body["device_id"], id.as_str(), "{body}");
    let (_, body) = device.checkin(json!({"health": "ok"})).await;
    assert_eq!(body["config"]["fw_2"], true, "{body}");
    let (_, body) = device.get("/config").await.unwrap();
    assert_eq!(body["config"]["fw_2"], true, "{body}");
    let (_, dev) = send(fleet.server.get(&format!("/v1/devices/{id}"))).await;
    assert_eq!(dev["firmware_version"], "2.0.0", "{dev}");
    assert_eq!(dev["health"], "ok", "{dev}");

    // Deleting the device: its certificate's next call is refused.
    let (s, b) = send(fleet.server.delete(&format!("/v1/devices/{id}"))).await;
    assert!(s.is_success(), "{s} {b}");
    let (status, body) = device.checkin(json!({})).await;
    assert!(status.is_client_error(), "{status} {body}");
}

// ------------------------------------------------------------------ policies

#[tokio::test]
async fn policies_deny_by_default_and_explicit_deny_wins() {
    let fleet = start().await;
    let factory = Factory::new(&fleet, "factory").await;
    let prod = group(&fleet, json!({"name": "prod"})).await;
    let quarantine = group(&fleet, json!({"name": "quarantine", "parent_id": prod})).await;
    enrollment(
        &fleet,
        json!({"name": "e", "ca_id": factory.id, "group_id": quarantine, "enabled": true}),
    )
    .await;

    let device = Device::new(&fleet, &factory.issue("q-1"));
    assert_eq!(device.enroll("m1").await.0, StatusCode::CREATED);

    // No policy at all: deny by default, naming the action.
    let (status, body) = device.checkin(json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert_eq!(body["action"], "device:checkin");
    assert_eq!(body["reason"], "default_deny");

    // Allow everything at the top; the check-in works.
    let all = policy(
        &fleet,
        "all",
        json!([{"effect": "allow", "actions": ["*"], "resources": ["*"]}]),
    )
    .await;
    attach(&fleet, &all, json!({"group_id": prod})).await;
    let (status, body) = device.checkin(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["denied"], json!([]));

    // An explicit deny on the quarantine subtree wins over the allow.
    let q = policy(
        &fleet,
        "quarantine",
        json!([{"effect": "deny", "actions": ["firmware:*", "config:read"], "resources": ["fleet:group/prod/quarantine/*"]}]),
    )
    .await;
    attach(&fleet, &q, json!({"group_id": quarantine})).await;
    let (status, body) = device.checkin(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["denied"], json!(["config:read", "firmware:download"]));
    assert!(body["config"].is_null());

    let (status, body) = device.get("/assignment").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["action"], "firmware:download");
    assert_eq!(body["reason"], "explicit_deny");
    assert!(body["message"].as_str().unwrap().contains(&q), "{body}");
    let (status, body) = device.get("/config").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["action"], "config:read");
    let (status, body) = device
        .post(
            "/results",
            json!({"rollout_id": "r-1", "outcome": "succeeded"}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["action"], "firmware:report");

    let m = metrics(&fleet).await;
    assert!(m.contains("fleetd_device_authz_decisions_total{action=\"device:checkin\",decision=\"deny\",reason=\"default_deny\"} 1"), "{m}");
    assert!(m.contains("fleetd_device_authz_decisions_total{action=\"firmware:download\",decision=\"deny\",reason=\"explicit_deny\"} 2"), "{m}");
    assert!(m.contains("fleetd_device_authz_decisions_total{action=\"device:checkin\",decision=\"allow\",reason=\"allow\"} 2"), "{m}");
}

#[tokio::test]
async fn results_for_an_unknown_rollout_are_404() {
    let (fleet, factory, _) = enrolled_fleet().await;
    let device = Device::new(&fleet, &factory.issue("r"));
    assert_eq!(device.enroll("m1").await.0, StatusCode::CREATED);
    let (status, body) = device
        .post(
            "/results",
            json!({"rollout_id": "nope", "outcome": "failed", "reason": "disk"}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = device
        .post(
            "/results",
            json!({"rollout_id": "x", "outcome": "exploded"}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn many_devices_enroll_concurrently() {
    let (fleet, factory, g) = enrolled_fleet().await;
    let fleet = Arc::new(fleet);
    let factory = Arc::new(factory);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (fleet, factory) = (Arc::clone(&fleet), Arc::clone(&factory));
        tasks.push(tokio::spawn(async move {
            let d = Device::new(&fleet, &factory.issue(&format!("c{i:03}")));
            let (s, b) = d.enroll("m1").await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            let (s, b) = d.checkin(json!({"firmware_version": "1.0.0"})).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, grp) = send(fleet.server.get(&format!("/v1/device-groups/{g}"))).await;
    assert_eq!(grp["device_count"], 50);
}

// ------------------------------------------------------------------ compliance

async fn compliance(fleet: &Fleet, group: &str) -> Value {
    let (s, c) = send(
        fleet
            .server
            .get(&format!("/v1/device-groups/{group}/compliance")),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    c
}

/// Calls `f` every 200 ms until it returns `Some`, for at most `secs`.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_tracks_config_and_firmware_drift_and_silence_with_rollup() {
    let (fleet, factory, g) = enrolled_fleet().await;
    let plant = group(&fleet, json!({"name": "plant"})).await;
    let (_, cur) = send(fleet.server.get(&format!("/v1/device-groups/{g}"))).await;
    let (s, bad) = send(fleet.server.put(
        &format!("/v1/device-groups/{g}"),
        &json!({"name": "sensors", "stale_after": "soon", "version": cur["version"]}),
    ))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["field"], "stale_after", "{bad}");
    let (s, upd) = send(fleet.server.put(
        &format!("/v1/device-groups/{g}"),
        &json!({"name": "sensors", "parent_id": plant, "config": {"interval": 60},
                "stale_after": "2s", "version": cur["version"]}),
    ))
    .await;
    assert_eq!(s, StatusCode::OK, "{upd}");
    assert_eq!(upd["stale_after"], "2s");
    assert_eq!(upd["compliance"]["total"], 0);
    assert_eq!(upd["compliance"]["in_sync_ratio"], 1.0);

    // The canonical digest a device computes over what it received.
    let desired =
        fleetd::domain::compliance::config_digest(json!({"interval": 60}).as_object().unwrap());
    let checkin = |d: &'static str, fw: &'static str, digest: String| {
        let device = Device::new(&fleet, &factory.issue(d));
        async move {
            assert_eq!(device.enroll("m1").await.0, StatusCode::CREATED);
            let (s, body) = device
                .checkin(json!({"firmware_version": fw, "config_digest": digest}))
                .await;
            assert_eq!(s, StatusCode::OK, "{body}");
            (device, body)
        }
    };
    let (a, body) = checkin("a", "1.0.0", desired.clone()).await;
    assert_eq!(
        body["config_digest"],
        desired.as_str(),
        "fleetd and the device agree"
    );
    let (b, _) = checkin("b", "1.0.0", "00".repeat(32)).await;
    let (_c, body) = checkin("c", "1.0.0", desired.clone()).await;
    let c_id = body["device_id"].as_str().unwrap().to_owned();

    // The parent rolls its subgroups up.
    let report = compliance(&fleet, &plant).await;
    assert_eq!(
        (
            &report["in_sync"],
            &report["config_drift"],
            &report["total"]
        ),
        (&json!(2), &json!(1), &json!(3)),
        "{report}"
    );
    assert_eq!(report["path"], "plant");
    let sample = report["noncompliant_sample"].as_array().unwrap();
    assert_eq!(sample.len(), 1, "{report}");
    assert_eq!(sample[0]["name"], "sensor-b");
    assert_eq!(sample[0]["state"], "config_drift");
    assert!(
        sample[0]["reason"]
            .as_str()
            .unwrap()
            .contains("differs from the desired"),
        "{report}"
    );

    // a and b keep checking in; c falls silent and turns stale.
    let stale = eventually("c turns stale", 15, || async {
        a.checkin(json!({"firmware_version": "1.0.0", "config_digest": desired}))
            .await;
        b.checkin(json!({"firmware_version": "1.0.0", "config_digest": "00".repeat(32)}))
            .await;
        let r = compliance(&fleet, &g).await;
        (r["stale"] == 1).then_some(r)
    })
    .await;
    assert_eq!(
        (&stale["in_sync"], &stale["config_drift"], &stale["total"]),
        (&json!(1), &json!(1), &json!(3)),
        "{stale}"
    );
    let (s, page) = send(fleet.server.get(&format!(
        "/v1/device-groups/{g}/compliance/devices?state=stale"
    )))
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["device_id"], c_id.as_str());
    assert!(page["items"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not seen since"));
    let (s, e) = send(fleet.server.get(&format!(
        "/v1/device-groups/{g}/compliance/devices?state=in_sync"
    )))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["field"], "state");

    // A deleted device leaves the counters.
    let (s, _) = send(fleet.server.delete(&format!("/v1/devices/{c_id}"))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(compliance(&fleet, &plant).await["total"], 2);

    // Firmware: once a rollout of 2.0.0 completed, a device still on 1.0.0
    // drifts.
    let (s, fw) = send(fleet.server.post(
        "/v1/firmware",
        &json!({"product": "sensor-fw", "version": "2.0.0", "hardware": ["m1"],
                "url": "https://fw.example/2.0.0.bin", "sha256": "ab".repeat(32),
                "size_bytes": 1024}),
    ))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{fw}");
    let (s, rollout) = send(fleet.server.post(
        "/v1/rollouts",
        &json!({"name": "sensors-2", "firmware_id": fw["id"], "target_group_ids": [g],
                "phases": [{"percent": 100}]}),
    ))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{rollout}");
    let rollout_id = rollout["id"].as_str().unwrap().to_owned();
    for device in [&a, &b] {
        let assignment = eventually("an assignment", 15, || async {
            let (_, body) = device
                .checkin(json!({"firmware_version": "1.0.0", "config_digest": desired}))
                .await;
            (!body["assignment"].is_null()).then(|| body["assignment"].clone())
        })
        .await;
        assert_eq!(assignment["version"], "2.0.0");
        let (s, ack) = device
            .post(
                "/results",
                json!({"rollout_id": rollout_id, "outcome": "succeeded"}),
            )
            .await
            .unwrap();
        assert!(s.is_success(), "{ack}");
    }
    eventually("the rollout completes", 15, || async {
        let (_, r) = send(fleet.server.get(&format!("/v1/rollouts/{rollout_id}"))).await;
        (r["status"] == "completed").then_some(())
    })
    .await;
    a.checkin(json!({"firmware_version": "2.0.0", "config_digest": desired}))
        .await;
    b.checkin(json!({"firmware_version": "1.0.0", "config_digest": desired}))
        .await;
    let r = compliance(&fleet, &g).await;
    assert_eq!(
        (
            &r["in_sync"],
            &r["firmware_drift"],
            &r["config_drift"],
            &r["stale"]
        ),
        (&json!(1), &json!(1), &json!(0), &json!(0)),
        "{r}"
    );
    assert_eq!(
        r["noncompliant_sample"][0]["reason"],
        "runs firmware 1.0.0, its completed rollout installed 2.0.0"
    );
    assert_eq!(r["in_sync_ratio"], 0.5);
}
