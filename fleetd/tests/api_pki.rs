//! The PKI part of the admin API (certificate authorities, certificates,
//! CRLs, enrollments) over real HTTP against an in-process fleetd.
//!
//! Every response body is checked for private key material: a CA's key
//! never leaves fleetd, and a generated device key appears exactly once,
//! in the create response of its certificate.

mod common;

use common::{assert_error, send, TestServer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::FromDer;

const CAS: &str = "/v1/certificate-authorities";
const CERTS: &str = "/v1/certificates";
const ENROLLMENTS: &str = "/v1/enrollments";

async fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    (dir, server)
}

fn path(collection: &str, id: &Value) -> String {
    format!("{collection}/{}", id.as_str().unwrap())
}

/// No private key material in `body`.
#[track_caller]
fn assert_no_key(body: &Value) {
    let text = body.to_string();
    // A PEM key block (its header followed by a newline); error messages
    // may name the expected header, which is fine.
    assert!(
        !text.contains("PRIVATE KEY-----\\n"),
        "private key in a response: {text}"
    );
    assert!(body.get("private_key_pem").is_none(), "{text}");
}

/// Sends, asserts `status` and that the body carries no private key.
async fn call(req: reqwest::RequestBuilder, status: StatusCode) -> Value {
    let (got, body) = send(req).await;
    assert_eq!(got, status, "{body}");
    assert_no_key(&body);
    body
}

async fn create_ca(s: &TestServer, body: Value) -> Value {
    call(s.post(CAS, &body), StatusCode::CREATED).await
}

async fn create_group(s: &TestServer, name: &str) -> Value {
    s.create_group(json!({ "name": name })).await
}

fn csr(cn: &str) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key)
}

fn der(pem: &str) -> Vec<u8> {
    parse_x509_pem(pem.as_bytes()).unwrap().1.contents
}

/// Asserts `leaf_pem` was issued by `ca_pem`: issuer = CA subject and the
/// signature verifies with the CA's public key. Returns the leaf's DER.
#[track_caller]
fn assert_chains(leaf_pem: &str, ca_pem: &str) -> Vec<u8> {
    let leaf_der = der(leaf_pem);
    let ca_der = der(ca_pem);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
    leaf.verify_signature(Some(ca.public_key()))
        .expect("the certificate's signature verifies with the CA's key");
    assert!(!leaf.is_ca());
    leaf_der
}

fn leaf_spki(pem: &str) -> Vec<u8> {
    let d = der(pem);
    let (_, cert) = X509Certificate::from_der(&d).unwrap();
    cert.public_key().raw.to_vec()
}

