//! `fleet_firmware` through real Terraform, the real provider and a real
//! fleetd.

use acceptance::Acc;
use anyhow::{Context, Result};
use serde_json::json;

const PROVIDER: &str = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}
"#;

/// SHA-256 of the 41-byte test image
/// `fleetform acceptance firmware image 1.0.0`.
const SHA256: &str = "797dfb19a7a904de86207d04b1de5b0ade461749c713b0e41327841b84adf0b2";
/// Ed25519 key (seed: 32 bytes of 7) and its signature over the digest.
const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----\n    MCowBQYDK2VwAyEA6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=\n    -----END PUBLIC KEY-----";
const SIGNATURE: &str =
    "4jV4+zvywIeq64OPj2+QvrKbhzo14ESZuRnDjUOeJzuU6okRHwKjP+zeLEbkGtJhqco4Vtt4O5oqfHRSJP28BA==";
/// Another key (seed: 32 bytes of 9) the signature does not verify with.
const OTHER_KEY: &str = "-----BEGIN PUBLIC KEY-----\n    MCowBQYDK2VwAyEA/RckOFqgx1tk+3jNYC+h2ZH96/drE8WO1wLqyDXp9hg=\n    -----END PUBLIC KEY-----";

fn signed(version: &str, url: &str, sha256: &str, key: &str) -> String {
    format!(
        r#"
resource "fleet_firmware" "fw" {{
  product    = "meter-fw"
  version    = "{version}"
  hardware   = ["m2", "m1"]
  url        = "{url}"
  sha256     = "{sha256}"
  size_bytes = 41
  signature  = "{SIGNATURE}"
  signing_public_key = <<-EOT
    {key}
  EOT
}}
"#
    )
}

const UNSIGNED: &str = r#"
resource "fleet_firmware" "unsigned" {
  product    = "meter-fw"
  version    = "1.1.0-rc.1"
  hardware   = ["m1"]
  url        = "http://downloads.test/meter-fw/1.1.0-rc.1.bin"
  sha256     = "797dfb19a7a904de86207d04b1de5b0ade461749c713b0e41327841b84adf0b2"
  size_bytes = 41
}
"#;

const URL: &str = "https://downloads.test/meter-fw/1.0.0.bin";

fn line_of(hcl: &str, needle: &str) -> usize {
    hcl.lines()
        .position(|l| l.contains(needle))
        .expect("needle in hcl")
        + 1
}

#[test]
fn lifecycle_replace_import_destroy() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = format!(
        "{PROVIDER}{}{UNSIGNED}",
        signed("1.0.0", URL, SHA256, PUBLIC_KEY)
    );
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_firmware.fw", "id")?;
    assert_eq!(
        s.attr("fleet_firmware.fw", "signature_verified")?,
        json!(true)
    );
    assert_eq!(
        s.attr("fleet_firmware.fw", "hardware")?,
        json!(["m1", "m2"])
    );
    assert_eq!(
        s.attr("fleet_firmware.fw", "signing_public_key")?,
        json!(null),
        "write-only: never in state"
    );
    assert_eq!(
        s.attr("fleet_firmware.unsigned", "signature_verified")?,
        json!(false)
    );
    assert_eq!(s.attr("fleet_firmware.unsigned", "signature")?, json!(null));

    let f = acc
        .fleetd
        .get(&format!("/v1/firmware/{id}"))?
        .context("release in fleetd")?;
    assert_eq!(f["product"], "meter-fw");
    assert_eq!(f["version"], "1.0.0");
    assert_eq!(f["sha256"], SHA256);
    assert_eq!(f["size_bytes"], 41);
    assert_eq!(f["signature"], SIGNATURE);
    assert_eq!(f["signature_verified"], true);
    let mut hw: Vec<String> = serde_json::from_value(f["hardware"].clone())?;
    hw.sort();
    assert_eq!(hw, ["m1", "m2"]);
    let text = std::fs::read_to_string(acc.wd.path().join("terraform.tfstate"))?;
    assert!(!text.contains("BEGIN PUBLIC KEY"), "key reached the state");

    // The same digest in upper case is the same release: no replacement.
    let upper = SHA256.to_uppercase();
    let hcl2 = format!(
        "{PROVIDER}{}{UNSIGNED}",
        signed("1.0.0", URL, &upper, PUBLIC_KEY)
    );
    acc.wd.write_config(&hcl2)?;
    let (empty, plan) = acc.wd.plan_is_empty(true)?;
    assert!(!empty);
    assert!(
        plan.contains("0 to add, 1 to change, 0 to destroy") && !plan.contains("must be replaced"),
        "{plan}"
    );
    let s2 = acc.wd.apply(&hcl2)?;
    assert_eq!(s2.str("fleet_firmware.fw", "id")?, id);
    assert_eq!(s2.str("fleet_firmware.fw", "sha256")?, upper);

    // Anything else publishes a new release and removes the old one.
    let url3 = "https://mirror.test/meter-fw/1.0.0.bin";
    let hcl3 = format!(
        "{PROVIDER}{}{UNSIGNED}",
        signed("1.0.0", url3, SHA256, PUBLIC_KEY)
    );
    acc.wd.write_config(&hcl3)?;
    let (_, plan) = acc.wd.plan_is_empty(true)?;
    assert!(
        plan.contains("must be replaced") && plan.contains("1 to add, 0 to change, 1 to destroy"),
        "{plan}"
    );
    let s3 = acc.wd.apply(&hcl3)?;
    let id3 = s3.str("fleet_firmware.fw", "id")?;
    assert_ne!(id3, id);
    assert!(acc.fleetd.get(&format!("/v1/firmware/{id}"))?.is_none());
    assert_eq!(acc.fleetd.list("/v1/firmware")?.len(), 2);
    assert_eq!(
        s3.attr("fleet_firmware.fw", "signature_verified")?,
        json!(true)
    );

    acc.import_verify(&hcl3, "fleet_firmware.fw", &id3, &[])?;
    let unsigned = s3.str("fleet_firmware.unsigned", "id")?;
    acc.import_verify(&hcl3, "fleet_firmware.unsigned", &unsigned, &[])?;
    // The write-only key in the configuration does not disturb the import.
    acc.import_block_noop(&hcl3, "fleet_firmware.fw", &id3)?;

    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/firmware")?.is_empty(), "releases left");
    Ok(())
}

