//! A catalogue of malformed admin-API requests across every object kind.
//! Each must get its exact 4xx status and the `{error, field, message}`
//! body naming the field, and must write nothing: every list, every
//! policy's version history and the audit log are the same afterwards.
//!
//! One fleetd (in-process, real HTTP, temp SQLite) with one object of each
//! kind; the table below is the catalogue.

mod common;

use std::collections::BTreeMap;

use common::{send, TestServer};
use serde_json::{json, Value};

/// How a case sends its body.
enum Body {
    None,
    /// JSON text (placeholders like `{group}` are replaced by ids), sent as
    /// `application/json`; it need not be valid JSON.
    Json(&'static str),
    /// Arbitrary bytes with a content type.
    Raw(&'static str, Vec<u8>),
}

struct Case {
    what: &'static str,
    method: &'static str,
    /// Placeholders as in [`Body::Json`].
    path: &'static str,
    body: Body,
    status: u16,
    error: &'static str,
    field: Option<&'static str>,
    /// A substring of `message`.
    message: &'static str,
}

#[allow(clippy::too_many_arguments)]
fn case(
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: Body,
    status: u16,
    error: &'static str,
    field: Option<&'static str>,
    message: &'static str,
) -> Case {
    Case {
        what,
        method,
        path,
        body,
        status,
        error,
        field,
        message,
    }
}

use Body::Json as J;

#[rustfmt::skip] // one case per paragraph reads better as a table
fn catalogue() -> Vec<Case> {
    const BAD: &str = "invalid_argument";
    const CONFLICT: &str = "conflict";
    vec![
        // ------------------------------------------------ request syntax
        case("truncated JSON", "POST", "/v1/device-groups", J(r#"{"name": "a","#),
            400, BAD, None, "not valid JSON"),
        case("a JSON array instead of an object", "POST", "/v1/devices", J(r#"["d", "m1"]"#),
            400, BAD, None, "must be a JSON object"),
        case("an empty body", "POST", "/v1/policies", J(""),
            400, BAD, None, "empty"),
        case("trailing data after the object", "POST", "/v1/device-groups",
            J(r#"{"name": "a"} {"name": "b"}"#), 400, BAD, None, "unexpected data after the object"),
        case("not JSON content", "POST", "/v1/device-groups",
            Body::Raw("text/plain", b"name=a".to_vec()), 415, "unsupported_media_type", None,
            "Content-Type: application/json"),
        case("a body over the size limit", "POST", "/v1/device-groups",
            Body::Raw("application/json", oversized_body()), 413, "payload_too_large", None,
            "too large"),
        // ------------------------------------------------ device groups
        case("unknown field", "POST", "/v1/device-groups", J(r#"{"name": "a", "colour": "red"}"#),
            400, BAD, Some("colour"), "unknown field \"colour\""),
        case("name of the wrong type", "POST", "/v1/device-groups", J(r#"{"name": 5}"#),
            400, BAD, Some("name"), "invalid type: integer"),
        case("missing name", "POST", "/v1/device-groups", J(r#"{"description": "x"}"#),
            400, BAD, Some("name"), "missing field \"name\""),
        case("name with a space", "POST", "/v1/device-groups", J(r#"{"name": "a b"}"#),
            400, BAD, Some("name"), "invalid character"),
        case("tag value of the wrong type", "POST", "/v1/device-groups",
            J(r#"{"name": "a", "tags": {"env": 5}}"#), 400, BAD, Some("tags.env"), "invalid type"),
        case("config that is not an object", "POST", "/v1/device-groups",
            J(r#"{"name": "a", "config": [1, 2]}"#), 400, BAD, Some("config"), "invalid type"),
        case("query syntax error", "POST", "/v1/device-groups",
            J(r#"{"name": "a", "query": "hardware == "}"#), 400, BAD, Some("query"), "line 1, col"),
        case("unknown parent", "POST", "/v1/device-groups",
            J(r#"{"name": "a", "parent_id": "no-such-group"}"#), 400, BAD, Some("parent_id"),
            "no-such-group"),
        case("empty parent id", "POST", "/v1/device-groups",
            J(r#"{"name": "a", "parent_id": ""}"#), 400, BAD, Some("parent_id"), "must not be empty"),
        case("duplicate sibling name", "POST", "/v1/device-groups", J(r#"{"name": "root"}"#),
            409, CONFLICT, Some("name"), "root"),
        case("a group as its own parent", "PUT", "/v1/device-groups/{group}",
            J(r#"{"name": "root", "parent_id": "{group}", "version": 1}"#),
            400, BAD, Some("parent_id"), "its own parent"),
        case("a group under its own child", "PUT", "/v1/device-groups/{group}",
            J(r#"{"name": "root", "parent_id": "{child}", "version": 1}"#),
            400, BAD, Some("parent_id"), "parent_id"),
        case("stale version on update", "PUT", "/v1/device-groups/{group}",
            J(r#"{"name": "renamed", "version": 7}"#), 409, CONFLICT, Some("version"),
            "expected version 7"),
        case("update without a version", "PUT", "/v1/device-groups/{group}",
            J(r#"{"name": "renamed"}"#), 400, BAD, Some("version"), "missing field \"version\""),
        case("version of the wrong type", "PUT", "/v1/device-groups/{group}",
            J(r#"{"name": "renamed", "version": "1"}"#), 400, BAD, Some("version"), "invalid type"),
        case("stale version on delete", "DELETE", "/v1/device-groups/{child}?version=9",
            Body::None, 409, CONFLICT, Some("version"), "expected version 9"),
        case("version that is not a number", "DELETE", "/v1/device-groups/{child}?version=one",
            Body::None, 400, BAD, Some("version"), "must be an integer"),
        case("deleting a group that has a subgroup", "DELETE", "/v1/device-groups/{group}",
            Body::None, 409, CONFLICT, None, "child group"),
        case("unknown group id", "GET", "/v1/device-groups/no-such-group", Body::None,
            404, "not_found", None, "no-such-group"),
        case("page size zero", "GET", "/v1/device-groups?limit=0", Body::None,
            400, BAD, Some("limit"), "between 1 and"),
        case("page size too large", "GET", "/v1/device-groups?limit=1000000", Body::None,
            400, BAD, Some("limit"), "between 1 and"),
        case("page size not a number", "GET", "/v1/devices?limit=ten", Body::None,
            400, BAD, Some("limit"), "must be an integer"),
        case("forged page token", "GET", "/v1/policies?page_token=zz", Body::None,
            400, BAD, Some("page_token"), "next_page_token"),
        case("unknown query parameter", "GET", "/v1/firmware?sort=name", Body::None,
            400, BAD, Some("sort"), "unknown query parameter"),
        case("repeated query parameter", "GET", "/v1/rollouts?limit=1&limit=2", Body::None,
            400, BAD, Some("limit"), "more than once"),
        case("update of an unknown group", "PUT", "/v1/device-groups/no-such-group",
            J(r#"{"name": "x", "version": 1}"#), 404, "not_found", None, "no-such-group"),
        case("unsupported method", "PATCH", "/v1/device-groups/{group}",
            J(r#"{"name": "x"}"#), 405, "method_not_allowed", None, "does not support PATCH"),
        // ------------------------------------------------ devices
        case("empty hardware", "POST", "/v1/devices", J(r#"{"name": "d2", "hardware": ""}"#),
            400, BAD, Some("hardware"), "hardware"),
        case("attribute of the wrong type", "POST", "/v1/devices",
            J(r#"{"name": "d2", "hardware": "m1", "attributes": {"region": ["eu"]}}"#),
            400, BAD, Some("attributes.region"), "invalid type"),
        case("unknown group in group_ids", "POST", "/v1/devices",
            J(r#"{"name": "d2", "hardware": "m1", "group_ids": ["no-such-group"]}"#),
            400, BAD, Some("group_ids[0]"), "\"no-such-group\" not found"),
        case("duplicate device name", "POST", "/v1/devices",
            J(r#"{"name": "meter-1", "hardware": "m1"}"#), 409, CONFLICT, Some("name"), "meter-1"),
        case("reported state is not writable", "POST", "/v1/devices",
            J(r#"{"name": "d2", "hardware": "m1", "firmware_version": "1.0.0"}"#),
            400, BAD, Some("firmware_version"), "unknown field"),
        case("stale device version", "PUT", "/v1/devices/{device}",
            J(r#"{"name": "meter-1", "hardware": "m2", "version": 3}"#),
            409, CONFLICT, Some("version"), "expected version 3"),
        case("invalid device query", "GET", "/v1/devices?query=hardware%20%3D%3D", Body::None,
            400, BAD, Some("query"), "line 1, col"),
        case("delete of an unknown device", "DELETE", "/v1/devices/no-such-device", Body::None,
            404, "not_found", None, "no-such-device"),
        // ------------------------------------------------ policies
        case("unknown statement effect", "POST", "/v1/policies",
            J(r#"{"name": "p2", "statements": [{"effect": "maybe", "actions": ["config:read"], "resources": ["*"]}]}"#),
            400, BAD, Some("statements[0].effect"), "maybe"),
        case("statement missing its actions", "POST", "/v1/policies",
            J(r#"{"name": "p2", "statements": [{"effect": "allow", "resources": ["*"]}]}"#),
            400, BAD, Some("statements[0].actions"), "missing field \"actions\""),
        case("unknown field in a statement", "POST", "/v1/policies",
            J(r#"{"name": "p2", "statements": [{"effect": "allow", "actions": ["config:read"], "resources": ["*"], "condition": {}}]}"#),
            400, BAD, Some("statements[0].condition"), "unknown field \"condition\""),
        case("unknown policy variable", "POST", "/v1/policies",
            J(r#"{"name": "p2", "statements": [{"effect": "allow", "actions": ["config:read"], "resources": ["fleet:device/${device.nope}"]}]}"#),
            400, BAD, Some("statements[0].resources[0]"), "device.nope"),
        case("stale policy version", "PUT", "/v1/policies/{policy}",
            J(r#"{"name": "readers", "statements": [{"effect": "allow", "actions": ["config:read"], "resources": ["*"]}], "version": 5}"#),
            409, CONFLICT, Some("version"), "expected version 5"),
        // ------------------------------------------------ policy attachments
        case("attachment to both a group and a certificate", "POST", "/v1/policy-attachments",
            J(r#"{"policy_id": "{policy}", "group_id": "{child}", "certificate_id": "{cert}"}"#),
            400, BAD, Some("certificate_id"), "exactly one of group_id, certificate_id"),
        case("attachment to nothing", "POST", "/v1/policy-attachments",
            J(r#"{"policy_id": "{policy}"}"#), 400, BAD, Some("group_id"),
            "one of group_id or certificate_id is required"),
        case("attachment of an unknown policy", "POST", "/v1/policy-attachments",
            J(r#"{"policy_id": "no-such-policy", "group_id": "{child}"}"#),
            400, BAD, Some("policy_id"), "no-such-policy"),
        case("duplicate attachment", "POST", "/v1/policy-attachments",
            J(r#"{"policy_id": "{policy}", "group_id": "{group}"}"#),
            409, CONFLICT, Some("group_id"), "already attached"),
        // ------------------------------------------------ firmware
        case("firmware version that is not semver", "POST", "/v1/firmware",
            J(r#"{"product": "fw", "version": "1.0", "hardware": ["m1"], "url": "https://x/fw.bin", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "size_bytes": 1}"#),
            400, BAD, Some("version"), "invalid semantic version \"1.0\""),
        case("sha256 that is not hex", "POST", "/v1/firmware",
            J(r#"{"product": "fw", "version": "1.0.0", "hardware": ["m1"], "url": "https://x/fw.bin", "sha256": "xyz", "size_bytes": 1}"#),
            400, BAD, Some("sha256"), "sha256"),
        case("negative size", "POST", "/v1/firmware",
            J(r#"{"product": "fw", "version": "1.0.0", "hardware": ["m1"], "url": "https://x/fw.bin", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "size_bytes": -1}"#),
            400, BAD, Some("size_bytes"), "size_bytes"),
        case("url that is not a URL", "POST", "/v1/firmware",
            J(r#"{"product": "fw", "version": "1.0.0", "hardware": ["m1"], "url": "not a url", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "size_bytes": 1}"#),
            400, BAD, Some("url"), "url"),
        case("duplicate firmware release", "POST", "/v1/firmware",
            J(r#"{"product": "meter-fw", "version": "1.0.0", "hardware": ["m1"], "url": "https://x/fw.bin", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "size_bytes": 1}"#),
            409, CONFLICT, Some("version"), "1.0.0"),
        case("firmware is immutable", "PUT", "/v1/firmware/{firmware}",
            J(r#"{"product": "meter-fw"}"#), 405, "method_not_allowed", None,
            "immutable and do not support PUT"),
        // ------------------------------------------------ rollouts
        case("phase over 100 percent", "POST", "/v1/rollouts",
            J(r#"{"name": "r2", "firmware_id": "{firmware}", "target_group_ids": ["{child}"], "phases": [{"percent": 150}]}"#),
            400, BAD, Some("phases[0].percent"), "100"),
        case("unknown firmware", "POST", "/v1/rollouts",
            J(r#"{"name": "r2", "firmware_id": "no-such-firmware", "target_group_ids": ["{child}"], "phases": [{"percent": 100}]}"#),
            400, BAD, Some("firmware_id"), "no-such-firmware"),
        case("negative max_retries", "POST", "/v1/rollouts",
            J(r#"{"name": "r2", "firmware_id": "{firmware}", "target_group_ids": ["{child}"], "phases": [{"percent": 100}], "max_retries": -1}"#),
            400, BAD, Some("max_retries"), "invalid value"),
        case("unparsable device_timeout", "POST", "/v1/rollouts",
            J(r#"{"name": "r2", "firmware_id": "{firmware}", "target_group_ids": ["{child}"], "phases": [{"percent": 100}], "device_timeout": "soon"}"#),
            400, BAD, Some("device_timeout"), "soon"),
        case("unknown failure action", "POST", "/v1/rollouts",
            J(r#"{"name": "r2", "firmware_id": "{firmware}", "target_group_ids": ["{child}"], "phases": [{"percent": 100}], "failure_threshold": {"percent": 5, "min_devices": 1, "action": "explode"}}"#),
            400, BAD, Some("failure_threshold.action"), "explode"),
        case("unknown rollout state", "PUT", "/v1/rollouts/{rollout}",
            J(r#"{"name": "r1", "target_group_ids": ["{child}"], "phases": [{"percent": 100}], "state": "sleeping", "version": 1}"#),
            400, BAD, Some("state"), "sleeping"),
        // ------------------------------------------------ certificate authorities
        case("unknown key algorithm", "POST", "/v1/certificate-authorities",
            J(r#"{"name": "ca2", "key_algorithm": "RSA_1024"}"#),
            400, BAD, Some("key_algorithm"), "RSA_1024"),
        case("validity of zero days", "POST", "/v1/certificate-authorities",
            J(r#"{"name": "ca2", "validity_days": 0}"#), 400, BAD, Some("validity_days"), "validity_days"),
        case("certificate that is not PEM", "POST", "/v1/certificate-authorities",
            J(r#"{"name": "ca2", "certificate_pem": "hello", "private_key_pem": "hello"}"#),
            400, BAD, Some("certificate_pem"), "PEM"),
        case("import without the private key", "POST", "/v1/certificate-authorities",
            J(r#"{"name": "ca2", "certificate_pem": "{ca_pem}"}"#),
            400, BAD, Some("private_key_pem"), "private_key_pem"),
        case("deleting a CA that issued certificates", "DELETE", "/v1/certificate-authorities/{ca}",
            Body::None, 409, CONFLICT, None, "certificate"),
        // ------------------------------------------------ certificates
        case("CSR that is not PEM", "POST", "/v1/certificates",
            J(r#"{"ca_id": "{ca}", "common_name": "x", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}"#),
            400, BAD, Some("csr_pem"), "csr_pem"),
        case("both a device and a common name", "POST", "/v1/certificates",
            J(r#"{"ca_id": "{ca}", "common_name": "x", "device_id": "{device}"}"#),
            400, BAD, Some("common_name"), "conflicts with device_id"),
        case("certificate from an unknown CA", "POST", "/v1/certificates",
            J(r#"{"ca_id": "no-such-ca", "common_name": "x"}"#),
            400, BAD, Some("ca_id"), "no-such-ca"),
        case("unknown certificate status", "PUT", "/v1/certificates/{cert}",
            J(r#"{"status": "lost", "version": 1}"#), 400, BAD, Some("status"), "lost"),
        case("revoked certificates stay revoked", "PUT", "/v1/certificates/{revoked}",
            J(r#"{"status": "active", "version": 2}"#), 409, CONFLICT, Some("status"),
            "revocation is permanent"),
        // ------------------------------------------------ enrollments
        case("negative max_devices", "POST", "/v1/enrollments",
            J(r#"{"name": "e2", "ca_id": "{ca}", "group_id": "{child}", "max_devices": -1}"#),
            400, BAD, Some("max_devices"), "invalid value"),
        case("enrollment into an unknown group", "POST", "/v1/enrollments",
            J(r#"{"name": "e2", "ca_id": "{ca}", "group_id": "no-such-group"}"#),
            400, BAD, Some("group_id"), "no-such-group"),
        case("unknown name template placeholder", "POST", "/v1/enrollments",
            J(r#"{"name": "e2", "ca_id": "{ca}", "group_id": "{child}", "name_template": "meter-{sn}"}"#),
            400, BAD, Some("name_template"), "unknown placeholder \"{sn}\""),
        case("enabled of the wrong type", "POST", "/v1/enrollments",
            J(r#"{"name": "e2", "ca_id": "{ca}", "group_id": "{child}", "enabled": "yes"}"#),
            400, BAD, Some("enabled"), "invalid type"),
        case("stale enrollment version", "PUT", "/v1/enrollments/{enrollment}",
            J(r#"{"name": "e1", "ca_id": "{ca}", "group_id": "{child}", "version": 4}"#),
            409, CONFLICT, Some("version"), "expected version 4"),
    ]
}

fn oversized_body() -> Vec<u8> {
    let mut body = br#"{"name": "big", "description": ""#.to_vec();
    body.resize(body.len() + 8 * 1024 * 1024, b'x');
    body.extend_from_slice(br#""}"#);
    body
}

/// The ids the catalogue refers to.
struct Fixture {
    ids: BTreeMap<&'static str, String>,
}

impl Fixture {
    fn fill(&self, template: &str) -> String {
        let mut s = template.to_owned();
        for (k, v) in &self.ids {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }
}

async fn created(s: &TestServer, path: &str, body: Value) -> Value {
    let (status, json) = send(s.post(path, &body)).await;
    assert_eq!(status, 201, "POST {path} {body}: {json}");
    json
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn fixture(s: &TestServer) -> Fixture {
    let mut ids = BTreeMap::new();
    let root = created(s, "/v1/device-groups", json!({"name": "root"})).await;
    let child = created(
        s,
        "/v1/device-groups",
        json!({"name": "meters", "parent_id": root["id"]}),
    )
    .await;
    let device = created(
        s,
        "/v1/devices",
        json!({"name": "meter-1", "hardware": "m1", "group_ids": [child["id"]]}),
    )
    .await;
    let policy = created(
        s,
        "/v1/policies",
        json!({"name": "readers", "statements": [
            {"effect": "allow", "actions": ["config:read"], "resources": ["fleet:device/${device.id}"]}
        ]}),
    )
    .await;
    let attachment = created(
        s,
        "/v1/policy-attachments",
        json!({"policy_id": policy["id"], "group_id": root["id"]}),
    )
    .await;
    let firmware = created(
        s,
        "/v1/firmware",
        json!({"product": "meter-fw", "version": "1.0.0", "hardware": ["m1"],
               "url": "https://fw.example.com/meter-fw.bin",
               "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
               "size_bytes": 1024}),
    )
    .await;
    let rollout = created(
        s,
        "/v1/rollouts",
        json!({"name": "r1", "firmware_id": firmware["id"], "target_group_ids": [child["id"]],
               "phases": [{"percent": 100}], "state": "paused"}),
    )
    .await;
    let ca = created(s, "/v1/certificate-authorities", json!({"name": "ca"})).await;
    let cert = created(
        s,
        "/v1/certificates",
        json!({"ca_id": ca["id"], "device_id": device["id"]}),
    )
    .await;
    let revoked = created(
        s,
        "/v1/certificates",
        json!({"ca_id": ca["id"], "common_name": "old"}),
    )
    .await;
    let (status, body) = send(s.put(
        &format!("/v1/certificates/{}", id(&revoked)),
        &json!({"status": "revoked", "revocation_reason": "superseded", "version": 1}),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let enrollment = created(
        s,
        "/v1/enrollments",
        json!({"name": "e1", "ca_id": ca["id"], "group_id": child["id"]}),
    )
    .await;
    ids.insert("group", id(&root));
    ids.insert("child", id(&child));
    ids.insert("device", id(&device));
    ids.insert("policy", id(&policy));
    ids.insert("attachment", id(&attachment));
    ids.insert("firmware", id(&firmware));
    ids.insert("rollout", id(&rollout));
    ids.insert("ca", id(&ca));
    // As a JSON string's content (newlines escaped).
    let pem = serde_json::to_string(&ca["certificate_pem"]).unwrap();
    ids.insert("ca_pem", pem[1..pem.len() - 1].to_owned());
    ids.insert("cert", id(&cert));
    ids.insert("revoked", id(&revoked));
    ids.insert("enrollment", id(&enrollment));
    Fixture { ids }
}

/// Everything a write could change: every list, every policy's version
/// history, and the audit log.
async fn snapshot(s: &TestServer, data_dir: &std::path::Path) -> Value {
    let mut snap = serde_json::Map::new();
    for collection in [
        "/v1/device-groups",
        "/v1/devices",
        "/v1/policies",
        "/v1/policy-attachments",
        "/v1/firmware",
        "/v1/rollouts",
        "/v1/certificate-authorities",
        "/v1/certificates",
        "/v1/enrollments",
    ] {
        let (status, page) = send(s.get(&format!("{collection}?limit=1000"))).await;
        assert_eq!(status, 200, "{page}");
        if collection == "/v1/policies" {
            for p in page["items"].as_array().unwrap() {
                let path = format!("/v1/policies/{}/versions", p["id"].as_str().unwrap());
                let (_, versions) = send(s.get(&path)).await;
                snap.insert(path, versions);
            }
        }
        snap.insert(collection.to_owned(), page);
    }
    let audit: (i64, Option<i64>) = if common::pg::backend_is_postgres() {
        let url = common::pg::database_for(data_dir).await;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT count(*), max(seq) FROM audit_log", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    } else {
        let db = rusqlite::Connection::open_with_flags(
            data_dir.join("fleetd.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row("SELECT count(*), max(seq) FROM audit_log", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    snap.insert("audit".into(), json!([audit.0, audit.1]));
    Value::Object(snap)
}

#[tokio::test]
async fn malformed_requests_get_exact_4xx_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let fx = fixture(&s).await;
    let before = snapshot(&s, dir.path()).await;
    assert!(
        before["audit"][0].as_i64().unwrap() >= 12,
        "{}",
        before["audit"]
    );

    let cases = catalogue();
    assert!(cases.len() >= 30);
    let kinds = [
        "device-groups",
        "devices",
        "policies",
        "policy-attachments",
        "firmware",
        "rollouts",
        "certificate-authorities",
        "certificates",
        "enrollments",
    ];
    for kind in kinds {
        assert!(
            cases
                .iter()
                .any(|c| c.path.starts_with(&format!("/v1/{kind}"))),
            "no case for {kind}"
        );
    }

    let mut failures = Vec::new();
    for c in &cases {
        let path = fx.fill(c.path);
        let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
        let mut req = s.http.request(method, s.url(&path)).bearer_auth(&s.token);
        req = match &c.body {
            Body::None => req,
            Body::Json(text) => req
                .header("content-type", "application/json")
                .body(fx.fill(text)),
            Body::Raw(content_type, bytes) => req
                .header("content-type", *content_type)
                .body(bytes.clone()),
        };
        let (status, body) = send(req).await;
        let mut problems = Vec::new();
        if status.as_u16() != c.status {
            problems.push(format!("status {status}, want {}", c.status));
        }
        if body["error"] != c.error {
            problems.push(format!("error {}, want {}", body["error"], c.error));
        }
        let field = body["field"].as_str();
        if field != c.field {
            problems.push(format!("field {:?}, want {:?}", field, c.field));
        }
        let message = body["message"].as_str().unwrap_or("");
        if !message.contains(c.message) {
            problems.push(format!("message lacks {:?}", c.message));
        }
        if let (Some(f), 400) = (c.field, c.status) {
            // A validation message names the field, for people reading it
            // (a conflict's names the object it conflicts with instead).
            let stem = f.split(['.', '[']).next().unwrap();
            if !message.contains(stem) {
                problems.push(format!("message does not name {stem:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({} {}): {}\n    got {status} {body}",
                c.what,
                c.method,
                c.path,
                problems.join("; ")
            ));
        }
        let after = snapshot(&s, dir.path()).await;
        if after != before {
            failures.push(format!("{}: the request wrote something", c.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    s.stop().await;
}

/// Found by schemathesis (`unsupported_method`): the 405 of the immutable
/// objects (firmware, policy attachments) lacked the `Allow` header that
/// RFC 9110 requires and that axum's own 405s carry.
#[tokio::test]
async fn every_405_names_the_allowed_methods() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let fx = fixture(&s).await;
    for (method, path, allow) in [
        ("PUT", "/v1/firmware/{firmware}", "GET,HEAD,DELETE"),
        ("PATCH", "/v1/firmware/{firmware}", "GET,HEAD,DELETE"),
        (
            "PUT",
            "/v1/policy-attachments/{attachment}",
            "GET,HEAD,DELETE",
        ),
        (
            "PATCH",
            "/v1/policy-attachments/{attachment}",
            "GET,HEAD,DELETE",
        ),
        ("PATCH", "/v1/devices", "GET,HEAD,POST"),
        ("POST", "/v1/device-groups/{group}", "GET,HEAD,PUT,DELETE"),
    ] {
        let path = fx.fill(path);
        let resp = s
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                s.url(&path),
            )
            .bearer_auth(&s.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        let got = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut got: Vec<String> = got
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        got.sort();
        let mut want: Vec<&str> = allow.split(',').collect();
        want.sort();
        assert_eq!(got, want, "{method} {path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{body}");
    }
    s.stop().await;
}
