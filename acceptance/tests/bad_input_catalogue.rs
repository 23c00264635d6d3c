//! A catalogue of invalid configurations, across every resource (and the
//! data sources and the ephemeral resource that validate input): each must
//! fail at `terraform plan` (before anything is written) with an error at
//! the attribute at fault and a message that says what is wrong.
//!
//! For each case the test finds the diagnostic whose summary is expected,
//! then checks that Terraform shows it on the resource at fault and on the
//! source line of the attribute (that is how Terraform renders a
//! diagnostic's attribute path), and that its text holds the expected
//! message. One fleetd serves every case; cases run on 4 threads, each in
//! its own working directory. fleetd must hold nothing afterwards, its log
//! neither the token nor a private key, and no output a private key (an
//! imported CA's key is write-only).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use acceptance::{Fleetd, Workdir};
use anyhow::Result;

const PROVIDER: &str = r#"
terraform {
  required_providers {
    fleet = { source = "fleetform/fleet" }
  }
}
provider "fleet" {}
"#;

const ID: &str = "01939f5e-8a3c-7c4e-9d1a-2f4b6c8d0e1f";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

struct Case {
    name: &'static str,
    /// Resource type; the resource is always named `x`.
    resource: &'static str,
    /// The body of `resource "<type>" "x" { ... }`.
    body: String,
    /// The diagnostic's summary (or its start).
    summary: &'static str,
    /// How the highlighted source line starts: the attribute's name
    /// (`name =`), or the block for block-level paths.
    source: &'static str,
    /// Substrings of the diagnostic's detail.
    detail: &'static [&'static str],
}

fn case(
    name: &'static str,
    resource: &'static str,
    body: impl Into<String>,
    summary: &'static str,
    source: &'static str,
    detail: &'static [&'static str],
) -> Case {
    Case {
        name,
        resource,
        body: body.into(),
        summary,
        source,
        detail,
    }
}

/// A HCL string literal (quoted, escaped; heredoc-free).
fn hcl_str(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap()
        .replace("${", "$${")
        .replace("%{", "%%{")
}

struct Pki {
    ca_pem: String,
    ca_key: String,
    csr: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "Catalogue CA");
    let ca = params.self_signed(&key).unwrap();
    let device_key = KeyPair::generate().unwrap();
    let mut csr = CertificateParams::new(Vec::<String>::new()).unwrap();
    csr.distinguished_name.push(DnType::CommonName, "meter-1");
    Pki {
        ca_pem: ca.pem(),
        ca_key: key.serialize_pem(),
        csr: csr.serialize_request(&device_key).unwrap().pem().unwrap(),
    }
}

