//! Simulated devices against a real fleetd: enrollment, check-ins,
//! revocation, policy denials; the ledger against fleetd's own counts.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::Fleetd;
use fleet_sim::{Event, Simulation};
use serde_json::{json, Value};

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn all_devices(fleetd: &Fleetd) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/v1/devices?limit=1000&page_token={t}"),
            None => "/v1/devices?limit=1000".to_owned(),
        };
        let page = fleetd.get(&path).await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_devices_enroll_and_check_in() {
    let fleetd = Fleetd::start().await;
    let (group_id, factory, _, enrollment_id) = fleetd.product_line("meters").await;

    let mut cfg = fleetd.sim_config(300, "meter");
    cfg.hardware = vec!["m1".into(), "m2".into()];
    cfg.attributes = [("site".to_owned(), "plant-7".to_owned())].into();
    let sim = Simulation::new(cfg, Arc::new(factory));
    let stats = sim.stats();
    let stopper = sim.stopper();
    let run = tokio::spawn(sim.run());
    // Every device enrolls and checks in at least twice.
    eventually("300 enrollments and 600 check-ins", 120, || {
        stats.enrolled.load(Ordering::Relaxed) == 300
            && stats.checkins.load(Ordering::Relaxed) >= 600
    })
    .await;
    stopper.stop();
    let report = run.await.unwrap();
    let s = &report.summary;
    assert_eq!(s.enrolled, 300, "{s:?}");
    assert_eq!(
        s.refused + s.enroll_refused + s.transport_errors + s.server_errors,
        0,
        "{s:?}"
    );
    assert_eq!(report.ledger.enrolled(), 300);

    // fleetd agrees with the ledger.
    let enrollment = fleetd
        .get(&format!("/v1/enrollments/{enrollment_id}"))
        .await;
    assert_eq!(enrollment["enrolled_count"], 300);
    let group = fleetd.get(&format!("/v1/device-groups/{group_id}")).await;
    assert_eq!(group["device_count"], 300);
    let devices = all_devices(&fleetd).await;
    assert_eq!(devices.len(), 300);
    let ledger_ids: HashSet<String> = report
        .ledger
        .entries()
        .into_iter()
        .filter(|e| matches!(e.event, Event::Enrolled { .. }))
        .filter_map(|e| e.device_id)
        .collect();
    let fleet_ids: HashSet<String> = devices
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ledger_ids, fleet_ids);
    for d in &devices {
        assert_eq!(d["firmware_version"], "1.0.0", "{d}");
        assert_eq!(d["health"], "ok");
        assert!(d["last_seen"].is_string());
        assert_eq!(d["attributes"]["site"], "plant-7");
        assert_eq!(d["group_ids"], json!([group_id]));
        let name = d["name"].as_str().unwrap();
        let index: usize = name.trim_start_matches("meter-").parse().unwrap();
        let hw = ["m1", "m2"][index % 2];
        assert_eq!(d["hardware"], hw, "{d}");
    }

    // Device API metrics count the decisions.
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", fleetd.admin_url))
        .bearer_auth(&fleetd.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(
        "fleetd_device_authz_decisions_total{action=\"device:enroll\",decision=\"allow\",reason=\"enrollment\"} 300"
    ), "{metrics}");
    fleetd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_refused_mid_run_and_the_others_carry_on() {
    let fleetd = Fleetd::start().await;
    let (_, factory, _, _) = fleetd.product_line("valves").await;
    let sim = Simulation::new(fleetd.sim_config(20, "valve"), Arc::new(factory));
    let stats = sim.stats();
    let ledger = sim.ledger();
    let stopper = sim.stopper();
    let run = tokio::spawn(sim.run());
    eventually("20 enrollments", 60, || {
        stats.enrolled.load(Ordering::Relaxed) == 20
    })
    .await;

    // Revoke device 7's certificate through the admin API.
    let device_id = ledger
        .device(7)
        .into_iter()
        .find_map(|e| e.device_id)
        .unwrap();
    let certs = fleetd
        .get(&format!("/v1/certificates?device_id={device_id}"))
        .await;
    let cert = &certs["items"][0];
    fleetd
        .put(
            &format!("/v1/certificates/{}", cert["id"].as_str().unwrap()),
            json!({"status": "revoked", "revocation_reason": "key_compromise", "version": cert["version"]}),
        )
        .await;
    eventually("device 7 refused", 30, || {
        ledger
            .device(7)
            .iter()
            .any(|e| matches!(e.event, Event::Refused { .. }))
    })
    .await;
    let checkins = stats.checkins.load(Ordering::Relaxed);
    eventually("the others keep checking in", 30, || {
        stats.checkins.load(Ordering::Relaxed) >= checkins + 40
    })
    .await;
    stopper.stop();
    let report = run.await.unwrap();
    assert_eq!(report.summary.refused, 1, "{:?}", report.summary);
    let refused: Vec<usize> = report
        .ledger
        .entries()
        .iter()
        .filter(|e| matches!(e.event, Event::Refused { .. }))
        .map(|e| e.device)
        .collect();
    assert_eq!(refused, [7]);
    fleetd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_limits_and_policy_denials_show_in_the_ledger() {
    let fleetd = Fleetd::start().await;
    let group = fleetd
        .post("/v1/device-groups", json!({"name": "lab"}))
        .await;
    // Only check-ins allowed: config and firmware are withheld.
    let policy = fleetd
        .post(
            "/v1/policies",
            json!({"name": "checkin-only", "statements": [
                {"effect": "allow", "actions": ["device:checkin"], "resources": ["fleet:device/${device.id}"]}]}),
        )
        .await;
    fleetd
        .post(
            "/v1/policy-attachments",
            json!({"policy_id": policy["id"], "group_id": group["id"]}),
        )
        .await;
    let factory = fleet_sim::Factory::generate("lab factory", 30).unwrap();
    let ca_id = fleetd.admin.import_ca("lab", &factory).await.unwrap();
    fleetd
        .post(
            "/v1/enrollments",
            json!({"name": "lab", "ca_id": ca_id, "group_id": group["id"], "enabled": true,
                   "max_devices": 5, "allowed_hardware": ["m1"]}),
        )
        .await;

    let mut cfg = fleetd.sim_config(8, "lab");
    cfg.hardware = vec!["m1".into()];
    cfg.until_idle = Some(Duration::from_millis(800));
    let sim = Simulation::new(cfg, Arc::new(factory));
    let report = sim.run().await;
    let s = &report.summary;
    assert_eq!(s.enrolled, 5, "{s:?}");
    assert_eq!(s.enroll_refused, 3, "{s:?}");
    let reasons: Vec<String> = report
        .ledger
        .entries()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::EnrollRefused { status, reason } => {
                assert_eq!(status, 403);
                Some(reason)
            }
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["limit_reached"; 3]);
    // Every enrolled device saw config:read and firmware:download withheld.
    let denied: Vec<(usize, String)> = report
        .ledger
        .entries()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Denied { action } => Some((e.device, action)),
            _ => None,
        })
        .collect();
    assert_eq!(denied.len(), 10, "{denied:?}");
    assert!(s.checkins >= 5);
    fleetd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_devices_resume_their_tls_sessions() {
    let fleetd = Fleetd::start().await;
    let (_, factory, _, _) = fleetd.product_line("gauges").await;
    let mut cfg = fleetd.sim_config(20, "gauge");
    cfg.keep_alive = false;
    cfg.checkin_interval = Duration::from_millis(100);
    let sim = Simulation::new(cfg, Arc::new(factory));
    let stats = sim.stats();
    let stopper = sim.stopper();
    let run = tokio::spawn(sim.run());
    eventually("100 check-ins", 60, || {
        stats.checkins.load(Ordering::Relaxed) >= 100
    })
    .await;
    stopper.stop();
    let s = run.await.unwrap().summary;
    assert_eq!(s.enrolled, 20, "{s:?}");
    assert_eq!(s.transport_errors + s.server_errors + s.refused, 0, "{s:?}");
    // One connection per call: enrollment plus every check-in.
    assert!(s.connects >= s.checkins + 20, "{s:?}");
    // All but the first handshake of each device resumed.
    assert!(s.resumed >= s.connects - 20 - 5, "{s:?}");
    fleetd.stop().await;
}
