//! Security of the admin API and of fleetd's logs, against the real binary:
//! - every operation in `/openapi.json` that the document does not mark
//!   public refuses a missing, a wrong and a malformed bearer token with
//!   401 and the JSON error body, and writes nothing;
//! - after everything a test run does with secrets (a generated CA, an
//!   imported CA with its private key, certificates with fleetd-generated
//!   keys and from CSRs, requests that carry keys and tokens in the wrong
//!   places), fleetd's log (at `debug`) contains neither the admin token
//!   nor any private key.
//!
//! The device API's refusals (unknown CA, expired, revoked, policy-denied)
//! are in `device_api.rs`.

mod process;

use std::collections::BTreeSet;

use chrono::Utc;
use fleetd::domain::pki::{self, KeyAlgorithm, NewCa, Serial};
use process::Process;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::Method;
use serde_json::{json, Value};

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

struct Api<'a> {
    fleetd: &'a Process,
    http: Client,
}

impl<'a> Api<'a> {
    fn new(fleetd: &'a Process) -> Self {
        Api {
            fleetd,
            http: Client::new(),
        }
    }

    fn request(&self, method: &str, path: &str) -> RequestBuilder {
        self.http.request(
            Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
            format!("{}{path}", self.fleetd.base),
        )
    }

    /// A request with the right token; returns status and JSON body.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.request(method, path).bearer_auth(&self.fleetd.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        split(req)
    }
}

fn split(req: RequestBuilder) -> (u16, Value) {
    let resp = req.send().expect("request reaches fleetd");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Every documented (method, path, public?) of the admin API.
fn operations(api: &Api) -> Vec<(String, String, bool)> {
    let (status, doc) = api.call("get", "/openapi.json", None);
    assert_eq!(status, 200, "{doc}");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            // `security: [{}]` on an operation means "no credentials".
            let public = op["security"]
                .as_array()
                .is_some_and(|reqs| reqs.iter().any(|r| r == &json!({})));
            ops.push((method.to_string(), path.clone(), public));
        }
    }
    ops
}

/// Sends every protected operation with each kind of bad credentials and
/// checks the refusal; returns how many requests were refused.
fn assert_all_refused(api: &Api, ops: &[(String, String, bool)]) -> usize {
    let wrong = "0".repeat(api.fleetd.token.len());
    let prefix = api.fleetd.token[..api.fleetd.token.len() - 1].to_owned();
    let longer = format!("{}0", api.fleetd.token);
    let bad_headers: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("wrong", Some(format!("Bearer {wrong}"))),
        ("a prefix of the token", Some(format!("Bearer {prefix}"))),
        (
            "the token plus a character",
            Some(format!("Bearer {longer}")),
        ),
        ("empty bearer", Some("Bearer ".to_owned())),
        (
            "basic scheme with the token",
            Some(format!("Basic {}", api.fleetd.token)),
        ),
        ("the token without a scheme", Some(api.fleetd.token.clone())),
    ];
    let mut refused = 0;
    for (method, path, public) in ops {
        if *public {
            continue;
        }
        let path = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
        for (what, header) in &bad_headers {
            let mut req = api.request(method, &path);
            if let Some(h) = header {
                req = req.header("Authorization", h);
            }
            if method == "post" || method == "put" {
                // A body that would be valid enough to be acted on.
                req = req.json(&json!({"name": "intruder", "version": 1}));
            }
            let resp = req.send().unwrap();
            let status = resp.status().as_u16();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = resp
                .json()
                .unwrap_or_else(|e| panic!("{method} {path} ({what}): body not JSON: {e}"));
            assert_eq!(status, 401, "{method} {path} with {what} token: {body}");
            assert_eq!(body["error"], "unauthorized", "{method} {path}: {body}");
            assert!(body["field"].is_null(), "{method} {path}: {body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("bearer token"),
                "{method} {path} ({what}): {body}"
            );
            assert!(!message.contains(&api.fleetd.token), "{body}");
            assert_eq!(
                challenge.as_deref(),
                Some(r#"Bearer realm="fleetd""#),
                "{method} {path} ({what})"
            );
            refused += 1;
        }
    }
    refused
}