#[rustfmt::skip] // a table reads better one case per paragraph
fn catalogue(p: &Pki) -> Vec<Case> {
    let long = "x".repeat(1025);
    let csr = hcl_str(&p.csr);
    let ca_pem = hcl_str(&p.ca_pem);
    let ca_key = hcl_str(&p.ca_key);
    let fw = |extra: &str| format!(
        "product = \"meter-fw\"\nversion = \"1.0.0\"\nhardware = [\"m1\"]\nurl = \"https://fw.example.com/1.bin\"\nsha256 = \"{SHA}\"\nsize_bytes = 1024\n{extra}"
    );
    let fw_with = |field: &str, value: &str| {
        fw("").lines().map(|l| if l.starts_with(&format!("{field} =")) { format!("{field} = {value}") } else { l.to_owned() })
            .collect::<Vec<_>>().join("\n")
    };
    let rollout = |extra: &str| format!(
        "name = \"r\"\nfirmware_id = \"{ID}\"\ntarget_group_ids = [\"{ID}\"]\n{extra}"
    );
    let cert = |extra: &str| format!("ca_id = \"{ID}\"\n{extra}");
    let stmt = |effect: &str, actions: &str, resources: &str| format!(
        "name = \"p\"\nstatement {{\n  effect = {effect}\n  actions = {actions}\n  resources = {resources}\n}}"
    );
    vec![
        // ---------------------------------------------------- fleet_device_group
        case("group name with a space", "fleet_device_group", r#"name = "a b""#,
            "Invalid value for name", "name =", &["' ' is not allowed"]),
        case("empty group name", "fleet_device_group", r#"name = """#,
            "Invalid value for name", "name =", &["must be 1 to 128 characters long"]),
        case("group description too long", "fleet_device_group", format!("name = \"g\"\ndescription = \"{long}\""),
            "Invalid value for description", "description =", &["between 0 and 1024 characters long, got 1025"]),
        case("group query syntax error", "fleet_device_group", "name = \"g\"\nquery = \"hardware == \\\"m1\\\" and\"",
            "Invalid device query", "query =", &["line 1, col 21: unexpected end of query"]),
        case("group query on an unknown field", "fleet_device_group", "name = \"g\"\nquery = \"colour == \\\"red\\\"\"",
            "Invalid device query", "query =", &["line 1, col 1:"]),
        case("group config that is not a JSON object", "fleet_device_group", "name = \"g\"\nconfig = jsonencode([1, 2])",
            "Invalid value for config", "config =", &["must be a JSON object"]),
        case("group tag with an empty key", "fleet_device_group", "name = \"g\"\ntags = { \"\" = \"v\" }",
            "Invalid key in tags", "tags =", &["keys must be 1 to 128 characters long"]),
        case("unknown group argument", "fleet_device_group", "name = \"g\"\ncolour = \"red\"",
            "Unsupported argument", "colour =", &["An argument named \"colour\" is not expected here"]),
        // ---------------------------------------------------- fleet_device
        case("device name with a slash", "fleet_device", "name = \"a/b\"\nhardware = \"m1\"",
            "Invalid value for name", "name =", &["invalid character '/' in \"a/b\""]),
        case("empty hardware", "fleet_device", "name = \"d\"\nhardware = \"\"",
            "Invalid value for hardware", "hardware =", &["must not be empty"]),
        case("device attribute with an empty key", "fleet_device", "name = \"d\"\nhardware = \"m1\"\nattributes = { \"\" = \"x\" }",
            "Invalid value for attributes[\"\"]", "attributes =", &["attribute keys must not be empty"]),
        case("device in an empty group id", "fleet_device", "name = \"d\"\nhardware = \"m1\"\ngroup_ids = [\"\"]",
            "Invalid value for group_ids", "group_ids =", &["must not be empty"]),
        case("device without hardware", "fleet_device", "name = \"d\"",
            "Missing required argument", "resource \"fleet_device\" \"x\" {", &["The argument \"hardware\" is required"]),
        // ---------------------------------------------------- fleet_certificate_authority
        case("CA name with a space", "fleet_certificate_authority", "name = \"my ca\"",
            "Invalid value for name", "name =", &["invalid character ' ' in \"my ca\""]),
        case("CA key algorithm", "fleet_certificate_authority", "name = \"ca\"\nkey_algorithm = \"RSA_2048\"",
            "Invalid value for key_algorithm", "key_algorithm =", &["must be one of ECDSA_P256, ED25519, got \"RSA_2048\""]),
        case("CA validity of zero days", "fleet_certificate_authority", "name = \"ca\"\nvalidity_days = 0",
            "Invalid value for validity_days", "validity_days =", &["must be a whole number between 1 and 36500, got 0"]),
        case("CA validity that is not whole", "fleet_certificate_authority", "name = \"ca\"\nvalidity_days = 1.5",
            "Invalid value for validity_days", "validity_days =", &["whole number"]),
        case("empty CA common name", "fleet_certificate_authority", "name = \"ca\"\ncommon_name = \"\"",
            "Invalid value for common_name", "common_name =", &["between 1 and 64 characters long, got 0"]),
        case("CA certificate that is not PEM", "fleet_certificate_authority", format!("name = \"ca\"\ncertificate_pem = \"nope\"\nprivate_key_pem_wo = {ca_key}"),
            "Invalid value for certificate_pem", "certificate_pem =", &["not a PEM document: expected a \"-----BEGIN CERTIFICATE-----\" block"]),
        case("imported CA with a key algorithm", "fleet_certificate_authority", format!("name = \"ca\"\ncertificate_pem = {ca_pem}\nprivate_key_pem_wo = {ca_key}\nkey_algorithm = \"ED25519\""),
            "key_algorithm conflicts with certificate_pem", "key_algorithm =", &["is read from its certificate"]),
        case("imported CA without its key", "fleet_certificate_authority", format!("name = \"ca\"\ncertificate_pem = {ca_pem}"),
            "Missing private_key_pem_wo", "resource \"fleet_certificate_authority\" \"x\" {", &["needs its private key"]),
        case("CA key without a certificate", "fleet_certificate_authority", format!("name = \"ca\"\nprivate_key_pem_wo = {ca_key}"),
            "Missing certificate_pem", "resource \"fleet_certificate_authority\" \"x\" {", &["set certificate_pem too"]),
        // ---------------------------------------------------- fleet_certificate
        case("certificate with a CSR and a key algorithm", "fleet_certificate", cert(&format!("common_name = \"c\"\ncsr_pem = {csr}\nkey_algorithm = \"ED25519\"")),
            "key_algorithm conflicts with csr_pem", "key_algorithm =", &["not both"]),
        case("certificate without a key source", "fleet_certificate", cert("common_name = \"c\""),
            "Missing csr_pem", "resource \"fleet_certificate\" \"x\" {", &["Set csr_pem"]),
        case("certificate for a device and a name", "fleet_certificate", cert(&format!("csr_pem = {csr}\ndevice_id = \"{ID}\"\ncommon_name = \"c\"")),
            "common_name conflicts with device_id", "common_name =", &["not both"]),
        case("certificate without a subject", "fleet_certificate", cert(&format!("csr_pem = {csr}")),
            "Missing device_id", "resource \"fleet_certificate\" \"x\" {", &["Set device_id"]),
        case("certificate status", "fleet_certificate", cert(&format!("csr_pem = {csr}\ncommon_name = \"c\"\nstatus = \"lost\"")),
            "Invalid value for status", "status =", &["got \"lost\""]),
        case("revocation reason without revocation", "fleet_certificate", cert(&format!("csr_pem = {csr}\ncommon_name = \"c\"\nrevocation_reason = \"superseded\"")),
            "revocation_reason without revocation", "revocation_reason =", &["only allowed with status = \"revoked\""]),
        case("unknown revocation reason", "fleet_certificate", cert(&format!("csr_pem = {csr}\ncommon_name = \"c\"\nstatus = \"revoked\"\nrevocation_reason = \"bored\"")),
            "Invalid value for revocation_reason", "revocation_reason =", &["got \"bored\""]),
        case("certificate validity too long", "fleet_certificate", cert(&format!("csr_pem = {csr}\ncommon_name = \"c\"\nvalidity_days = 40000")),
            "Invalid value for validity_days", "validity_days =", &["between 1 and 36500, got 40000"]),
        case("negative early renewal", "fleet_certificate", cert(&format!("csr_pem = {csr}\ncommon_name = \"c\"\nearly_renewal_days = -1")),
            "Invalid value for early_renewal_days", "early_renewal_days =", &["between 0 and 36500, got -1"]),
        case("CSR that is not PEM", "fleet_certificate", cert("csr_pem = \"garbage\"\ncommon_name = \"c\""),
            "Invalid value for csr_pem", "csr_pem =", &["expected a \"-----BEGIN CERTIFICATE REQUEST-----\" block"]),
        case("certificate key algorithm", "fleet_certificate", cert("key_algorithm = \"RSA_2048\"\ncommon_name = \"c\""),
            "Invalid value for key_algorithm", "key_algorithm =", &["got \"RSA_2048\""]),
        // ---------------------------------------------------- fleet_enrollment
        case("unknown name template placeholder", "fleet_enrollment", format!("name = \"e\"\nca_id = \"{ID}\"\ngroup_id = \"{ID}\"\nname_template = \"meter-{{sn}}\""),
            "Invalid value for name_template", "name_template =", &["unknown placeholder \"{sn}\""]),
        case("unclosed name template brace", "fleet_enrollment", format!("name = \"e\"\nca_id = \"{ID}\"\ngroup_id = \"{ID}\"\nname_template = \"meter-{{cn\""),
            "Invalid value for name_template", "name_template =", &["unclosed '{'"]),
        case("enrollment cap of zero", "fleet_enrollment", format!("name = \"e\"\nca_id = \"{ID}\"\ngroup_id = \"{ID}\"\nmax_devices = 0"),
            "Invalid value for max_devices", "max_devices =", &["between 1 and"]),
        case("enrollment name", "fleet_enrollment", format!("name = \"\"\nca_id = \"{ID}\"\ngroup_id = \"{ID}\""),
            "Invalid value for name", "name =", &["must not be empty"]),
        case("enrollment attribute with an empty key", "fleet_enrollment", format!("name = \"e\"\nca_id = \"{ID}\"\ngroup_id = \"{ID}\"\nattributes = {{ \"\" = \"x\" }}"),
            "Invalid value for attributes", "attributes =", &["must not be empty"]),
        // ---------------------------------------------------- fleet_policy
        case("statement effect", "fleet_policy", stmt("\"maybe\"", "[\"config:read\"]", "[\"*\"]"),
            "Invalid value for statement[0].effect", "effect =", &["must be one of allow, deny, got \"maybe\""]),
        case("statement action", "fleet_policy", stmt("\"allow\"", "[\"fly\"]", "[\"*\"]"),
            "Invalid policy statement at statement[0].actions[0]", "actions =", &["unknown action \"fly\""]),
        case("statement resource variable", "fleet_policy", stmt("\"allow\"", "[\"config:read\"]", "[\"fleet:device/$${device.nope}\"]"),
            "Invalid policy statement at statement[0].resources[0]", "resources =", &["unknown variable \"${device.nope}\""]),
        case("statement without actions", "fleet_policy", stmt("\"allow\"", "[]", "[\"*\"]"),
            "Invalid policy statement at statement[0].actions", "actions =", &["must list at least one action"]),
        case("policy name", "fleet_policy", "name = \"p q\"\nstatement {\n  effect = \"allow\"\n  actions = [\"config:read\"]\n  resources = [\"*\"]\n}",
            "Invalid value for name", "name =", &["invalid character ' ' in \"p q\""]),
        // ---------------------------------------------------- fleet_policy_attachment
        case("attachment to nothing", "fleet_policy_attachment", format!("policy_id = \"{ID}\""),
            "Missing attachment target", "resource \"fleet_policy_attachment\" \"x\" {", &["Set exactly one of group_id"]),
        case("attachment to a group and a certificate", "fleet_policy_attachment", format!("policy_id = \"{ID}\"\ngroup_id = \"{ID}\"\ncertificate_id = \"{ID}\""),
            "Conflicting attachment targets", "certificate_id =", &["targets exactly one of group_id, certificate_id"]),
        case("attachment of an empty policy id", "fleet_policy_attachment", format!("policy_id = \"\"\ngroup_id = \"{ID}\""),
            "Invalid value for policy_id", "policy_id =", &["must not be empty"]),
        // ---------------------------------------------------- fleet_firmware
        case("firmware version that is not semver", "fleet_firmware", fw_with("version", "\"1.0\""),
            "Invalid value for version", "version =", &["invalid semantic version \"1.0\""]),
        case("firmware sha256", "fleet_firmware", fw_with("sha256", "\"xyz\""),
            "Invalid value for sha256", "sha256 =", &["must be 64 hexadecimal characters"]),
        case("firmware size of zero", "fleet_firmware", fw_with("size_bytes", "0"),
            "Invalid value for size_bytes", "size_bytes =", &["must be greater than 0, got 0"]),
        case("firmware url scheme", "fleet_firmware", fw_with("url", "\"ftp://fw.example.com/1.bin\""),
            "Invalid value for url", "url =", &["must be an http:// or https:// URL"]),
        case("firmware without hardware", "fleet_firmware", fw_with("hardware", "[]"),
            "Invalid value for hardware", "hardware =", &["must list at least one compatible hardware model"]),
        case("firmware product", "fleet_firmware", fw_with("product", "\"meter fw\""),
            "Invalid value for product", "product =", &["invalid character ' ' in \"meter fw\""]),
        // ---------------------------------------------------- fleet_firmware_rollout
        case("rollout without a strategy", "fleet_firmware_rollout", rollout(""),
            "Missing rollout strategy", "resource \"fleet_firmware_rollout\" \"x\" {", &["Add `phase` blocks"]),
        case("phase over 100 percent", "fleet_firmware_rollout", rollout("phase {\n  percent = 150\n}"),
            "Invalid rollout", "percent =", &["phase[0].percent: must be greater than 0 and at most 100, got 150"]),
        case("phases that do not end at 100", "fleet_firmware_rollout", rollout("phase {\n  percent = 10\n}\nphase {\n  percent = 50\n}"),
            "Invalid rollout", "percent =", &["phase[1].percent: the last phase must reach 100, got 50"]),
        case("rollout state", "fleet_firmware_rollout", rollout("state = \"sleeping\"\nphase {\n  percent = 100\n}"),
            "Invalid value for state", "state =", &["got \"sleeping\""]),
        case("negative retries", "fleet_firmware_rollout", rollout("max_retries = -1\nphase {\n  percent = 100\n}"),
            "Invalid value for max_retries", "max_retries =", &["got -1"]),
        case("failure action", "fleet_firmware_rollout", rollout("phase {\n  percent = 100\n}\nfailure_threshold {\n  percent = 5\n  action = \"explode\"\n}"),
            "Invalid value for failure_threshold.action", "action =", &["got \"explode\""]),
        case("device timeout", "fleet_firmware_rollout", rollout("device_timeout = \"soon\"\nphase {\n  percent = 100\n}"),
            "Invalid rollout", "device_timeout =", &["device_timeout: invalid duration \"soon\""]),
        case("maintenance window start", "fleet_firmware_rollout", rollout("phase {\n  percent = 100\n}\nmaintenance_window {\n  days = [\"mon\"]\n  start = \"25:00\"\n  duration = \"4h\"\n}"),
            "Invalid rollout", "start =", &["maintenance_window.start: invalid time \"25:00\""]),
        // ---------------------------------------------------- data sources, ephemeral resource
        case("devices query syntax error", "data.fleet_devices", "query = \"attr.region ==\"",
            "Invalid device query", "query =", &["line 1, col 15: expected value after '=='"]),
        case("group lookup by id and path", "data.fleet_device_group", format!("id = \"{ID}\"\npath = \"prod\""),
            "Conflicting group lookup", "path =", &["path conflicts with id"]),
        case("group lookup by nothing", "data.fleet_device_group", "",
            "Missing group lookup", "data \"fleet_device_group\" \"x\" {", &["exactly one of id or path"]),
        case("CA lookup by id and name", "data.fleet_certificate_authority", format!("id = \"{ID}\"\nname = \"ca\""),
            "name conflicts with id", "name =", &["Look the CA up by id or by name, not both"]),
        case("device credentials key algorithm", "ephemeral.fleet_device_credentials", format!("ca_id = \"{ID}\"\ncommon_name = \"x\"\nkey_algorithm = \"RSA\""),
            "Invalid value for key_algorithm", "key_algorithm =", &["must be one of ECDSA_P256, ED25519"]),
        case("device credentials for a device and a name", "ephemeral.fleet_device_credentials", format!("ca_id = \"{ID}\"\ndevice_id = \"d\"\ncommon_name = \"x\""),
            "common_name conflicts with device_id", "common_name =", &["not both"]),
        case("rollout name", "fleet_firmware_rollout", "name = \"a b\"\nfirmware_id = \"x\"\ntarget_group_ids = [\"x\"]\nphase {\n  percent = 100\n}",
            "Invalid value for name", "name =", &["' ' is not allowed"]),
    ]
}