#[test]
fn drift_deleted_release_is_published_again() -> Result<()> {
    let acc = Acc::new()?;
    let hcl = format!("{PROVIDER}{UNSIGNED}");
    let s = acc.wd.apply(&hcl)?;
    let id = s.str("fleet_firmware.unsigned", "id")?;
    let (status, _) = acc
        .fleetd
        .send("DELETE", &format!("/v1/firmware/{id}"), None)?;
    assert_eq!(status, 204);
    let (empty, text) = acc.wd.plan_is_empty(true)?;
    assert!(!empty, "deletion not detected");
    assert!(
        text.contains("1 to add, 0 to change, 0 to destroy"),
        "{text}"
    );
    let s = acc.wd.apply(&hcl)?;
    let id2 = s.str("fleet_firmware.unsigned", "id")?;
    assert_ne!(id2, id);
    assert!(acc.fleetd.get(&format!("/v1/firmware/{id2}"))?.is_some());
    acc.wd.destroy()?;
    assert!(acc.fleetd.list("/v1/firmware")?.is_empty());
    Ok(())
}

#[test]
fn invalid_releases_fail_at_plan_naming_the_attribute() -> Result<()> {
    let acc = Acc::new()?;
    let release = |version: &str, sha256: &str, extra: &str| {
        format!(
            r#"{PROVIDER}
resource "fleet_firmware" "bad" {{
  product    = "meter-fw"
  version    = "{version}"
  hardware   = ["m1"]
  url        = "https://downloads.test/fw.bin"
  sha256     = "{sha256}"
  size_bytes = 41
{extra}
}}
"#
        )
    };

    let hcl = release("1.4", SHA256, "");
    let text = acc.wd.plan_error(
        &hcl,
        &[
            "Invalid value for version",
            r#"invalid semantic version "1.4""#,
            "with fleet_firmware.bad",
        ],
    )?;
    let line = line_of(&hcl, r#"version    = "1.4""#);
    assert!(text.contains(&format!("main.tf line {line}")), "{text}");

    acc.wd.plan_error(
        &release("1.4.0", "abc123", ""),
        &[
            "Invalid value for sha256",
            "must be 64 hexadecimal characters",
        ],
    )?;
    acc.wd.plan_error(
        &release("1.4.0", &"g".repeat(64), ""),
        &["Invalid value for sha256", "must be hexadecimal"],
    )?;

    // Several mistakes at once are all reported.
    let hcl = release("1.4.0", SHA256, "")
        .replace("size_bytes = 41", "size_bytes = 0")
        .replace(r#"["m1"]"#, r#"["m1", "bad model"]"#)
        .replace(
            "https://downloads.test/fw.bin",
            "ftp://downloads.test/fw.bin",
        );
    acc.wd.plan_error(
        &hcl,
        &[
            "Invalid value for size_bytes",
            "must be greater than 0",
            "Invalid value for hardware",
            r#"invalid character ' ' in "bad model""#,
            "Invalid value for url",
            "must be an http:// or https:// URL",
        ],
    )?;

    // A signature that does not verify with the given key is caught at
    // plan time, not after the release is half-published.
    let key = |k: &str| {
        format!("  signature  = \"{SIGNATURE}\"\n  signing_public_key = <<-EOT\n    {k}\n  EOT")
    };
    acc.wd.plan_error(
        &release("1.4.0", SHA256, &key(OTHER_KEY)),
        &["Invalid value for signature", "does not verify"],
    )?;
    acc.wd.plan_error(
        &release(
            "1.4.0",
            SHA256,
            &format!("  signing_public_key = <<-EOT\n    {PUBLIC_KEY}\n  EOT"),
        ),
        &[
            "Invalid value for signature",
            "is required when signing_public_key is given",
        ],
    )?;
    acc.wd.plan_error(
        &release("1.4.0", SHA256, "  signature = \"not base64!\""),
        &["Invalid value for signature", "not valid base64"],
    )?;
    acc.wd.plan_error(
        &release(
            "1.4.0",
            SHA256,
            &key("-----BEGIN PUBLIC KEY-----\n    AAAA\n    -----END PUBLIC KEY-----"),
        ),
        &[
            "Invalid value for signing_public_key",
            "not an Ed25519 public key",
        ],
    )?;

    assert!(acc.fleetd.list("/v1/firmware")?.is_empty());
    Ok(())
}
