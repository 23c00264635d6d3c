//! The SQLite store's PKI part through the `Store` trait, on a real file.

mod store_common;

use store_common::TestDb;

use std::sync::Arc;

use chrono::{Duration, Utc};
use fleetd::domain::pki::{
    self, CertificateStatus, KeyAlgorithm, RevocationReason, Serial, Subject, SubjectKey,
};
use fleetd::keystore::MasterKey;
use fleetd::store::{
    Actor, AuditAction, CertificateFilter, DeviceGroupSpec, DeviceSpec, EnrollmentFields, NewCa,
    NewCertificate, ObjectKind, Store, StoreError,
};

fn master() -> MasterKey {
    MasterKey::from_bytes(&[42; 32]).unwrap()
}

fn context(fingerprint: &str) -> String {
    format!("ctx {fingerprint}")
}

/// A freshly generated CA, its key sealed with [`master`].
fn new_ca(name: &str) -> NewCa {
    let m = pki::generate_ca(
        &pki::NewCa {
            common_name: name,
            organization: Some("Acme"),
            validity_days: 30,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        Serial::random(&mut rand::rng()),
        Utc::now(),
    )
    .unwrap();
    NewCa {
        name: name.to_owned(),
        description: String::new(),
        common_name: m.info.common_name.clone().unwrap(),
        organization: m.info.organization.clone(),
        key_algorithm: "ECDSA_P256".into(),
        validity_days: 30,
        imported: false,
        sealed_key: master()
            .seal(m.private_key_pem.as_bytes(), &context(&m.info.fingerprint))
            .unwrap(),
        certificate_pem: m.certificate_pem,
        fingerprint: m.info.fingerprint,
        serial: m.info.serial,
        not_before: m.info.not_before,
        not_after: m.info.not_after,
    }
}

/// Issues a certificate with the stored CA (unsealing its key) and
/// returns what to record.
async fn issue(store: &Arc<dyn Store>, ca_id: &str, subject: Subject<'_>) -> NewCertificate {
    let signer = store.get_ca_signer(ca_id).await.unwrap();
    let key = master()
        .open(&signer.sealed_key, &context(&signer.ca.fingerprint))
        .unwrap();
    let ca = pki::CertificateAuthority::from_pem(
        &signer.ca.certificate_pem,
        std::str::from_utf8(&key).unwrap(),
    )
    .unwrap();
    let issued = pki::issue_certificate(
        &ca,
        &pki::NewCertificate {
            subject,
            validity_days: 7,
            key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
        },
        Serial::random(&mut rand::rng()),
        Utc::now(),
    )
    .unwrap();
    let (device_id, cn) = match subject {
        Subject::DeviceId(d) => (Some(d.to_owned()), d.to_owned()),
        Subject::CommonName(cn) => (None, cn.to_owned()),
    };
    NewCertificate {
        ca_id: ca_id.to_owned(),
        device_id,
        common_name: cn,
        csr_pem: None,
        key_algorithm: Some("ECDSA_P256".into()),
        validity_days: 7,
        status: CertificateStatus::Active,
        serial: issued.info.serial,
        certificate_pem: issued.certificate_pem,
        fingerprint: issued.info.fingerprint,
        not_before: issued.info.not_before,
        not_after: issued.info.not_after,
    }
}

async fn group(store: &Arc<dyn Store>, name: &str) -> String {
    store
        .create_device_group(
            &Actor::admin(),
            DeviceGroupSpec {
                name: name.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
}

fn enrollment(name: &str, ca_id: &str, group_id: &str) -> EnrollmentFields {
    EnrollmentFields {
        name: name.into(),
        ca_id: ca_id.into(),
        group_id: group_id.into(),
        name_template: "{cn}".into(),
        enabled: true,
        ..Default::default()
    }
}

#[track_caller]
fn invalid_field(r: Result<impl std::fmt::Debug, StoreError>, field: &str) -> String {
    match r {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.field, field, "{e}");
            e.message
        }
        other => panic!("expected an invalid {field}, got {other:?}"),
    }
}

#[track_caller]
fn conflict(r: Result<impl std::fmt::Debug, StoreError>, field: Option<&str>) -> String {
    match r {
        Err(StoreError::Conflict { field: f, message }) => {
            assert_eq!(f, field, "{message}");
            message
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn cas_have_versions_unique_names_audit_rows_and_sealed_keys(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();

    let spec = new_ca("root");
    let ca = store
        .create_certificate_authority(&actor, spec.clone())
        .await
        .unwrap();
    assert_eq!(ca.version, 1);
    assert_eq!(ca.fingerprint, spec.fingerprint);
    assert_eq!(ca.organization.as_deref(), Some("Acme"));
    assert_eq!(store.get_certificate_authority(&ca.id).await.unwrap(), ca);
    assert_eq!(
        store.ca_master_key_ids().await.unwrap(),
        vec![master().id().to_owned()]
    );

    // The signer carries the sealed key, which opens with the master key.
    let signer = store.get_ca_signer(&ca.id).await.unwrap();
    assert_eq!(signer.ca, ca);
    let key = master()
        .open(&signer.sealed_key, &context(&ca.fingerprint))
        .unwrap();
    assert!(String::from_utf8(key).unwrap().contains("PRIVATE KEY"));

    let msg = conflict(
        store
            .create_certificate_authority(&actor, new_ca("root"))
            .await,
        Some("name"),
    );
    assert!(
        msg.starts_with("name: \"root\" is already used by another certificate authority"),
        "{msg}"
    );

    let renamed = store
        .update_certificate_authority(&actor, &ca.id, 1, "root-2".into(), "d".into())
        .await
        .unwrap();
    assert_eq!((renamed.version, renamed.name.as_str()), (2, "root-2"));
    assert_eq!(renamed.certificate_pem, ca.certificate_pem);
    match store
        .update_certificate_authority(&actor, &ca.id, 1, "x".into(), String::new())
        .await
    {
        Err(StoreError::VersionConflict {
            expected: 1,
            current: 2,
            kind: ObjectKind::CertificateAuthority,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }

    let other = store
        .create_certificate_authority(&actor, new_ca("other"))
        .await
        .unwrap();
    let page = store.list_certificate_authorities(None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, ca.id);
    let page = store
        .list_certificate_authorities(Some(&ca.id), 10)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|c| &c.id).collect::<Vec<_>>(), [&other.id]);

    store
        .delete_certificate_authority(&actor, &other.id, Some(1))
        .await
        .unwrap();
    assert!(matches!(
        store.get_certificate_authority(&other.id).await,
        Err(StoreError::NotFound { .. })
    ));

    let events = store
        .audit_events(ObjectKind::CertificateAuthority, &ca.id)
        .await
        .unwrap();
    let actions: Vec<_> = events
        .iter()
        .map(|e| (e.action, e.before_version, e.after_version))
        .collect();
    assert_eq!(
        actions,
        [
            (AuditAction::Create, None, Some(1)),
            (AuditAction::Update, Some(1), Some(2))
        ]
    );
}

async fn certificates_check_references_and_revocation_is_terminal_and_in_the_crl(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();
    let ca = store
        .create_certificate_authority(&actor, new_ca("root"))
        .await
        .unwrap();

    let mut cert = issue(&store, &ca.id, Subject::CommonName("bench-1")).await;
    let mut bad = cert.clone();
    bad.ca_id = "nope".into();
    let msg = invalid_field(store.create_certificate(&actor, bad).await, "ca_id");
    assert_eq!(msg, "certificate authority \"nope\" not found");
    let mut bad = cert.clone();
    bad.device_id = Some("ghost".into());
    let msg = invalid_field(store.create_certificate(&actor, bad).await, "device_id");
    assert_eq!(msg, "device \"ghost\" not found");

    cert.status = CertificateStatus::Inactive;
    let c = store
        .create_certificate(&actor, cert.clone())
        .await
        .unwrap();
    assert_eq!((c.version, c.status), (1, CertificateStatus::Inactive));
    assert_eq!(c.serial, cert.serial);
    assert_eq!(store.get_certificate(&c.id).await.unwrap(), c);

    // Activate, then revoke: each bumps the version; the CRL follows.
    let c = store
        .update_certificate_status(&actor, &c.id, 1, CertificateStatus::Active, None)
        .await
        .unwrap();
    assert_eq!((c.version, c.status), (2, CertificateStatus::Active));
    assert!(store
        .crl_entries(&ca.id, Utc::now())
        .await
        .unwrap()
        .is_empty());
    // Same status again: a no-op that keeps the version.
    let same = store
        .update_certificate_status(&actor, &c.id, 2, CertificateStatus::Active, None)
        .await
        .unwrap();
    assert_eq!(same.version, 2);

    let kc = Some(RevocationReason::KeyCompromise);
    let c = store
        .update_certificate_status(&actor, &c.id, 2, CertificateStatus::Revoked, kc)
        .await
        .unwrap();
    assert_eq!(c.version, 3);
    assert_eq!(c.revocation_reason, kc);
    assert!(c.revoked_at.is_some());
    let crl = store.crl_entries(&ca.id, Utc::now()).await.unwrap();
    assert_eq!(crl.len(), 1);
    assert_eq!(crl[0].serial, c.serial);
    assert_eq!(crl[0].reason, RevocationReason::KeyCompromise);
    // Expired certificates drop out of the CRL.
    assert!(store
        .crl_entries(&ca.id, c.not_after + Duration::seconds(1))
        .await
        .unwrap()
        .is_empty());

    let msg = conflict(
        store
            .update_certificate_status(&actor, &c.id, 3, CertificateStatus::Active, None)
            .await,
        Some("status"),
    );
    assert!(
        msg.starts_with("status: the certificate is revoked"),
        "{msg}"
    );
    conflict(
        store
            .update_certificate_status(
                &actor,
                &c.id,
                3,
                CertificateStatus::Revoked,
                Some(RevocationReason::Superseded),
            )
            .await,
        Some("revocation_reason"),
    );
    match store
        .update_certificate_status(&actor, &c.id, 2, CertificateStatus::Revoked, kc)
        .await
    {
        Err(StoreError::VersionConflict {
            expected: 2,
            current: 3,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }

    // Deleting a certificate that was never revoked puts it on the CRL.
    // (The CRL is ordered by revocation time, in milliseconds: let one pass
    // so that the order below does not fall back to the random serials.)
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let other = store
        .create_certificate(
            &actor,
            issue(&store, &ca.id, Subject::CommonName("bench-2")).await,
        )
        .await
        .unwrap();
    store
        .delete_certificate(&actor, &other.id, Some(1))
        .await
        .unwrap();
    let crl = store.crl_entries(&ca.id, Utc::now()).await.unwrap();
    assert_eq!(crl.len(), 2);
    // Both may carry the same millisecond: find it by serial.
    let entry = crl
        .iter()
        .find(|e| e.serial == other.serial)
        .expect("the deleted certificate is on the CRL");
    assert_eq!(entry.reason, RevocationReason::CessationOfOperation);

    let audit = store
        .audit_events(ObjectKind::Certificate, &other.id)
        .await
        .unwrap();
    assert_eq!(
        audit.iter().map(|e| e.action).collect::<Vec<_>>(),
        [AuditAction::Create, AuditAction::Delete]
    );
    assert!(matches!(
        store.crl_entries("nope", Utc::now()).await,
        Err(StoreError::NotFound {
            kind: ObjectKind::CertificateAuthority,
            ..
        })
    ));
}

async fn certificates_for_devices_and_list_filters(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();
    let a = store
        .create_certificate_authority(&actor, new_ca("a"))
        .await
        .unwrap();
    let b = store
        .create_certificate_authority(&actor, new_ca("b"))
        .await
        .unwrap();
    let device = store
        .create_device(
            &actor,
            DeviceSpec {
                name: "meter-1".into(),
                hardware: "m1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let c1 = store
        .create_certificate(
            &actor,
            issue(&store, &a.id, Subject::DeviceId(&device.id)).await,
        )
        .await
        .unwrap();
    assert_eq!(c1.device_id.as_deref(), Some(device.id.as_str()));
    assert_eq!(c1.common_name, device.id);
    let c2 = store
        .create_certificate(
            &actor,
            issue(&store, &b.id, Subject::DeviceId(&device.id)).await,
        )
        .await
        .unwrap();
    let c3 = store
        .create_certificate(&actor, issue(&store, &a.id, Subject::CommonName("x")).await)
        .await
        .unwrap();

    let ids =
        |v: Vec<fleetd::store::CertificateRecord>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let all = store
        .list_certificates(CertificateFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(all), [c1.id.clone(), c2.id.clone(), c3.id.clone()]);
    let by_ca = store
        .list_certificates(
            CertificateFilter {
                ca_id: Some(a.id.clone()),
                device_id: None,
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(by_ca), [c1.id.clone(), c3.id.clone()]);
    let by_device = store
        .list_certificates(
            CertificateFilter {
                ca_id: None,
                device_id: Some(device.id.clone()),
            },
            Some(&c1.id),
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(by_device), [c2.id]);
}

async fn ca_deletion_is_refused_while_in_use_and_takes_its_spent_certificates(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();
    let ca = store
        .create_certificate_authority(&actor, new_ca("root"))
        .await
        .unwrap();
    let c = store
        .create_certificate(
            &actor,
            issue(&store, &ca.id, Subject::CommonName("a")).await,
        )
        .await
        .unwrap();
    let msg = conflict(
        store
            .delete_certificate_authority(&actor, &ca.id, None)
            .await,
        None,
    );
    assert_eq!(
        msg,
        format!(
            "certificate authority \"root\" ({}) still has 1 active certificate; revoke, \
             deactivate or delete them first",
            ca.id
        )
    );
    store
        .update_certificate_status(&actor, &c.id, 1, CertificateStatus::Inactive, None)
        .await
        .unwrap();

    let g = group(&store, "g").await;
    let e = store
        .create_enrollment(&actor, enrollment("e", &ca.id, &g))
        .await
        .unwrap();
    let msg = conflict(
        store
            .delete_certificate_authority(&actor, &ca.id, None)
            .await,
        None,
    );
    assert!(msg.contains("still has 1 enrollment;"), "{msg}");
    store
        .delete_enrollment(&actor, &e.id, Some(1))
        .await
        .unwrap();

    store
        .delete_certificate_authority(&actor, &ca.id, Some(1))
        .await
        .unwrap();
    assert!(matches!(
        store.get_certificate(&c.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let audit = store
        .audit_events(ObjectKind::Certificate, &c.id)
        .await
        .unwrap();
    assert_eq!(audit.last().unwrap().action, AuditAction::Delete);
    assert!(store.ca_master_key_ids().await.unwrap().is_empty());
}

async fn enrollments_check_ca_group_and_name(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();
    let ca = store
        .create_certificate_authority(&actor, new_ca("root"))
        .await
        .unwrap();
    let g = group(&store, "g").await;

    let msg = invalid_field(
        store
            .create_enrollment(&actor, enrollment("e", &ca.id, "nope"))
            .await,
        "group_id",
    );
    assert_eq!(msg, "device group \"nope\" not found");
    invalid_field(
        store
            .create_enrollment(&actor, enrollment("e", "nope", &g))
            .await,
        "ca_id",
    );

    let mut fields = enrollment("e", &ca.id, &g);
    fields.max_devices = Some(10);
    fields.allowed_hardware = vec!["m1".into()];
    fields.attributes.insert("env".into(), "prod".into());
    let e = store
        .create_enrollment(&actor, fields.clone())
        .await
        .unwrap();
    assert_eq!(e.version, 1);
    assert_eq!(e.enrolled_count, 0);
    assert_eq!(e.max_devices, Some(10));
    assert_eq!(e.allowed_hardware, ["m1"]);
    assert_eq!(e.attributes["env"], "prod");
    assert_eq!(store.get_enrollment(&e.id).await.unwrap(), e);

    let msg = conflict(store.create_enrollment(&actor, fields).await, Some("name"));
    assert!(
        msg.starts_with("name: \"e\" is already used by another enrollment"),
        "{msg}"
    );

    let e2 = store
        .update_enrollment(&actor, &e.id, 1, enrollment("e2", &ca.id, &g))
        .await
        .unwrap();
    assert_eq!(e2.version, 2);
    assert_eq!(e2.max_devices, None);
    assert!(e2.allowed_hardware.is_empty());
    assert_eq!(store.list_enrollments(None, 10).await.unwrap(), [e2]);
    assert!(matches!(
        store.delete_enrollment(&actor, &e.id, Some(1)).await,
        Err(StoreError::VersionConflict { .. })
    ));
    store
        .delete_enrollment(&actor, &e.id, Some(2))
        .await
        .unwrap();
    assert!(store.list_enrollments(None, 10).await.unwrap().is_empty());
}

async fn pki_state_survives_reopening_the_file(db: TestDb) {
    let actor = Actor::admin();
    let (ca, cert) = {
        let store = db.open().await;
        let ca = store
            .create_certificate_authority(&actor, new_ca("root"))
            .await
            .unwrap();
        let cert = store
            .create_certificate(
                &actor,
                issue(&store, &ca.id, Subject::CommonName("a")).await,
            )
            .await
            .unwrap();
        (ca, cert)
    };
    let store = db.open().await;
    assert_eq!(store.get_certificate_authority(&ca.id).await.unwrap(), ca);
    assert_eq!(store.get_certificate(&cert.id).await.unwrap(), cert);
    // and the CA still signs
    store
        .create_certificate(
            &actor,
            issue(&store, &ca.id, Subject::CommonName("b")).await,
        )
        .await
        .unwrap();
}

store_tests!(
    cas_have_versions_unique_names_audit_rows_and_sealed_keys,
    certificates_check_references_and_revocation_is_terminal_and_in_the_crl,
    certificates_for_devices_and_list_filters,
    ca_deletion_is_refused_while_in_use_and_takes_its_spent_certificates,
    enrollments_check_ca_group_and_name,
    pki_state_survives_reopening_the_file,
);