/// A CA made outside fleetd, to import: P-384, with an organization.
fn external_ca() -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(DnType::CommonName, "Factory Root");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Acme");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2090, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn generated_ca_round_trip() {
    let (_dir, s) = server().await;
    let resp = s
        .post(
            CAS,
            &json!({"name": "fleet-root", "description": "Root", "organization": "Acme",
                    "validity_days": 730}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let ca: Value = resp.json().await.unwrap();
    assert_no_key(&ca);
    assert_eq!(location, path(CAS, &ca["id"]));
    assert_eq!(ca["name"], "fleet-root");
    assert_eq!(ca["description"], "Root");
    assert_eq!(ca["common_name"], "fleet-root", "defaults to the name");
    assert_eq!(ca["organization"], "Acme");
    assert_eq!(ca["key_algorithm"], "ECDSA_P256");
    assert_eq!(ca["validity_days"], 730);
    assert_eq!(ca["imported"], false);
    assert_eq!(ca["version"], 1);
    let cert_pem = ca["certificate_pem"].as_str().unwrap();
    assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let cert_der = der(cert_pem);
    assert_eq!(
        ca["fingerprint"],
        fleetd::domain::pki::fingerprint(&cert_der)
    );
    let (_, parsed) = X509Certificate::from_der(&cert_der).unwrap();
    assert!(parsed.is_ca());
    assert_eq!(ca["serial"], hex::encode(parsed.raw_serial()));
    let not_before =
        chrono::DateTime::parse_from_rfc3339(ca["not_before"].as_str().unwrap()).unwrap();
    let not_after =
        chrono::DateTime::parse_from_rfc3339(ca["not_after"].as_str().unwrap()).unwrap();
    assert_eq!((not_after - not_before).num_days(), 730);
    assert_eq!(
        parsed.validity().not_after.timestamp(),
        not_after.timestamp()
    );

    // Ed25519 and an explicit common name.
    let ed = create_ca(
        &s,
        json!({"name": "ed", "common_name": "Ed Root", "key_algorithm": "ED25519"}),
    )
    .await;
    assert_eq!(ed["key_algorithm"], "ED25519");
    assert_eq!(ed["common_name"], "Ed Root");
    assert_eq!(ed["validity_days"], 3650);
    assert_eq!(ed["organization"], Value::Null);

    assert_eq!(call(s.get(&location), StatusCode::OK).await, ca);
    let list = call(s.get(CAS), StatusCode::OK).await;
    assert_eq!(
        list,
        json!({"items": [ca.clone(), ed.clone()], "next_page_token": null})
    );
    let page = call(s.get(&format!("{CAS}?limit=1")), StatusCode::OK).await;
    assert_eq!(page["items"], json!([ca.clone()]));
    let token = page["next_page_token"].as_str().unwrap();
    let page = call(
        s.get(&format!("{CAS}?limit=1&page_token={token}")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page, json!({"items": [ed], "next_page_token": null}));

    // Only name and description change.
    let updated = call(
        s.put(
            &location,
            &json!({"name": "fleet-root-2", "description": "", "version": 1}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["name"], "fleet-root-2");
    assert_eq!(updated["certificate_pem"], ca["certificate_pem"]);
    assert_eq!(updated["created_at"], ca["created_at"]);

    let body = call(
        s.put(
            &location,
            &json!({"name": "x", "validity_days": 3, "version": 2}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_error(&body, "invalid_argument", Some("validity_days"));

    let body = call(
        s.put(&location, &json!({"name": "x", "version": 1})),
        StatusCode::CONFLICT,
    )
    .await;
    let msg = assert_error(&body, "conflict", Some("version"));
    assert!(
        msg.contains("is at version 2, but the request expected version 1"),
        "{msg}"
    );
    assert_eq!(body["expected_version"], 1);
    assert_eq!(body["current_version"], 2);

    let body = call(
        s.delete(&format!("{location}?version=1")),
        StatusCode::CONFLICT,
    )
    .await;
    assert_error(&body, "conflict", Some("version"));
    call(
        s.delete(&format!("{location}?version=2")),
        StatusCode::NO_CONTENT,
    )
    .await;
    let body = call(s.get(&location), StatusCode::NOT_FOUND).await;
    let msg = assert_error(&body, "not_found", None);
    assert_eq!(
        msg,
        format!(
            "certificate authority {} not found",
            ca["id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn imported_ca_round_trip_signs_and_never_returns_its_key() {
    let (dir, s) = server().await;
    let (cert_pem, key_pem) = external_ca();
    let ca = create_ca(
        &s,
        json!({"name": "factory", "certificate_pem": cert_pem, "private_key_pem": key_pem}),
    )
    .await;
    assert_eq!(ca["imported"], true);
    assert_eq!(ca["common_name"], "Factory Root");
    assert_eq!(ca["organization"], "Acme");
    assert_eq!(ca["key_algorithm"], "ECDSA_P384");
    assert_eq!(ca["not_before"], "2020-01-01T00:00:00.000Z");
    assert_eq!(ca["not_after"], "2090-01-01T00:00:00.000Z");
    assert_eq!(ca["validity_days"], 25568);
    assert_eq!(
        ca["certificate_pem"].as_str().unwrap().trim(),
        cert_pem.trim()
    );
    assert_eq!(
        ca["fingerprint"],
        fleetd::domain::pki::fingerprint(&der(&cert_pem))
    );
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for body in [
        call(s.get(&path(CAS, &ca["id"])), StatusCode::OK).await,
        call(s.get(CAS), StatusCode::OK).await,
    ] {
        assert!(!body.to_string().contains(&key_body[..40]));
    }

    // The imported key signs.
    let (csr_pem, device_key) = csr("ignored");
    let cert = call(
        s.post(
            CERTS,
            &json!({"ca_id": ca["id"], "csr_pem": csr_pem, "common_name": "bench-7"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    assert_chains(cert["certificate_pem"].as_str().unwrap(), &cert_pem);
    assert_eq!(
        leaf_spki(cert["certificate_pem"].as_str().unwrap()),
        device_key.subject_public_key_info()
    );

    // At rest, neither the database nor its WAL holds a key in clear.
    if common::pg::backend_is_postgres() {
        // The state is in PostgreSQL; the store tests check sealed keys there.
        return;
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".db") || name.contains("sqlite") {
            found.push(name);
            let bytes = std::fs::read(&p).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("PRIVATE KEY"), "a key in clear in {p:?}");
            assert!(
                !text.contains(&key_body[..40]),
                "the imported key in clear in {p:?}"
            );
        }
    }
    assert!(
        !found.is_empty(),
        "no database file found in the data directory"
    );
}

#[tokio::test]
async fn ca_create_errors_name_the_field() {
    let (_dir, s) = server().await;
    let (cert_pem, key_pem) = external_ca();
    let (other_cert, other_key) = external_ca();
    let leaf = {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["leaf".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let cases = [
        (
            json!({"name": "a", "certificate_pem": cert_pem}),
            "private_key_pem",
            "required with certificate_pem",
        ),
        (
            json!({"name": "a", "private_key_pem": key_pem}),
            "certificate_pem",
            "required with private_key_pem",
        ),
        (
            json!({"name": "a", "certificate_pem": cert_pem, "private_key_pem": other_key}),
            "private_key_pem",
            "does not match",
        ),
        (
            json!({"name": "a", "certificate_pem": other_cert, "private_key_pem": key_pem}),
            "private_key_pem",
            "does not match",
        ),
        (
            json!({"name": "a", "certificate_pem": "hello", "private_key_pem": key_pem}),
            "certificate_pem",
            "not a PEM document",
        ),
        (
            json!({"name": "a", "certificate_pem": leaf.0, "private_key_pem": leaf.1}),
            "certificate_pem",
            "not a CA certificate",
        ),
        (
            json!({"name": "a", "certificate_pem": cert_pem, "private_key_pem": "junk"}),
            "private_key_pem",
            "not a PEM document",
        ),
        (
            json!({"name": "a", "certificate_pem": cert_pem, "private_key_pem": key_pem, "validity_days": 10}),
            "validity_days",
            "not allowed for an imported CA",
        ),
        (
            json!({"name": "a", "certificate_pem": cert_pem, "private_key_pem": key_pem, "key_algorithm": "ED25519"}),
            "key_algorithm",
            "not allowed for an imported CA",
        ),
        (
            json!({"name": "a", "key_algorithm": "RSA"}),
            "key_algorithm",
            "unknown key algorithm \"RSA\" (use ECDSA_P256 or ED25519)",
        ),
        (
            json!({"name": "a", "validity_days": 0}),
            "validity_days",
            "must be between 1 and 36500 days, got 0",
        ),
        (
            json!({"name": "a", "common_name": ""}),
            "common_name",
            "must not be empty",
        ),
        (json!({"name": "a b"}), "name", "invalid character"),
        (
            json!({"name": "a", "key_size": 2048}),
            "key_size",
            "unknown field",
        ),
        (
            json!({"name": "a", "validity_days": "ten"}),
            "validity_days",
            "invalid type",
        ),
    ];
    for (body, field, fragment) in cases {
        let resp = call(s.post(CAS, &body), StatusCode::BAD_REQUEST).await;
        let msg = assert_error(&resp, "invalid_argument", Some(field));
        assert!(msg.contains(fragment), "{field}/{fragment}: {msg}");
        // Error messages never echo a key back.
        for key in [&key_pem, &other_key] {
            let first_line = key.lines().nth(1).unwrap();
            assert!(!msg.contains(first_line), "{msg}");
        }
    }

    create_ca(&s, json!({"name": "root"})).await;
    let body = call(s.post(CAS, &json!({"name": "root"})), StatusCode::CONFLICT).await;
    let msg = assert_error(&body, "conflict", Some("name"));
    assert!(
        msg.starts_with("name: \"root\" is already used by another certificate authority"),
        "{msg}"
    );
    // Nothing half-created.
    let list = call(s.get(CAS), StatusCode::OK).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn certificate_from_a_real_csr_chains_to_the_ca() {
    let (_dir, s) = server().await;
    let ca = create_ca(&s, json!({"name": "root", "validity_days": 100})).await;
    let ca_pem = ca["certificate_pem"].as_str().unwrap();
    let (csr_pem, device_key) = csr("whatever-the-device-claims");

    let resp = s
        .post(
            CERTS,
            &json!({"ca_id": ca["id"], "csr_pem": csr_pem, "common_name": "sensor-0001",
                    "validity_days": 30}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let cert: Value = resp.json().await.unwrap();
    assert_no_key(&cert);
    assert_eq!(location, path(CERTS, &cert["id"]));
    assert_eq!(cert["ca_id"], ca["id"]);
    assert_eq!(cert["common_name"], "sensor-0001");
    assert_eq!(cert["device_id"], Value::Null);
    assert_eq!(cert["csr_pem"], csr_pem);
    assert_eq!(cert["key_algorithm"], Value::Null);
    assert_eq!(cert["validity_days"], 30);
    assert_eq!(cert["status"], "active");
    assert_eq!(cert["revocation_reason"], Value::Null);
    assert_eq!(cert["version"], 1);

    let pem = cert["certificate_pem"].as_str().unwrap();
    let leaf_der = assert_chains(pem, ca_pem);
    assert_eq!(
        cert["fingerprint"],
        fleetd::domain::pki::fingerprint(&leaf_der)
    );
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    assert_eq!(cert["serial"], hex::encode(leaf.raw_serial()));
    let cn: Vec<_> = leaf
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cn, ["sensor-0001"], "the CSR's subject is ignored");
    assert_eq!(leaf.public_key().raw, device_key.subject_public_key_info());
    let not_before =
        chrono::DateTime::parse_from_rfc3339(cert["not_before"].as_str().unwrap()).unwrap();
    let not_after =
        chrono::DateTime::parse_from_rfc3339(cert["not_after"].as_str().unwrap()).unwrap();
    assert_eq!((not_after - not_before).num_days(), 30);

    assert_eq!(call(s.get(&location), StatusCode::OK).await, cert);
    let list = call(s.get(CERTS), StatusCode::OK).await;
    assert_eq!(list, json!({"items": [cert], "next_page_token": null}));
}

#[tokio::test]
async fn a_generated_key_is_returned_exactly_once() {
    let (_dir, s) = server().await;
    let ca = create_ca(&s, json!({"name": "root"})).await;
    for (alg, expected) in [(None, "ECDSA_P256"), (Some("ED25519"), "ED25519")] {
        let mut body = json!({"ca_id": ca["id"], "common_name": "bench"});
        if let Some(alg) = alg {
            body["key_algorithm"] = json!(alg);
        }
        let resp = s.post(CERTS, &body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let created: Value = resp.json().await.unwrap();
        assert_eq!(created["key_algorithm"], expected);
        assert_eq!(created["csr_pem"], Value::Null);
        let key_pem = created["private_key_pem"].as_str().unwrap();
        assert!(
            key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{key_pem}"
        );
        // The key is the certificate's key.
        let key = KeyPair::from_pem(key_pem).unwrap();
        let cert_pem = created["certificate_pem"].as_str().unwrap();
        assert_eq!(leaf_spki(cert_pem), key.subject_public_key_info());
        assert_chains(cert_pem, ca["certificate_pem"].as_str().unwrap());

        // Never again: not on read, not in a list.
        let read = call(s.get(&path(CERTS, &created["id"])), StatusCode::OK).await;
        let mut without_key = created.clone();
        without_key
            .as_object_mut()
            .unwrap()
            .remove("private_key_pem");
        assert_eq!(read, without_key);
        let list = call(s.get(CERTS), StatusCode::OK).await;
        assert!(!list.to_string().contains(&key_pem[30..80]));
    }
}

#[tokio::test]
async fn revocation_is_terminal_and_in_the_crl_at_once() {
    let (_dir, s) = server().await;
    let ca = create_ca(&s, json!({"name": "root"})).await;
    let ca_der = der(ca["certificate_pem"].as_str().unwrap());
    let (csr_pem, _) = csr("x");
    let cert = call(
        s.post(
            CERTS,
            &json!({"ca_id": ca["id"], "csr_pem": csr_pem, "common_name": "a"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let (csr_b, _) = csr("b");
    let keep = call(
        s.post(
            CERTS,
            &json!({"ca_id": ca["id"], "common_name": "b", "status": "inactive", "csr_pem": csr_b}),
        ),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(keep["status"], "inactive");
    let cert_path = path(CERTS, &cert["id"]);
    let crl_path = format!("{}/crl", path(CAS, &ca["id"]));

    // An empty CRL, signed by the CA.
    let crl = fetch_crl(&s, &crl_path, &ca_der).await;
    assert!(crl.is_empty());

    // Deactivating is reversible and stays off the CRL.
    let inactive = call(
        s.put(&cert_path, &json!({"status": "inactive", "version": 1})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (inactive["status"].clone(), inactive["version"].clone()),
        (json!("inactive"), json!(2))
    );
    assert!(fetch_crl(&s, &crl_path, &ca_der).await.is_empty());
    let active = call(
        s.put(&cert_path, &json!({"status": "active", "version": 2})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(active["version"], 3);

    let revoked = call(
        s.put(
            &cert_path,
            &json!({"status": "revoked", "revocation_reason": "key_compromise", "version": 3}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revocation_reason"], "key_compromise");
    assert_eq!(revoked["version"], 4);
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(call(s.get(&cert_path), StatusCode::OK).await, revoked);

    let crl = fetch_crl(&s, &crl_path, &ca_der).await;
    assert_eq!(
        crl,
        [(cert["serial"].as_str().unwrap().to_owned(), Some(1))]
    );

    // Terminal.
    let body = call(
        s.put(&cert_path, &json!({"status": "active", "version": 4})),
        StatusCode::CONFLICT,
    )
    .await;
    let msg = assert_error(&body, "conflict", Some("status"));
    assert_eq!(
        msg,
        "status: the certificate is revoked and cannot become \"active\" again: revocation is \
         permanent; issue a new certificate instead"
    );
    let body = call(
        s.put(
            &cert_path,
            &json!({"status": "revoked", "revocation_reason": "superseded", "version": 4}),
        ),
        StatusCode::CONFLICT,
    )
    .await;
    assert_error(&body, "conflict", Some("revocation_reason"));
    // Re-applying the same revocation is a no-op.
    let same = call(
        s.put(
            &cert_path,
            &json!({"status": "revoked", "revocation_reason": "key_compromise", "version": 4}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(same, revoked);
    let same = call(
        s.put(&cert_path, &json!({"status": "revoked", "version": 4})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(same, revoked, "no reason given keeps the recorded one");
    let body = call(
        s.put(&cert_path, &json!({"status": "revoked", "version": 3})),
        StatusCode::CONFLICT,
    )
    .await;
    assert_error(&body, "conflict", Some("version"));
    assert_eq!(body["current_version"], 4);

    // Deleting a certificate that was not revoked lists it too.
    call(
        s.delete(&format!("{}?version=1", path(CERTS, &keep["id"]))),
        StatusCode::NO_CONTENT,
    )
    .await;
    let crl = fetch_crl(&s, &crl_path, &ca_der).await;
    assert_eq!(
        crl,
        [
            (cert["serial"].as_str().unwrap().to_owned(), Some(1)),
            (keep["serial"].as_str().unwrap().to_owned(), Some(5)),
        ]
    );

    let body = call(s.get(&format!("{CAS}/nope/crl")), StatusCode::NOT_FOUND).await;
    assert_error(&body, "not_found", None);
}

/// GETs a CRL, checks its media type and its signature, and returns its
/// entries as (serial hex, reason code).
async fn fetch_crl(s: &TestServer, crl_path: &str, ca_der: &[u8]) -> Vec<(String, Option<u8>)> {
    let resp = s.get(crl_path).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-pem-file");
    let text = resp.text().await.unwrap();
    let (_, pem) = parse_x509_pem(text.as_bytes()).unwrap();
    assert_eq!(pem.label, "X509 CRL");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).unwrap();
    let (_, ca) = X509Certificate::from_der(ca_der).unwrap();
    crl.verify_signature(ca.public_key())
        .expect("the CRL is signed by the CA");
    assert_eq!(crl.issuer().as_raw(), ca.subject().as_raw());
    assert!(crl.next_update().is_some());
    assert!(crl.crl_number().is_some());
    crl.iter_revoked_certificates()
        .map(|r| {
            (
                hex::encode(r.raw_serial()),
                r.reason_code().map(|(_, code)| code.0),
            )
        })
        .collect()
}

#[tokio::test]
async fn certificate_errors_name_the_field() {
    let (_dir, s) = server().await;
    let ca = create_ca(&s, json!({"name": "root", "validity_days": 400})).await;
    let id = ca["id"].clone();
    let (csr_pem, _) = csr("x");
    // A CSR whose signature no longer matches its content.
    let tampered = {
        let mut d = der(&csr_pem);
        let i = d.len() / 3;
        d[i] ^= 0x01;
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&d);
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n")
    };
    let cases = [
        (
            json!({"ca_id": id, "common_name": "a", "validity_days": 401}),
            "validity_days",
            "would outlive its CA",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "validity_days": 0}),
            "validity_days",
            "must be between 1 and 36500 days",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "validity_days": 5, "csr_pem": "garbage"}),
            "csr_pem",
            "not a PEM document",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "validity_days": 5, "csr_pem": ca["certificate_pem"]}),
            "csr_pem",
            "expected a CERTIFICATE REQUEST PEM block, got CERTIFICATE",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "validity_days": 5, "csr_pem": tampered}),
            "csr_pem",
            "",
        ),
        (
            json!({"ca_id": "nope", "common_name": "a"}),
            "ca_id",
            "certificate authority \"nope\" not found",
        ),
        (
            json!({"ca_id": "", "common_name": "a"}),
            "ca_id",
            "must not be empty",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "csr_pem": csr_pem, "key_algorithm": "ED25519"}),
            "key_algorithm",
            "conflicts with csr_pem",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "key_algorithm": "DSA"}),
            "key_algorithm",
            "unknown key algorithm",
        ),
        (
            json!({"ca_id": id}),
            "device_id",
            "one of device_id and common_name is required",
        ),
        (
            json!({"ca_id": id, "device_id": "d", "common_name": "a"}),
            "common_name",
            "conflicts with device_id",
        ),
        (
            json!({"ca_id": id, "device_id": "ghost"}),
            "device_id",
            "device \"ghost\" not found",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "status": "revoked"}),
            "status",
            "revoke it with an update",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "status": "paused"}),
            "status",
            "unknown certificate status \"paused\"",
        ),
        (
            json!({"ca_id": id, "common_name": "a", "private_key_pem": "x"}),
            "private_key_pem",
            "unknown field",
        ),
        (json!({"common_name": "a"}), "ca_id", "missing field"),
    ];
    for (body, field, fragment) in cases {
        let resp = call(s.post(CERTS, &body), StatusCode::BAD_REQUEST).await;
        let msg = assert_error(&resp, "invalid_argument", Some(field));
        assert!(msg.contains(fragment), "{body}: {msg}");
    }
    // The tampered CSR's message says what is wrong (either the DER no
    // longer parses or the signature does not verify).
    let body = call(
        s.post(
            CERTS,
            &json!({"ca_id": id, "common_name": "a", "validity_days": 5, "csr_pem": tampered}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let msg = assert_error(&body, "invalid_argument", Some("csr_pem"));
    assert!(
        msg.contains("signature does not verify")
            || msg.contains("malformed certificate signing request"),
        "{msg}"
    );
    // Nothing was issued.
    let list = call(s.get(CERTS), StatusCode::OK).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn certificate_updates_and_lists_validate_input() {
    let (_dir, s) = server().await;
    let ca = create_ca(&s, json!({"name": "root"})).await;
    let (csr_pem, _) = csr("x");
    let cert = call(
        s.post(
            CERTS,
            &json!({"ca_id": ca["id"], "common_name": "a", "csr_pem": csr_pem}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let p = path(CERTS, &cert["id"]);
    let cases = [
        (
            json!({"status": "gone", "version": 1}),
            "status",
            "unknown certificate status \"gone\"",
        ),
        (
            json!({"status": "inactive", "revocation_reason": "superseded", "version": 1}),
            "revocation_reason",
            "only allowed with status \"revoked\"",
        ),
        (
            json!({"status": "revoked", "revocation_reason": "lost", "version": 1}),
            "revocation_reason",
            "unknown revocation reason \"lost\"",
        ),
        (
            json!({"status": "active", "validity_days": 3, "version": 1}),
            "validity_days",
            "unknown field",
        ),
        (json!({"status": "active"}), "version", "missing field"),
    ];
    for (body, field, fragment) in cases {
        let resp = call(s.put(&p, &body), StatusCode::BAD_REQUEST).await;
        let msg = assert_error(&resp, "invalid_argument", Some(field));
        assert!(msg.contains(fragment), "{body}: {msg}");
    }
    let body = call(s.get(&format!("{CERTS}?owner=me")), StatusCode::BAD_REQUEST).await;
    assert_error(&body, "invalid_argument", Some("owner"));
    let body = call(
        s.put(
            &format!("{CERTS}/nope"),
            &json!({"status": "active", "version": 1}),
        ),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        assert_error(&body, "not_found", None),
        "certificate nope not found"
    );
    let body = call(s.delete(&format!("{CERTS}/nope")), StatusCode::NOT_FOUND).await;
    assert_error(&body, "not_found", None);

    // Filters.
    let other_ca = create_ca(&s, json!({"name": "other"})).await;
    let (csr2, _) = csr("y");
    let other = call(
        s.post(
            CERTS,
            &json!({"ca_id": other_ca["id"], "common_name": "b", "csr_pem": csr2}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let by_ca = call(
        s.get(&format!(
            "{CERTS}?ca_id={}",
            other_ca["id"].as_str().unwrap()
        )),
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_ca["items"], json!([other]));
    let none = call(s.get(&format!("{CERTS}?device_id=ghost")), StatusCode::OK).await;
    assert_eq!(none["items"], json!([]));
}

#[tokio::test]
async fn certificates_for_devices() {
    let (_dir, s) = server().await;
    let (status, device) =
        send(s.post("/v1/devices", &json!({"name": "meter-1", "hardware": "m1"}))).await;
    if status == StatusCode::NOT_FOUND {
        // Devices are served by another part of fleetd; without them there
        // is nothing to issue to.
        eprintln!("skipping: /v1/devices is not served by this build");
        return;
    }
    assert_eq!(status, StatusCode::CREATED, "{device}");
    let ca = create_ca(&s, json!({"name": "root"})).await;
    let (csr_pem, _) = csr("x");
    let cert = call(
        s.post(
            CERTS,
            &json!({"ca_id": ca["id"], "device_id": device["id"], "csr_pem": csr_pem}),
        ),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(cert["device_id"], device["id"]);
    assert_eq!(cert["common_name"], device["id"]);
    let list = call(
        s.get(&format!(
            "{CERTS}?device_id={}",
            device["id"].as_str().unwrap()
        )),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"], json!([cert]));
}

#[tokio::test]
async fn a_ca_in_use_cannot_be_deleted() {
    let (_dir, s) = server().await;
    let ca = create_ca(&s, json!({"name": "root"})).await;
    let ca_path = path(CAS, &ca["id"]);
    let (csr_pem, _) = csr("x");
    let cert = call(
        s.post(
            CERTS,
            &json!({"ca_id": ca["id"], "common_name": "a", "csr_pem": csr_pem}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let body = call(s.delete(&ca_path), StatusCode::CONFLICT).await;
    let msg = assert_error(&body, "conflict", None);
    assert_eq!(
        msg,
        format!(
            "certificate authority \"root\" ({}) still has 1 active certificate; revoke, \
             deactivate or delete them first",
            ca["id"].as_str().unwrap()
        )
    );

    let group = create_group(&s, "sensors").await;
    call(
        s.put(
            &path(CERTS, &cert["id"]),
            &json!({"status": "revoked", "version": 1}),
        ),
        StatusCode::OK,
    )
    .await;
    let enrollment = call(
        s.post(
            ENROLLMENTS,
            &json!({"name": "e", "ca_id": ca["id"], "group_id": group["id"]}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let body = call(s.delete(&ca_path), StatusCode::CONFLICT).await;
    let msg = assert_error(&body, "conflict", None);
    assert!(msg.contains("still has 1 enrollment; delete them"), "{msg}");

    call(
        s.delete(&path(ENROLLMENTS, &enrollment["id"])),
        StatusCode::NO_CONTENT,
    )
    .await;
    call(s.delete(&ca_path), StatusCode::NO_CONTENT).await;
    // The revoked certificate went with its CA.
    call(s.get(&path(CERTS, &cert["id"])), StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn enrollment_round_trip_and_errors() {
    let (_dir, s) = server().await;
    let ca = create_ca(&s, json!({"name": "root"})).await;
    let group = create_group(&s, "sensors").await;
    let other_group = create_group(&s, "meters").await;

    let resp = s
        .post(
            ENROLLMENTS,
            &json!({"name": "sensors-eu", "ca_id": ca["id"], "group_id": group["id"],
                    "name_template": "sensor-{serial}", "attributes": {"region": "eu"},
                    "allowed_hardware": ["s1", "s2"], "max_devices": 1000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let e: Value = resp.json().await.unwrap();
    assert_eq!(location, path(ENROLLMENTS, &e["id"]));
    assert_eq!(e["name"], "sensors-eu");
    assert_eq!(e["ca_id"], ca["id"]);
    assert_eq!(e["group_id"], group["id"]);
    assert_eq!(e["name_template"], "sensor-{serial}");
    assert_eq!(e["attributes"], json!({"region": "eu"}));
    assert_eq!(e["allowed_hardware"], json!(["s1", "s2"]));
    assert_eq!(e["max_devices"], 1000);
    assert_eq!(e["enabled"], true);
    assert_eq!(e["enrolled_count"], 0);
    assert_eq!(e["version"], 1);
    assert_eq!(call(s.get(&location), StatusCode::OK).await, e);
    assert_eq!(
        call(s.get(ENROLLMENTS), StatusCode::OK).await,
        json!({"items": [e.clone()], "next_page_token": null})
    );

    // Full update: omitted fields go back to their defaults.
    let updated = call(
        s.put(
            &location,
            &json!({"name": "sensors-eu", "ca_id": ca["id"], "group_id": other_group["id"],
                    "enabled": false, "version": 1}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["group_id"], other_group["id"]);
    assert_eq!(updated["name_template"], "{cn}");
    assert_eq!(updated["attributes"], json!({}));
    assert_eq!(updated["allowed_hardware"], json!([]));
    assert_eq!(updated["max_devices"], Value::Null);
    assert_eq!(updated["enabled"], false);

    let base = json!({"name": "x", "ca_id": ca["id"], "group_id": group["id"]});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (with(json!({"group_id": "nope"})), "group_id", "device group \"nope\" not found"),
        (with(json!({"ca_id": "nope"})), "ca_id", "certificate authority \"nope\" not found"),
        (with(json!({"name_template": "dev-{sn}"})), "name_template",
         "unknown placeholder \"{sn}\" (use {cn}, {serial}, {hardware} or {attr.<key>}) at position 5"),
        (with(json!({"name_template": "dev-{cn"})), "name_template", "unclosed '{'"),
        (with(json!({"name_template": ""})), "name_template", "must not be empty"),
        (with(json!({"max_devices": 0})), "max_devices", "must be at least 1"),
        (with(json!({"max_devices": -1})), "max_devices", "invalid value"),
        (with(json!({"allowed_hardware": ["s1", "s1"]})), "allowed_hardware[1]",
         "duplicate hardware model"),
        (with(json!({"attributes": {"": "x"}})), "attributes", "must not be empty"),
        (with(json!({"enrolled_count": 5})), "enrolled_count", "unknown field"),
        (with(json!({"name": ""})), "name", "must not be empty"),
    ];
    for (body, field, fragment) in cases {
        let resp = call(s.post(ENROLLMENTS, &body), StatusCode::BAD_REQUEST).await;
        let msg = assert_error(&resp, "invalid_argument", Some(field));
        assert!(msg.contains(fragment), "{body}: {msg}");
    }
    let body = call(
        s.post(ENROLLMENTS, &with(json!({"name": "sensors-eu"}))),
        StatusCode::CONFLICT,
    )
    .await;
    assert_error(&body, "conflict", Some("name"));
    let body = call(
        s.put(&location, &with(json!({"version": 1}))),
        StatusCode::CONFLICT,
    )
    .await;
    assert_error(&body, "conflict", Some("version"));
    assert_eq!(body["expected_version"], 1);
    assert_eq!(body["current_version"], 2);
    let body = call(
        s.delete(&format!("{location}?version=1")),
        StatusCode::CONFLICT,
    )
    .await;
    assert_error(&body, "conflict", Some("version"));
    // The group an enrollment puts devices into cannot go away under it.
    let body = call(
        s.delete(&path("/v1/device-groups", &other_group["id"])),
        StatusCode::CONFLICT,
    )
    .await;
    assert_error(&body, "conflict", None);

    call(
        s.delete(&format!("{location}?version=2")),
        StatusCode::NO_CONTENT,
    )
    .await;
    let body = call(s.get(&location), StatusCode::NOT_FOUND).await;
    assert_error(&body, "not_found", None);
    call(
        s.delete(&path("/v1/device-groups", &other_group["id"])),
        StatusCode::NO_CONTENT,
    )
    .await;
}

#[tokio::test]
async fn cas_sign_after_a_restart_and_a_wrong_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start(dir.path()).await;
    let key_file = dir.path().join("master.key");
    let key_bytes = std::fs::read(&key_file).unwrap();
    assert_eq!(key_bytes.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let ca = create_ca(&first, json!({"name": "root"})).await;
    first.stop().await;

    // Same data directory: the sealed key opens and the CA signs.
    let second = TestServer::start(dir.path()).await;
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        key_bytes,
        "the key is reused"
    );
    let (csr_pem, _) = csr("x");
    let cert = call(
        second.post(
            CERTS,
            &json!({"ca_id": ca["id"], "common_name": "a", "csr_pem": csr_pem}),
        ),
        StatusCode::CREATED,
    )
    .await;
    assert_chains(
        cert["certificate_pem"].as_str().unwrap(),
        ca["certificate_pem"].as_str().unwrap(),
    );
    let crl = second
        .get(&format!("{}/crl", path(CAS, &ca["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(crl.status(), StatusCode::OK);
    assert!(crl
        .text()
        .await
        .unwrap()
        .starts_with("-----BEGIN X509 CRL-----"));
    second.stop().await;

    let database_url = if common::pg::backend_is_postgres() {
        let url = common::pg::database_for(dir.path()).await;
        Some(fleetd::store::DatabaseUrl::parse(&url).unwrap())
    } else {
        None
    };
    let config = |master: Option<std::path::PathBuf>| {
        let mut c = fleetd::config::Config::new(dir.path());
        c.database_url = database_url.clone();
        c.listen = "127.0.0.1:0".into();
        c.master_key_file = master;
        c
    };

    // Another master key: fleetd refuses to start, saying why.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, [7u8; 32]).unwrap();
    let err = match fleetd::server::Server::bind(config(Some(wrong.clone()))).await {
        Ok(_) => panic!("fleetd started with the wrong master key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!("the master key in {}", wrong.display()))
            && err.contains("is not the one that encrypted the CA private keys in the database"),
        "{err}"
    );

    // The default key file gone: not silently replaced by a new key.
    std::fs::rename(&key_file, dir.path().join("backup.key")).unwrap();
    let err = match fleetd::server::Server::bind(config(None)).await {
        Ok(_) => panic!("fleetd started without its master key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("the database holds CA private keys encrypted with master key")
            && err.contains(&format!("reading master key file {}", key_file.display())),
        "{err}"
    );
    assert!(!key_file.exists(), "no new master key was created");

    // Pointing at the original key (hex-encoded this time) works.
    let hex_file = dir.path().join("hex.key");
    std::fs::write(&hex_file, format!("{}\n", hex::encode(&key_bytes))).unwrap();
    let third = TestServer::start_with(config(Some(hex_file))).await;
    let (csr_pem, _) = csr("y");
    call(
        third.post(
            CERTS,
            &json!({"ca_id": ca["id"], "common_name": "b", "csr_pem": csr_pem}),
        ),
        StatusCode::CREATED,
    )
    .await;
    third.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_pki_routes() {
    let (_dir, s) = server().await;
    let (status, doc) = send(s.get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for (p, methods) in [
        ("/v1/certificate-authorities", &["get", "post"][..]),
        (
            "/v1/certificate-authorities/{id}",
            &["get", "put", "delete"][..],
        ),
        ("/v1/certificate-authorities/{id}/crl", &["get"][..]),
        ("/v1/certificates", &["get", "post"][..]),
        ("/v1/certificates/{id}", &["get", "put", "delete"][..]),
        ("/v1/enrollments", &["get", "post"][..]),
        ("/v1/enrollments/{id}", &["get", "put", "delete"][..]),
    ] {
        let item = paths
            .get(p)
            .unwrap_or_else(|| panic!("{p} is not documented"));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {p} is not documented");
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "CertificateAuthority",
        "CertificateAuthorityCreate",
        "CertificateAuthorityUpdate",
        "Certificate",
        "CertificateCreate",
        "CertificateUpdate",
        "Enrollment",
        "EnrollmentCreate",
        "EnrollmentUpdate",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    let ca_props = schemas["CertificateAuthority"]["properties"]
        .as_object()
        .unwrap();
    assert!(!ca_props.contains_key("private_key_pem"));
    let crl = &paths["/v1/certificate-authorities/{id}/crl"]["get"]["responses"]["200"]["content"];
    assert!(crl.get("application/x-pem-file").is_some(), "{crl}");
}