/// Checks one case's plan output; returns what is wrong, if anything.
fn check(c: &Case, out: &str) -> Option<String> {
    let flat = out
        .replace(['│', '╷', '╵'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let blocks: Vec<&str> = flat.split("Error: ").skip(1).collect();
    let Some(block) = blocks.iter().find(|b| b.starts_with(c.summary)) else {
        return Some(format!("no error \"{}\"", c.summary));
    };
    if std::env::var_os("BAD_INPUT_CATALOGUE_DUMP").is_some() {
        eprintln!("{}: Error: {block}", c.name);
    }
    let mut problems = Vec::new();
    // Terraform's own errors (schema conformance) name no resource address.
    let core = matches!(
        c.summary,
        "Unsupported argument" | "Missing required argument"
    );
    // `data.T` and `ephemeral.T` are addressed so, and are `data "T"`
    // and `ephemeral "T"` blocks; the rest are resources.
    let (kind, ty) = match c.resource.split_once('.') {
        Some((kind, ty)) => (kind, ty),
        None => ("resource", c.resource),
    };
    let with = format!("with {}.x,", c.resource);
    if !core && !block.contains(&with) {
        problems.push(format!("not reported on {}.x", c.resource));
    }
    // "in resource "T" "x": <line>: <source line>"
    let anchor = format!("in {kind} \"{ty}\" \"x\": ");
    match block.split_once(&anchor) {
        None => problems.push("no source location".into()),
        Some((_, rest)) => {
            let line = rest.trim_start_matches(|ch: char| ch.is_ascii_digit());
            let line = line.strip_prefix(": ").unwrap_or(line);
            if !line.starts_with(c.source) {
                let shown: String = line.chars().take(60).collect();
                problems.push(format!("highlights {shown:?}, want {:?}", c.source));
            }
        }
    }
    for d in c.detail {
        if !block.contains(d) {
            problems.push(format!("detail lacks {d:?}"));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[test]
fn invalid_configurations_fail_at_plan_naming_the_attribute() -> Result<()> {
    let fleetd = Fleetd::start()?;
    let pki = pki();
    let cases = catalogue(&pki);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for kind in [
        "fleet_device_group",
        "fleet_device",
        "fleet_certificate_authority",
        "fleet_certificate",
        "fleet_enrollment",
        "fleet_policy",
        "fleet_policy_attachment",
        "fleet_firmware",
        "fleet_firmware_rollout",
    ] {
        assert!(
            cases.iter().any(|c| c.resource == kind),
            "no case for {kind}"
        );
    }

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(c) = cases.get(i) else { break };
                let result = (|| -> Result<Option<String>> {
                    let wd = Workdir::new(&fleetd)?;
                    let (kind, ty) = c
                        .resource
                        .split_once('.')
                        .unwrap_or(("resource", c.resource));
                    let hcl = format!("{PROVIDER}\n{kind} \"{ty}\" \"x\" {{\n{}\n}}\n", c.body);
                    wd.write_config(&hcl)?;
                    let out = wd.run(&["plan", "-no-color", "-input=false"])?;
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    if out.status.success() {
                        return Ok(Some(format!("plan succeeded:\n{text}")));
                    }
                    // Write-only keys are never shown back, even in errors.
                    if text.contains("PRIVATE KEY") {
                        return Ok(Some(format!("a private key is in the output:\n{text}")));
                    }
                    Ok(check(c, &text).map(|p| format!("{p}\n{text}")))
                })();
                let problem = match result {
                    Ok(p) => p,
                    Err(e) => Some(format!("{e:#}")),
                };
                if let Some(p) = problem {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("--- {} ({}): {p}", c.name, c.resource));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let log = fleetd.log();
    assert!(!log.contains(&fleetd.token), "the token is in fleetd's log");
    assert!(
        !log.contains("PRIVATE KEY"),
        "a private key is in fleetd's log"
    );
    // Plans write nothing.
    for collection in [
        "/v1/device-groups",
        "/v1/devices",
        "/v1/certificate-authorities",
        "/v1/certificates",
        "/v1/enrollments",
        "/v1/policies",
        "/v1/policy-attachments",
        "/v1/firmware",
        "/v1/rollouts",
    ] {
        assert!(fleetd.list(collection)?.is_empty(), "{collection}");
    }
    Ok(())
}
