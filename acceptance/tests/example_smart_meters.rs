//! `examples/smart-meters` applied end to end: the three golden-path
//! modules composed into a fleet (3 environments, 2 product lines), real
//! Terraform, a real fleetd, and simulated devices enrolling by the names
//! on their factory certificates. The meters' firmware goes to staging,
//! the promotion gate refuses production until staging completed, then
//! production starts with the module's safe default (a 1% canary, then a
//! soak).

use std::time::Duration;

use acceptance::devices::{self, Devices};
use acceptance::{workspace_root, Fleetd, Workdir};
use anyhow::{ensure, Context, Result};
use fleet_sim::Factory;
use serde_json::Value as Json;

fn rollout(fleetd: &Fleetd, id: &str) -> Result<Json> {
    fleetd
        .get(&format!("/v1/rollouts/{id}"))?
        .context("rollout in fleetd")
}

fn wait_rollout(
    fleetd: &Fleetd,
    id: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Json) -> bool,
) -> Result<Json> {
    acceptance::wait_until(
        &format!("rollout {id} {what}"),
        timeout,
        || rollout(fleetd, id),
        done,
    )
}

fn group_by_path(fleetd: &Fleetd, path: &str) -> Result<Json> {
    fleetd
        .list("/v1/device-groups")?
        .into_iter()
        .find(|g| g["path"] == path)
        .with_context(|| format!("no group {path}"))
}

fn start_devices(
    fleetd: &Fleetd,
    factory: &Factory,
    n: usize,
    prefix: &str,
    hw: &str,
) -> Result<Devices> {
    let mut cfg = devices::config(fleetd, n, prefix)?;
    cfg.hardware = vec![hw.into()];
    cfg.initial_firmware = "2.0.0".into();
    cfg.attributes.insert("site".into(), "plant-7".into());
    let f = Factory::from_pem(factory.certificate_pem(), factory.private_key_pem())?;
    Devices::start(cfg, f)
}