#[test]
fn every_admin_route_refuses_missing_and_wrong_tokens() {
    let fleetd = Process::start("info");
    let api = Api::new(&fleetd);
    let ops = operations(&api);
    let protected: BTreeSet<_> = ops
        .iter()
        .filter(|(_, _, public)| !public)
        .map(|(m, p, _)| format!("{} {p}", m.to_uppercase()))
        .collect();
    let public: BTreeSet<_> = ops
        .iter()
        .filter(|(_, _, public)| *public)
        .map(|(m, p, _)| format!("{} {p}", m.to_uppercase()))
        .collect();
    // Only the health check is public; the document itself and the metrics
    // are not (they describe the deployment).
    assert_eq!(
        public,
        BTreeSet::from(["GET /healthz".to_owned()]),
        "public operations"
    );
    for must in [
        "GET /openapi.json",
        "GET /metrics",
        "POST /v1/device-groups",
        "DELETE /v1/certificate-authorities/{id}",
        "GET /v1/certificate-authorities/{id}/crl",
        "PUT /v1/rollouts/{id}",
    ] {
        assert!(protected.contains(must), "{must} not enumerated");
    }
    assert!(protected.len() >= 45, "{protected:?}");

    let refused = assert_all_refused(&api, &ops);
    assert_eq!(refused, protected.len() * 7);

    // The public route really is public.
    let (status, body) = split(api.request("get", "/healthz"));
    assert_eq!(status, 200, "{body}");
    // Unknown routes do not reveal that they are unknown to anonymous
    // callers.
    let (status, body) = split(api.request("get", "/v1/secret-things"));
    assert_eq!(status, 401, "{body}");
    let (status, body) = split(api.request("get", "/openapi.json/../v1/devices"));
    assert_eq!(status, 401, "{body}");

    // Nothing was written by the refused requests.
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
        let (status, body) = api.call("get", collection, None);
        assert_eq!(status, 200, "{collection}: {body}");
        assert_eq!(body["items"], json!([]), "{collection}: {body}");
    }
    fleetd.stop();
}

/// A PEM's base64 lines, each of which must not appear in the log either
/// (a log line could hold the key without its armour).
fn key_material_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

