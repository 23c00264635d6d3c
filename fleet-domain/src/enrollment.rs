//! Zero-touch enrollment rules.
//!
//! An enrollment lets a device that presents a certificate chained to a
//! given CA register itself on first contact. Its rules decide whether a
//! device may enroll and what it is called:
//!
//! - `enabled = false` stops all enrollments without deleting the rules;
//! - `allowed_hardware` (empty = any) limits which models may enroll, so a
//!   leaked factory certificate cannot register arbitrary hardware;
//! - `max_devices` caps how many devices the enrollment creates, bounding
//!   the damage of a leaked credential;
//! - `name_template` names the device from what it presents:
//!   `{cn}` (certificate common name), `{serial}` (certificate serial, hex),
//!   `{hardware}`, `{attr.KEY}` (a reported or assigned attribute), with
//!   `{{` / `}}` for literal braces. Unknown placeholders are rejected when
//!   the enrollment is created, not when the first device shows up.
//! - `attributes` are assigned to every enrolled device and override what
//!   the device reports: the platform team's labels are authoritative.
//! - `common_name_pattern` (optional) admits only certificates whose
//!   common name matches a glob (`*` any run of characters, `?` one), e.g.
//!   `meter-prod-*`: one factory CA can feed several environments or
//!   product lines, the certificate (signed, unlike reported attributes)
//!   deciding where a device lands.
//!
//! When several enrollments of a CA admit a device, the most specific one
//! wins: one with both a common-name pattern and a hardware list before
//! one with a pattern only, then one with a hardware list only, then one
//! without conditions; among equals the oldest. See [`EnrollmentRules::specificity`].

use std::collections::BTreeMap;

use super::{check_name, indexed, FieldError, MAX_NAME_LEN};

/// Template used when none is given.
pub const DEFAULT_NAME_TEMPLATE: &str = "{cn}";
pub const MAX_TEMPLATE_LEN: usize = 256;
/// Longest device name a template may render.
pub const MAX_DEVICE_NAME_LEN: usize = 128;
/// Longest `common_name_pattern`.
pub const MAX_PATTERN_LEN: usize = 128;

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one
/// character, everything else literal).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || (p[i] != '*' && p[i] == t[j])) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Cn,
    Serial,
    Hardware,
    Attr(String),
}

/// A parsed `name_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    source: String,
    parts: Vec<Part>,
}

/// What a device presents when it enrolls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentRequest {
    /// Common name of the client certificate.
    pub common_name: String,
    /// Serial of the client certificate, hex.
    pub serial: String,
    /// Hardware model the device reports.
    pub hardware: String,
    /// Attributes the device reports.
    pub attributes: BTreeMap<String, String>,
}