#[test]
fn smart_meters_example_end_to_end() -> Result<()> {
    let fleetd = Fleetd::start_with(&["--engine-interval", "200ms"])?;
    let mut wd = Workdir::new(&fleetd)?;
    let root = workspace_root();
    acceptance::copy_config_dir(&root.join("examples/smart-meters"), wd.path())?;
    acceptance::copy_config_dir(&root.join("modules"), &wd.path().join("modules"))?;
    let main = wd.path().join("main.tf");
    let hcl = std::fs::read_to_string(&main)?.replace("../../modules/", "./modules/");
    std::fs::write(&main, &hcl)?;
    let factory = Factory::generate("Smart meters factory CA", 365)?;
    wd.set_env(
        "TF_VAR_factory_ca_certificate_pem",
        factory.certificate_pem(),
    );
    wd.set_env(
        "TF_VAR_factory_ca_private_key_pem",
        factory.private_key_pem(),
    );
    wd.ok(&["init", "-backend=false", "-input=false", "-no-color"])
        .context("terraform init")?;

    // 1. The fleet, rollouts held until the devices are online.
    wd.set_env("TF_VAR_pause_rollouts", "true");
    let s = wd.apply(&hcl)?;
    ensure!(
        s.addresses()
            .iter()
            .filter(|a| !a.contains("data."))
            .count()
            == 37,
        "the composition creates the whole fleet: {:?}",
        s.addresses()
    );

    // 2. Devices enroll by the names on their certificates.
    let staging = start_devices(&fleetd, &factory, 150, "meter-staging", "meter-v2")?;
    let prod = start_devices(&fleetd, &factory, 200, "meter-prod", "meter-v2")?;
    let gateways = start_devices(&fleetd, &factory, 20, "gateway-dev", "gw-1")?;
    for d in [&staging, &prod, &gateways] {
        d.wait_enrolled(Duration::from_secs(180))?;
    }
    for (path, n) in [
        ("staging/meter", 150),
        ("prod/meter", 200),
        ("dev/gateway", 20),
        ("dev/meter", 0),
        ("staging/gateway", 0),
    ] {
        let g = group_by_path(&fleetd, path)?;
        assert_eq!(g["device_count"], n, "{path}: {g}");
    }

    // 3. Promotion is refused while staging has not completed.
    wd.set_env("TF_VAR_promote_to_prod", "true");
    wd.write_config(&hcl)?;
    let out = wd.run(&["plan", "-input=false", "-no-color"])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("Not promoting: the gating rollout has not completed"),
        "{text}"
    );

    // 4. Staging runs to completion over its 150 meters.
    wd.set_env("TF_VAR_promote_to_prod", "false");
    wd.set_env("TF_VAR_pause_rollouts", "false");
    let s = wd.apply(&hcl)?;
    let staging_id = s.get("module.meter_2_1_staging.fleet_firmware_rollout.this")?["id"]
        .as_str()
        .context("staging rollout id")?
        .to_string();
    let done = wait_rollout(
        &fleetd,
        &staging_id,
        "completed",
        Duration::from_secs(180),
        |r| r["status"] == "completed",
    )?;
    assert_eq!(done["counts"]["targeted"], 150, "{done}");
    assert_eq!(done["counts"]["succeeded"], 150, "{done}");

    // 5. Promoted: production starts with a 1% canary, then soaks.
    wd.set_env("TF_VAR_promote_to_prod", "true");
    let s = wd.apply(&hcl)?;
    let prod_id = s.get("module.meter_2_1_prod[0].fleet_firmware_rollout.this")?["id"]
        .as_str()
        .context("prod rollout id")?
        .to_string();
    let canary = wait_rollout(
        &fleetd,
        &prod_id,
        "finished its canary",
        Duration::from_secs(120),
        |r| r["counts"]["succeeded"] == 2,
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let soaking = rollout(&fleetd, &prod_id)?;
    assert_eq!(soaking["status"], "running", "{soaking}");
    assert_eq!(
        soaking["current_phase"], 0,
        "soaking after the canary: {soaking}"
    );
    assert_eq!(soaking["counts"]["targeted"], 200, "{soaking}");
    assert_eq!(soaking["counts"]["pending"], 198, "{canary} / {soaking}");

    // The simulators' ledgers agree with fleetd.
    let staging_report = staging.stop()?;
    let prod_report = prod.stop()?;
    gateways.stop()?;
    let tally = &staging_report.ledger.rollouts()[&staging_id];
    assert_eq!(
        (tally.assigned_devices, tally.assignments, tally.succeeded),
        (150, 150, 150)
    );
    let tally = &prod_report.ledger.rollouts()[&prod_id];
    assert_eq!((tally.assigned_devices, tally.succeeded), (2, 2));
    assert!(
        !staging_report.ledger.rollouts().contains_key(&prod_id)
            && !prod_report.ledger.rollouts().contains_key(&staging_id),
        "each rollout reached only its environment"
    );

    // Terraform sees it all without wanting changes; then it all goes.
    let s = wd.apply(&hcl)?;
    let out = s.get("module.meter_2_1_prod[0].fleet_firmware_rollout.this")?;
    assert_eq!(out["counts"]["succeeded"], 2, "{out}");
    // Decommission: the devices' certificates go first (the foundation's
    // CA refuses deletion while it has active certificates).
    let ca_id = s.str("module.foundation.fleet_certificate_authority.this", "id")?;
    let certs = fleetd.list(&format!("/v1/certificates?ca_id={ca_id}"))?;
    assert_eq!(certs.len(), 370, "one certificate per enrolled device");
    for c in certs {
        let (status, body) = fleetd.send(
            "DELETE",
            &format!("/v1/certificates/{}", c["id"].as_str().unwrap_or_default()),
            None,
        )?;
        ensure!(status == 204, "{status} {body}");
    }
    wd.destroy()?;
    for kind in [
        "rollouts",
        "firmware",
        "enrollments",
        "policies",
        "certificate-authorities",
    ] {
        let left = fleetd.list(&format!("/v1/{kind}"))?;
        assert!(left.is_empty(), "{kind} left in fleetd: {left:?}");
    }
    Ok(())
}