#[test]
fn logs_hold_neither_the_admin_token_nor_private_keys() {
    // `debug`, so that whatever fleetd would only say when asked to be
    // verbose is checked too.
    let fleetd = Process::start("debug,hyper=info,h2=info,rustls=info,reqwest=info");
    let api = Api::new(&fleetd);
    let ops = operations(&api);
    assert_all_refused(&api, &ops);

    let mut secrets: Vec<String> = Vec::new();

    // A CA generated inside fleetd (its key never leaves it).
    let (status, generated) = api.call(
        "post",
        "/v1/certificate-authorities",
        Some(json!({"name": "generated", "key_algorithm": "ED25519"})),
    );
    assert_eq!(status, 201, "{generated}");
    assert!(generated.get("private_key_pem").is_none(), "{generated}");

    // A CA imported with its private key.
    let material = pki::generate_ca(
        &NewCa {
            common_name: "factory CA",
            organization: Some("Acme"),
            validity_days: 3650,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        Serial::random(&mut rand::rng()),
        Utc::now(),
    )
    .unwrap();
    secrets.extend(key_material_lines(&material.private_key_pem));
    // First with a broken certificate: the error must not echo the key.
    let (status, body) = api.call(
        "post",
        "/v1/certificate-authorities",
        Some(json!({
            "name": "factory",
            "certificate_pem": "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n",
            "private_key_pem": material.private_key_pem,
        })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("PRIVATE KEY"), "{body}");
    // A key that does not match the certificate.
    let other = pki::generate_ca(
        &NewCa {
            common_name: "other CA",
            organization: None,
            validity_days: 365,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        Serial::random(&mut rand::rng()),
        Utc::now(),
    )
    .unwrap();
    secrets.extend(key_material_lines(&other.private_key_pem));
    let (status, body) = api.call(
        "post",
        "/v1/certificate-authorities",
        Some(json!({
            "name": "mismatch",
            "certificate_pem": material.certificate_pem,
            "private_key_pem": other.private_key_pem,
        })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("PRIVATE KEY"), "{body}");
    // Then for real.
    let (status, imported) = api.call(
        "post",
        "/v1/certificate-authorities",
        Some(json!({
            "name": "factory",
            "certificate_pem": material.certificate_pem,
            "private_key_pem": material.private_key_pem,
        })),
    );
    assert_eq!(status, 201, "{imported}");
    assert!(imported.get("private_key_pem").is_none(), "{imported}");
    // Reads never return a CA key.
    for ca in [&generated, &imported] {
        let (status, read) = api.call(
            "get",
            &format!("/v1/certificate-authorities/{}", ca["id"].as_str().unwrap()),
            None,
        );
        assert_eq!(status, 200);
        assert!(!read.to_string().contains("PRIVATE KEY"), "{read}");
    }

    // Certificates with fleetd-generated keys, from both CAs and both
    // algorithms; the key is in the create response only.
    for (ca, alg) in [(&generated, "ECDSA_P256"), (&imported, "ED25519")] {
        let (status, cert) = api.call(
            "post",
            "/v1/certificates",
            Some(json!({
                "ca_id": ca["id"],
                "common_name": format!("bench-{alg}"),
                "key_algorithm": alg,
            })),
        );
        assert_eq!(status, 201, "{cert}");
        let key = cert["private_key_pem"].as_str().expect("generated key");
        assert!(key.contains("PRIVATE KEY"));
        secrets.extend(key_material_lines(key));
        let (status, read) = api.call(
            "get",
            &format!("/v1/certificates/{}", cert["id"].as_str().unwrap()),
            None,
        );
        assert_eq!(status, 200);
        assert!(read.get("private_key_pem").is_none(), "{read}");
        let (status, list) = api.call("get", "/v1/certificates", None);
        assert_eq!(status, 200);
        assert!(!list.to_string().contains("PRIVATE KEY"));
    }

    // A certificate from a CSR (the device keeps its key).
    let device_key = rcgen::KeyPair::generate().unwrap();
    secrets.extend(key_material_lines(&device_key.serialize_pem()));
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&device_key)
        .unwrap()
        .pem()
        .unwrap();
    let (status, cert) = api.call(
        "post",
        "/v1/certificates",
        Some(json!({"ca_id": imported["id"], "common_name": "from-csr", "csr_pem": csr})),
    );
    assert_eq!(status, 201, "{cert}");

    // Secrets sent where they do not belong, as a confused client might:
    // a private key as a CSR, as a key algorithm, in an unknown field.
    let stray_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    secrets.extend(key_material_lines(&stray_key));
    for body in [
        json!({"ca_id": imported["id"], "common_name": "x", "csr_pem": stray_key}),
        json!({"ca_id": imported["id"], "common_name": "x", "key_algorithm": stray_key}),
        json!({"ca_id": imported["id"], "common_name": "x", "private_key_pem": stray_key}),
    ] {
        let (status, body) = api.call("post", "/v1/certificates", Some(body));
        assert_eq!(status, 400, "{body}");
    }
    let (status, body) = api.call(
        "post",
        "/v1/certificate-authorities",
        Some(json!({"name": "bad", "certificate_pem": stray_key, "private_key_pem": stray_key})),
    );
    assert_eq!(status, 400, "{body}");
    // The admin token where it does not belong: in a body field.
    let (status, body) = api.call(
        "post",
        "/v1/device-groups",
        Some(json!({"name": "g", "description": 5, "tags": {"t": fleetd.token}})),
    );
    assert_eq!(status, 400, "{body}");

    // Revocation and a CRL, deletion of a CA with its sealed key.
    let (status, body) = api.call(
        "put",
        &format!("/v1/certificates/{}", cert["id"].as_str().unwrap()),
        Some(json!({"status": "revoked", "revocation_reason": "key_compromise", "version": 1})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = api.call(
        "get",
        &format!(
            "/v1/certificate-authorities/{}/crl",
            imported["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(status, 200);

    let token = fleetd.token.clone();
    let log = fleetd.stop();
    assert!(log.contains("admin API listening"), "{log}");
    assert!(
        log.lines().count() > 50,
        "the log is suspiciously short:\n{log}"
    );
    assert!(!log.contains(&token), "the admin token is in the log");
    assert!(
        !log.contains("PRIVATE KEY"),
        "a private key PEM is in the log"
    );
    for line in &secrets {
        assert!(
            !log.contains(line.as_str()),
            "private key material is in the log: {line}"
        );
    }
}