impl NameTemplate {
    /// Parses a template; errors name the `name_template` field and the
    /// 1-based character position.
    pub fn parse(template: &str) -> Result<Self, FieldError> {
        let err = |pos: usize, m: String| {
            FieldError::new("name_template", format!("{m} at position {}", pos + 1))
        };
        if template.is_empty() {
            return Err(FieldError::new("name_template", "must not be empty"));
        }
        if template.chars().count() > MAX_TEMPLATE_LEN {
            return Err(FieldError::new(
                "name_template",
                format!("must be at most {MAX_TEMPLATE_LEN} characters long"),
            ));
        }
        let chars: Vec<char> = template.chars().collect();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '{' if chars.get(i + 1) == Some(&'{') => {
                    lit.push('{');
                    i += 2;
                }
                '}' if chars.get(i + 1) == Some(&'}') => {
                    lit.push('}');
                    i += 2;
                }
                '}' => {
                    return Err(err(
                        i,
                        "unmatched '}' (write '}}' for a literal brace)".into(),
                    ))
                }
                '{' => {
                    let Some(len) = chars[i + 1..].iter().position(|c| *c == '}') else {
                        return Err(err(
                            i,
                            "unclosed '{' (write '{{' for a literal brace)".into(),
                        ));
                    };
                    let name: String = chars[i + 1..i + 1 + len].iter().collect();
                    let part = match name.as_str() {
                        "cn" => Part::Cn,
                        "serial" => Part::Serial,
                        "hardware" => Part::Hardware,
                        other => match other.strip_prefix("attr.") {
                            Some(key) if !key.is_empty() && !key.contains('{') => Part::Attr(key.to_string()),
                            _ => {
                                return Err(err(
                                    i,
                                    format!(
                                        "unknown placeholder \"{{{name}}}\" (use {{cn}}, {{serial}}, {{hardware}} or {{attr.<key>}})"
                                    ),
                                ))
                            }
                        },
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(part);
                    i += len + 2;
                }
                c => {
                    lit.push(c);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(NameTemplate {
            source: template.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Attribute keys the template needs.
    pub fn attribute_keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Attr(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// Renders the name for a device with `attributes` (already merged).
    /// Fails with the missing attribute's key.
    pub fn render(
        &self,
        req: &EnrollmentRequest,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Cn => out.push_str(&req.common_name),
                Part::Serial => out.push_str(&req.serial),
                Part::Hardware => out.push_str(&req.hardware),
                Part::Attr(k) => out.push_str(attributes.get(k).ok_or_else(|| k.clone())?),
            }
        }
        Ok(out)
    }
}

/// Validated enrollment rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRules {
    pub enabled: bool,
    pub name_template: NameTemplate,
    pub allowed_hardware: Vec<String>,
    pub max_devices: Option<u64>,
    pub attributes: BTreeMap<String, String>,
    pub common_name_pattern: Option<String>,
}

/// The user's enrollment settings, as submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentSpec {
    pub enabled: bool,
    /// `None` → [`DEFAULT_NAME_TEMPLATE`].
    pub name_template: Option<String>,
    pub allowed_hardware: Vec<String>,
    pub max_devices: Option<i64>,
    pub attributes: BTreeMap<String, String>,
    pub common_name_pattern: Option<String>,
}

/// Validates enrollment settings.
pub fn validate(spec: &EnrollmentSpec) -> Result<EnrollmentRules, FieldError> {
    let name_template = NameTemplate::parse(
        spec.name_template
            .as_deref()
            .unwrap_or(DEFAULT_NAME_TEMPLATE),
    )?;
    for (i, hw) in spec.allowed_hardware.iter().enumerate() {
        let field = indexed("allowed_hardware", i);
        check_name(&field, hw, MAX_NAME_LEN)?;
        if spec.allowed_hardware[..i].contains(hw) {
            return Err(FieldError::new(
                field,
                format!("duplicate hardware model {hw:?}"),
            ));
        }
    }
    let max_devices = match spec.max_devices {
        None => None,
        Some(n) if n >= 1 => Some(n as u64),
        Some(n) => {
            return Err(FieldError::new(
                "max_devices",
                format!("must be at least 1, got {n} (set enabled = false to stop enrollments, or omit for no limit)"),
            ))
        }
    };
    for key in spec.attributes.keys() {
        if key.trim().is_empty() {
            return Err(FieldError::new(
                "attributes",
                "attribute keys must not be empty",
            ));
        }
    }
    if let Some(p) = &spec.common_name_pattern {
        let len = p.chars().count();
        if p.trim().is_empty() {
            return Err(FieldError::new(
                "common_name_pattern",
                "must not be empty (omit it to admit any common name)",
            ));
        }
        if len > MAX_PATTERN_LEN {
            return Err(FieldError::new(
                "common_name_pattern",
                format!("is {len} characters long, at most {MAX_PATTERN_LEN} are allowed"),
            ));
        }
        if p.chars().any(char::is_control) {
            return Err(FieldError::new(
                "common_name_pattern",
                "must not contain control characters",
            ));
        }
    }
    Ok(EnrollmentRules {
        enabled: spec.enabled,
        name_template,
        allowed_hardware: spec.allowed_hardware.clone(),
        max_devices,
        attributes: spec.attributes.clone(),
        common_name_pattern: spec.common_name_pattern.clone(),
    })
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("enrollment is disabled")]
    Disabled,
    #[error("the certificate's common name {common_name:?} does not match {pattern:?}")]
    CommonNameMismatch {
        common_name: String,
        pattern: String,
    },
    #[error("hardware {hardware:?} is not allowed (allowed: {})", allowed.join(", "))]
    HardwareNotAllowed {
        hardware: String,
        allowed: Vec<String>,
    },
    #[error("the enrollment has reached its limit of {max_devices} devices")]
    LimitReached { max_devices: u64 },
    #[error("the name template needs attribute {key:?}, which the device did not report")]
    MissingAttribute { key: String },
    #[error("the rendered device name {name:?} is invalid: {message}")]
    InvalidName { name: String, message: String },
}

/// The outcome of an enrollment attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentDecision {
    Accept {
        /// The device's name, from the template.
        name: String,
        /// Reported attributes overlaid with the enrollment's.
        attributes: BTreeMap<String, String>,
    },
    Reject(RejectReason),
}

impl EnrollmentRules {
    /// How narrowly the rules select devices: enrollments are tried in
    /// decreasing specificity (a common-name pattern counts more than a
    /// hardware list), so a catch-all enrollment never shadows a specific
    /// one whatever their creation order.
    pub fn specificity(&self) -> u8 {
        2 * u8::from(self.common_name_pattern.is_some())
            + u8::from(!self.allowed_hardware.is_empty())
    }

    /// Decides on an enrollment given how many devices this enrollment
    /// has created so far. Callers should not count a device that
    /// re-enrolls with the same certificate (it already exists).
    ///
    /// Checks run cheapest and least revealing first: disabled, hardware,
    /// limit, then naming.
    pub fn decide(&self, req: &EnrollmentRequest, enrolled_so_far: u64) -> EnrollmentDecision {
        use EnrollmentDecision::Reject;
        if !self.enabled {
            return Reject(RejectReason::Disabled);
        }
        if let Some(pattern) = &self.common_name_pattern {
            if !glob_match(pattern, &req.common_name) {
                return Reject(RejectReason::CommonNameMismatch {
                    common_name: req.common_name.clone(),
                    pattern: pattern.clone(),
                });
            }
        }
        if !self.allowed_hardware.is_empty() && !self.allowed_hardware.contains(&req.hardware) {
            return Reject(RejectReason::HardwareNotAllowed {
                hardware: req.hardware.clone(),
                allowed: self.allowed_hardware.clone(),
            });
        }
        if let Some(max) = self.max_devices {
            if enrolled_so_far >= max {
                return Reject(RejectReason::LimitReached { max_devices: max });
            }
        }
        let mut attributes = req.attributes.clone();
        attributes.extend(self.attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
        let name = match self.name_template.render(req, &attributes) {
            Ok(name) => name,
            Err(key) => return Reject(RejectReason::MissingAttribute { key }),
        };
        if let Err(message) = check_device_name(&name) {
            return Reject(RejectReason::InvalidName { name, message });
        }
        EnrollmentDecision::Accept { name, attributes }
    }
}

/// Device names are free text (they come from certificates), but must be
/// non-blank, bounded and free of control characters.
fn check_device_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("it is empty".into());
    }
    let len = name.chars().count();
    if len > MAX_DEVICE_NAME_LEN {
        return Err(format!(
            "it is {len} characters long, at most {MAX_DEVICE_NAME_LEN} are allowed"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("it contains control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> EnrollmentRequest {
        let mut attributes = BTreeMap::new();
        attributes.insert("site".to_string(), "plant-7".to_string());
        attributes.insert("region".to_string(), "reported".to_string());
        EnrollmentRequest {
            common_name: "SN-0042".into(),
            serial: "4a0b".into(),
            hardware: "meter-v2".into(),
            attributes,
        }
    }

    fn rules(template: &str) -> EnrollmentRules {
        let mut attributes = BTreeMap::new();
        attributes.insert("region".to_string(), "eu-west".to_string());
        validate(&EnrollmentSpec {
            enabled: true,
            name_template: Some(template.into()),
            allowed_hardware: vec!["meter-v2".into(), "meter-v3".into()],
            max_devices: Some(100),
            attributes,
            common_name_pattern: None,
        })
        .unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_match("meter-prod-*", "meter-prod-000001"));
        assert!(glob_match("meter-prod-*", "meter-prod-"));
        assert!(!glob_match("meter-prod-*", "meter-staging-000001"));
        assert!(glob_match("*-prod-*", "gw-prod-7"));
        assert!(glob_match("SN-00??", "SN-0042"));
        assert!(!glob_match("SN-00??", "SN-00423"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn common_name_pattern_admits_and_refuses() {
        let mut r = rules("{cn}");
        r.common_name_pattern = Some("SN-*".into());
        assert!(matches!(
            r.decide(&req(), 0),
            EnrollmentDecision::Accept { .. }
        ));
        r.common_name_pattern = Some("GW-*".into());
        assert_eq!(
            r.decide(&req(), 0),
            EnrollmentDecision::Reject(RejectReason::CommonNameMismatch {
                common_name: "SN-0042".into(),
                pattern: "GW-*".into()
            })
        );
        assert_eq!(r.specificity(), 3);
        r.allowed_hardware.clear();
        assert_eq!(r.specificity(), 2);
        r.common_name_pattern = None;
        assert_eq!(r.specificity(), 0);
        let bad = |p: &str| {
            validate(&EnrollmentSpec {
                common_name_pattern: Some(p.into()),
                ..Default::default()
            })
            .unwrap_err()
            .to_string()
        };
        assert!(
            bad(" ").starts_with("common_name_pattern: must not be empty"),
            "{}",
            bad(" ")
        );
        assert!(bad(&"x".repeat(129)).contains("at most 128"));
        assert!(bad("a\nb").contains("control"));
    }

    fn tmpl_err(t: &str) -> String {
        NameTemplate::parse(t).unwrap_err().to_string()
    }

    #[test]
    fn renders_placeholders() {
        let r = rules("{hardware}-{attr.region}-{attr.site}-{cn}-{serial}");
        match r.decide(&req(), 0) {
            EnrollmentDecision::Accept { name, attributes } => {
                assert_eq!(name, "meter-v2-eu-west-plant-7-SN-0042-4a0b");
                assert_eq!(attributes["region"], "eu-west", "enrollment attributes win");
                assert_eq!(
                    attributes["site"], "plant-7",
                    "reported attributes are kept"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn literal_braces() {
        let t = NameTemplate::parse("{{x}}-{cn}").unwrap();
        assert_eq!(t.render(&req(), &BTreeMap::new()).unwrap(), "{x}-SN-0042");
        assert_eq!(t.as_str(), "{{x}}-{cn}");
    }

    #[test]
    fn default_template_is_the_common_name() {
        let r = validate(&EnrollmentSpec {
            enabled: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.name_template.as_str(), "{cn}");
        assert_eq!(
            r.decide(&req(), 0),
            EnrollmentDecision::Accept {
                name: "SN-0042".into(),
                attributes: req().attributes
            }
        );
    }

    #[test]
    fn template_errors() {
        assert_eq!(
            tmpl_err("dev-{sn}"),
            "name_template: unknown placeholder \"{sn}\" (use {cn}, {serial}, {hardware} or {attr.<key>}) at position 5"
        );
        assert_eq!(tmpl_err("{attr.}"), "name_template: unknown placeholder \"{attr.}\" (use {cn}, {serial}, {hardware} or {attr.<key>}) at position 1");
        assert_eq!(tmpl_err("{}"), "name_template: unknown placeholder \"{}\" (use {cn}, {serial}, {hardware} or {attr.<key>}) at position 1");
        assert_eq!(
            tmpl_err("x{cn"),
            "name_template: unclosed '{' (write '{{' for a literal brace) at position 2"
        );
        assert_eq!(
            tmpl_err("a}b"),
            "name_template: unmatched '}' (write '}}' for a literal brace) at position 2"
        );
        assert_eq!(tmpl_err(""), "name_template: must not be empty");
        assert!(tmpl_err(&"x".repeat(257)).contains("at most 256"));
        let t = NameTemplate::parse("{attr.a}{attr.b}{cn}").unwrap();
        assert_eq!(t.attribute_keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn spec_errors() {
        let e = |spec: EnrollmentSpec| validate(&spec).unwrap_err().to_string();
        assert_eq!(
            e(EnrollmentSpec { allowed_hardware: vec!["a".into(), "b c".into()], ..Default::default() }),
            "allowed_hardware[1]: invalid character ' ' in \"b c\": use letters, digits, '-', '_' and '.'"
        );
        assert_eq!(
            e(EnrollmentSpec {
                allowed_hardware: vec!["a".into(), "a".into()],
                ..Default::default()
            }),
            "allowed_hardware[1]: duplicate hardware model \"a\""
        );
        assert_eq!(
            e(EnrollmentSpec { max_devices: Some(0), ..Default::default() }),
            "max_devices: must be at least 1, got 0 (set enabled = false to stop enrollments, or omit for no limit)"
        );
        let mut attrs = BTreeMap::new();
        attrs.insert(" ".to_string(), "x".to_string());
        assert_eq!(
            e(EnrollmentSpec {
                attributes: attrs,
                ..Default::default()
            }),
            "attributes: attribute keys must not be empty"
        );
        assert!(e(EnrollmentSpec {
            name_template: Some("{x}".into()),
            ..Default::default()
        })
        .starts_with("name_template:"));
    }

    #[test]
    fn disabled_enrollment_rejects_first() {
        let mut r = rules("{cn}");
        r.enabled = false;
        let mut bad = req();
        bad.hardware = "toaster".into();
        assert_eq!(
            r.decide(&bad, 1000),
            EnrollmentDecision::Reject(RejectReason::Disabled)
        );
    }

    #[test]
    fn hardware_allow_list() {
        let r = rules("{cn}");
        let mut other = req();
        other.hardware = "toaster".into();
        let d = r.decide(&other, 0);
        assert_eq!(
            d,
            EnrollmentDecision::Reject(RejectReason::HardwareNotAllowed {
                hardware: "toaster".into(),
                allowed: vec!["meter-v2".into(), "meter-v3".into()]
            })
        );
        if let EnrollmentDecision::Reject(reason) = d {
            assert_eq!(
                reason.to_string(),
                "hardware \"toaster\" is not allowed (allowed: meter-v2, meter-v3)"
            );
        }
        let mut any = rules("{cn}");
        any.allowed_hardware.clear();
        assert!(matches!(
            any.decide(&other, 0),
            EnrollmentDecision::Accept { .. }
        ));
    }

    #[test]
    fn device_limit() {
        let r = rules("{cn}");
        assert!(matches!(
            r.decide(&req(), 99),
            EnrollmentDecision::Accept { .. }
        ));
        assert_eq!(
            r.decide(&req(), 100),
            EnrollmentDecision::Reject(RejectReason::LimitReached { max_devices: 100 })
        );
        let mut unlimited = r.clone();
        unlimited.max_devices = None;
        assert!(matches!(
            unlimited.decide(&req(), u64::MAX),
            EnrollmentDecision::Accept { .. }
        ));
    }

    #[test]
    fn missing_attribute_and_bad_names() {
        let r = rules("{attr.floor}");
        assert_eq!(
            r.decide(&req(), 0),
            EnrollmentDecision::Reject(RejectReason::MissingAttribute {
                key: "floor".into()
            })
        );
        let r = rules("{cn}");
        let mut blank = req();
        blank.common_name = "  ".into();
        assert!(matches!(
            r.decide(&blank, 0),
            EnrollmentDecision::Reject(RejectReason::InvalidName { .. })
        ));
        let mut ctrl = req();
        ctrl.common_name = "a\u{0}b".into();
        match r.decide(&ctrl, 0) {
            EnrollmentDecision::Reject(reason) => {
                assert_eq!(
                    reason.to_string(),
                    "the rendered device name \"a\\0b\" is invalid: it contains control characters"
                )
            }
            other => panic!("{other:?}"),
        }
        let mut long = req();
        long.common_name = "x".repeat(129);
        assert!(matches!(
            r.decide(&long, 0),
            EnrollmentDecision::Reject(RejectReason::InvalidName { .. })
        ));
    }
}
