//! Access policies for the device API: validation and evaluation.
//!
//! A policy is a list of statements `{effect, actions, resources}`, in the
//! spirit of AWS IoT policies:
//!
//! ```text
//! allow  [firmware:download, config:read]  [fleet:device/${device.id}]
//! allow  [telemetry:publish]               [fleet:telemetry/${device.id}/*]
//! deny   [firmware:*]                      [fleet:group/quarantine/*]
//! ```
//!
//! Evaluation is **deny by default** and **an explicit deny always wins**:
//! a request is allowed only if some statement allows it and no statement
//! denies it, whatever the order of policies and statements.
//!
//! Actions come from a fixed catalogue ([`ACTIONS`]) so that a typo such
//! as `firmware:donwload` is an error at `terraform plan` rather than a
//! permission that silently never matches. `service:*` and `*` are
//! wildcards over the catalogue.
//!
//! Resources are patterns `fleet:<type>/<rest>` (or `*`, `fleet:*`), where
//! `*` matches any run of characters (including `/`) and variables are
//! substituted per device: `${device.id}`, `${device.name}`,
//! `${device.hardware}`, `${device.attr.KEY}` and `${device.group}`, which
//! matches any of the device's groups. Substituted values are matched
//! literally — a `*` in a device name is not a wildcard — and a variable
//! with no value (a missing attribute) makes the pattern match nothing,
//! so an `allow` never widens and a `deny` never applies by accident.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::query::DeviceFacts;
use super::{check_name, indexed, FieldError, MAX_NAME_LEN};

/// Every action the device API authorises.
pub const ACTIONS: &[&str] = &[
    "device:checkin",
    "device:enroll",
    "config:read",
    "firmware:download",
    "firmware:report",
    "telemetry:publish",
];

/// Resource types that may follow `fleet:`.
pub const RESOURCE_TYPES: &[&str] = &["device", "group", "config", "firmware", "telemetry"];

/// Variables usable in resource patterns (plus `${device.attr.<key>}`).
const VARIABLES_HELP: &str =
    "${device.id}, ${device.name}, ${device.group}, ${device.hardware}, ${device.attr.<key>}";

pub const MAX_STATEMENTS: usize = 100;
pub const MAX_ENTRIES_PER_LIST: usize = 100;
pub const MAX_PATTERN_LEN: usize = 512;
/// How many versions of a policy are kept by default.
pub const DEFAULT_KEEP_VERSIONS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement as written by the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A validated policy, ready for evaluation. Build it with [`Policy::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub name: String,
    statements: Vec<Statement>,
    compiled: Vec<CompiledStatement>,
}

impl Policy {
    /// Validates `name` and `statements` and compiles the patterns.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        statements: Vec<Statement>,
    ) -> Result<Policy, FieldError> {
        let name = name.into();
        validate_name(&name)?;
        let compiled = compile_statements(&statements)?;
        Ok(Policy {
            id: id.into(),
            name,
            statements,
            compiled,
        })
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CompiledStatement {
    effect: Effect,
    actions: Vec<ActionPattern>,
    resources: Vec<ResourcePattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ActionPattern {
    Any,
    Service(String),
    Exact(String),
}

impl ActionPattern {
    fn matches(&self, action: &str) -> bool {
        match self {
            ActionPattern::Any => true,
            ActionPattern::Service(s) => action.split_once(':').is_some_and(|(svc, _)| svc == s),
            ActionPattern::Exact(a) => a == action,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Id,
    Name,
    Group,
    Hardware,
    Attr(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Star,
    Var(Var),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourcePattern {
    segs: Vec<Seg>,
}

/// Validates a policy `name`.
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    check_name("name", name, MAX_NAME_LEN)
}

/// Validates statements, naming the offending element as
/// `statement[i].actions[j]` / `statement[i].resources[j]`.
pub fn validate_statements(statements: &[Statement]) -> Result<(), FieldError> {
    compile_statements(statements).map(|_| ())
}

fn compile_statements(statements: &[Statement]) -> Result<Vec<CompiledStatement>, FieldError> {
    if statements.is_empty() {
        return Err(FieldError::new(
            "statement",
            "a policy needs at least one statement",
        ));
    }
    if statements.len() > MAX_STATEMENTS {
        return Err(FieldError::new(
            "statement",
            format!(
                "at most {MAX_STATEMENTS} statements are allowed, got {}",
                statements.len()
            ),
        ));
    }
    statements
        .iter()
        .enumerate()
        .map(|(i, s)| compile_statement(s).map_err(|e| e.within(&indexed("statement", i))))
        .collect()
}

fn compile_statement(s: &Statement) -> Result<CompiledStatement, FieldError> {
    check_list("actions", s.actions.len(), "action")?;
    check_list("resources", s.resources.len(), "resource")?;
    let actions = s
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| parse_action(a).map_err(|m| FieldError::new(indexed("actions", i), m)))
        .collect::<Result<_, _>>()?;
    let resources = s
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| parse_resource(r).map_err(|m| FieldError::new(indexed("resources", i), m)))
        .collect::<Result<_, _>>()?;
    Ok(CompiledStatement {
        effect: s.effect,
        actions,
        resources,
    })
}

fn check_list(field: &str, len: usize, what: &str) -> Result<(), FieldError> {
    if len == 0 {
        return Err(FieldError::new(
            field,
            format!("must list at least one {what}"),
        ));
    }
    if len > MAX_ENTRIES_PER_LIST {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_ENTRIES_PER_LIST} entries are allowed, got {len}"),
        ));
    }
    Ok(())
}

fn services() -> impl Iterator<Item = &'static str> {
    let mut seen = Vec::new();
    ACTIONS.iter().filter_map(move |a| {
        let svc = a.split_once(':').map_or(*a, |(s, _)| s);
        (!seen.contains(&svc)).then(|| {
            seen.push(svc);
            svc
        })
    })
}

fn parse_action(a: &str) -> Result<ActionPattern, String> {
    if a == "*" {
        return Ok(ActionPattern::Any);
    }
    if ACTIONS.contains(&a) {
        return Ok(ActionPattern::Exact(a.to_string()));
    }
    if let Some(svc) = a.strip_suffix(":*") {
        if services().any(|s| s == svc) {
            return Ok(ActionPattern::Service(svc.to_string()));
        }
        let known: Vec<String> = services().map(|s| format!("{s}:*")).collect();
        return Err(format!(
            "unknown action {a:?}: no service {svc:?} (wildcards: *, {})",
            known.join(", ")
        ));
    }
    let mut msg = format!("unknown action {a:?}");
    if let Some(best) = closest(a, ACTIONS) {
        msg.push_str(&format!(" (did you mean {best:?}?)"));
    } else {
        msg.push_str(&format!(" (actions: {})", ACTIONS.join(", ")));
    }
    Err(msg)
}

/// The catalogue entry within edit distance 2 of `s`, for "did you mean".
fn closest(s: &str, candidates: &[&'static str]) -> Option<&'static str> {
    candidates
        .iter()
        .map(|c| (edit_distance(s, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn parse_resource(r: &str) -> Result<ResourcePattern, String> {
    if r.is_empty() {
        return Err("must not be empty".into());
    }
    if r.chars().count() > MAX_PATTERN_LEN {
        return Err(format!("must be at most {MAX_PATTERN_LEN} characters long"));
    }
    if let Some(c) = r.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid character {c:?} in resource pattern {r:?}"));
    }
    if r == "*" {
        return Ok(ResourcePattern {
            segs: vec![Seg::Star],
        });
    }
    let Some(rest) = r.strip_prefix("fleet:") else {
        return Err(format!(
            "malformed resource pattern {r:?}: expected \"fleet:<type>/<id>\" (e.g. \"fleet:device/${{device.id}}\") or \"*\""
        ));
    };
    let (ty, tail) = match rest.split_once('/') {
        Some((ty, tail)) => (ty, Some(tail)),
        None => (rest, None),
    };
    if ty != "*" && !RESOURCE_TYPES.contains(&ty) {
        return Err(format!(
            "unknown resource type {ty:?} in {r:?} (types: {}, or *)",
            RESOURCE_TYPES.join(", ")
        ));
    }
    match tail {
        None if ty == "*" => {}
        None => {
            return Err(format!(
                "malformed resource pattern {r:?}: expected \"fleet:{ty}/<id>\""
            ))
        }
        Some("") => {
            return Err(format!(
                "malformed resource pattern {r:?}: nothing after \"fleet:{ty}/\" (use * to match everything)"
            ))
        }
        Some(_) => {}
    }
    let mut segs = vec![];
    let mut lit = String::new();
    let mut chars = r.char_indices().peekable();
    let flush = |lit: &mut String, segs: &mut Vec<Seg>| {
        if !lit.is_empty() {
            segs.push(Seg::Lit(std::mem::take(lit)));
        }
    };
    while let Some((i, c)) = chars.next() {
        match c {
            '*' => {
                flush(&mut lit, &mut segs);
                // `**` means the same as `*`; keep one to bound matching work.
                if segs.last() != Some(&Seg::Star) {
                    segs.push(Seg::Star);
                }
            }
            '$' => {
                if chars.next().map(|(_, c)| c) != Some('{') {
                    return Err(format!(
                        "malformed resource pattern {r:?}: '$' must start a variable such as ${{device.id}}"
                    ));
                }
                let body_start = i + 2;
                let Some(close) = r[body_start..].find('}') else {
                    return Err(format!(
                        "malformed resource pattern {r:?}: unterminated variable, missing '}}'"
                    ));
                };
                let name = &r[body_start..body_start + close];
                let var = match name {
                    "device.id" => Var::Id,
                    "device.name" => Var::Name,
                    "device.group" => Var::Group,
                    "device.hardware" => Var::Hardware,
                    _ => match name.strip_prefix("device.attr.") {
                        Some(key) if !key.is_empty() && !key.contains(['$', '{']) => {
                            Var::Attr(key.to_string())
                        }
                        Some(_) => {
                            return Err(format!(
                                "malformed variable \"${{{name}}}\": expected ${{device.attr.<key>}}"
                            ))
                        }
                        None => {
                            return Err(format!(
                                "unknown variable \"${{{name}}}\" (variables: {VARIABLES_HELP})"
                            ))
                        }
                    },
                };
                flush(&mut lit, &mut segs);
                segs.push(Seg::Var(var));
                while chars.next_if(|&(j, _)| j <= body_start + close).is_some() {}
            }
            '{' | '}' => {
                return Err(format!(
                    "malformed resource pattern {r:?}: {c:?} outside a variable (variables look like ${{device.id}})"
                ))
            }
            c => lit.push(c),
        }
    }
    flush(&mut lit, &mut segs);
    Ok(ResourcePattern { segs })
}

/// Who is asking: the device's facts and the groups it belongs to.
///
/// `group_ids` is what `${device.group}` ranges over. Pass the groups the
/// device is a direct member of (and, if policies should be able to name
/// them, their ancestors too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub device: DeviceFacts,
    pub group_ids: Vec<String>,
}

impl RequestContext {
    /// The values a variable takes for this device; empty values count as
    /// missing.
    fn values(&self, var: &Var) -> Vec<&str> {
        let values: Vec<&str> = match var {
            Var::Id => vec![self.device.id.as_str()],
            Var::Name => vec![self.device.name.as_str()],
            Var::Hardware => vec![self.device.hardware.as_str()],
            Var::Group => self.group_ids.iter().map(String::as_str).collect(),
            Var::Attr(k) => self
                .device
                .attributes
                .get(k)
                .map(String::as_str)
                .into_iter()
                .collect(),
        };
        values.into_iter().filter(|v| !v.is_empty()).collect()
    }
}

impl ResourcePattern {
    fn matches(&self, resource: &str, ctx: &RequestContext) -> bool {
        // Most resources a request is decided on differ from a pattern in
        // its leading text (`fleet:group/…` against `fleet:device/…`):
        // refused here, before any backtracking.
        if let Some(Seg::Lit(l)) = self.segs.first() {
            if !resource.starts_with(l.as_str()) {
                return false;
            }
        }
        // Memoise failed (segment, position) pairs: with several `*` the
        // naive backtracking is exponential; this bounds it to
        // segments × positions × variable values.
        let mut failed = HashSet::new();
        self.go(0, resource, 0, ctx, &mut failed)
    }

    fn go(
        &self,
        i: usize,
        input: &str,
        pos: usize,
        ctx: &RequestContext,
        failed: &mut HashSet<(usize, usize)>,
    ) -> bool {
        let Some(seg) = self.segs.get(i) else {
            return pos == input.len();
        };
        if failed.contains(&(i, pos)) {
            return false;
        }
        let rest = &input[pos..];
        let ok = match seg {
            Seg::Lit(l) => {
                rest.starts_with(l.as_str()) && self.go(i + 1, input, pos + l.len(), ctx, failed)
            }
            Seg::Star => {
                let mut ends: Vec<usize> = rest.char_indices().map(|(k, _)| pos + k).collect();
                ends.push(input.len());
                ends.into_iter()
                    .any(|p| self.go(i + 1, input, p, ctx, failed))
            }
            Seg::Var(v) => ctx.values(v).into_iter().any(|val| {
                rest.starts_with(val) && self.go(i + 1, input, pos + val.len(), ctx, failed)
            }),
        };
        if !ok {
            failed.insert((i, pos));
        }
        ok
    }
}

/// Why a request was allowed or denied; logged and returned to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A `deny` statement matched; it overrides every `allow`.
    ExplicitDeny {
        policy: String,
        statement_index: usize,
    },
    /// An `allow` statement matched and no `deny` did.
    Allow {
        policy: String,
        statement_index: usize,
    },
    /// Nothing matched (or the action is not in the catalogue).
    DefaultDeny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
}

/// Decides whether the device in `ctx` may perform `action` on `resource`
/// under `policies`. Deny by default; an explicit deny wins over any allow.
/// The reason names the first matching statement (policy id and index) in
/// the order given.
pub fn authorize(
    ctx: &RequestContext,
    policies: &[Policy],
    action: &str,
    resource: &str,
) -> Decision {
    if !ACTIONS.contains(&action) {
        return Decision {
            allowed: false,
            reason: Reason::DefaultDeny,
        };
    }
    let mut first_allow = None;
    for policy in policies {
        for (index, st) in policy.compiled.iter().enumerate() {
            let applies = st.actions.iter().any(|a| a.matches(action))
                && st.resources.iter().any(|r| r.matches(resource, ctx));
            if !applies {
                continue;
            }
            match st.effect {
                Effect::Deny => {
                    return Decision {
                        allowed: false,
                        reason: Reason::ExplicitDeny {
                            policy: policy.id.clone(),
                            statement_index: index,
                        },
                    }
                }
                Effect::Allow => {
                    first_allow.get_or_insert((policy.id.clone(), index));
                }
            }
        }
    }
    match first_allow {
        Some((policy, statement_index)) => Decision {
            allowed: true,
            reason: Reason::Allow {
                policy,
                statement_index,
            },
        },
        None => Decision {
            allowed: false,
            reason: Reason::DefaultDeny,
        },
    }
}

/// Policy versions to delete so that only the newest `keep` remain (at
/// least one: the current version is never pruned). Returned oldest first.
/// Versions are kept so that an operator can see and restore what was in
/// force before; an unbounded history would grow with every apply.
pub fn prune_versions(versions: &[u64], keep: usize) -> Vec<u64> {
    let keep = keep.max(1);
    let mut sorted: Vec<u64> = versions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let excess = sorted.len().saturating_sub(keep);
    sorted.truncate(excess);
    sorted
}

// ---------------------------------------------------------------- fuzzing

/// Entry point for a fuzz target. The input is read as lines: `+` starts an
/// allow statement and `-` a deny statement, `a<action>` and `r<pattern>`
/// add to the last statement, `?<action> <resource>` is a request to decide.
/// Checks that validation and compilation agree, that statements survive the
/// JSON form the store keeps, that every decision names a statement of the
/// right effect, and that an explicit deny of everything wins in any order.
/// Never panics unless one of those invariants is broken.
pub fn fuzz_statements(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut statements: Vec<Statement> = Vec::new();
    let mut requests: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let mut chars = line.chars();
        let tag = chars.next();
        let rest = chars.as_str();
        match tag {
            Some(c @ ('+' | '-')) => statements.push(Statement {
                effect: if c == '+' {
                    Effect::Allow
                } else {
                    Effect::Deny
                },
                actions: Vec::new(),
                resources: Vec::new(),
            }),
            Some('a') => statements
                .iter_mut()
                .last()
                .into_iter()
                .for_each(|s| s.actions.push(rest.into())),
            Some('r') => statements
                .iter_mut()
                .last()
                .into_iter()
                .for_each(|s| s.resources.push(rest.into())),
            Some('?') => {
                let (a, r) = rest.split_once(' ').unwrap_or((rest, ""));
                requests.push((a.into(), r.into()));
            }
            _ => {}
        }
    }
    let checked = validate_statements(&statements);
    let policy = Policy::new("p-1", "fuzz", statements.clone());
    assert_eq!(
        checked.is_ok(),
        policy.is_ok(),
        "validation and compilation disagree"
    );
    let Ok(policy) = policy else { return };
    let json = serde_json::to_string(&statements).expect("statements serialize");
    let back: Vec<Statement> = serde_json::from_str(&json).expect("statements deserialize");
    assert_eq!(Policy::new("p-1", "fuzz", back).as_ref(), Ok(&policy));

    let mut device = DeviceFacts {
        id: "dev-1".into(),
        name: "meter-1".into(),
        hardware: "meter-v2".into(),
        ..DeviceFacts::default()
    };
    device.attributes.insert("region".into(), "eu-west".into());
    let ctx = RequestContext {
        device,
        group_ids: vec!["g-1".into(), "g-2".into()],
    };
    let deny_all = Policy::new(
        "p-deny",
        "deny-all",
        vec![Statement {
            effect: Effect::Deny,
            actions: vec!["*".into()],
            resources: vec!["*".into()],
        }],
    )
    .expect("deny-all is valid");
    requests.extend(
        ACTIONS
            .iter()
            .map(|a| (a.to_string(), "fleet:device/dev-1".to_string())),
    );
    for (action, resource) in &requests {
        let d = authorize(&ctx, std::slice::from_ref(&policy), action, resource);
        let effect = |i: usize| policy.statements()[i].effect;
        match &d.reason {
            Reason::Allow {
                statement_index, ..
            } => {
                assert!(d.allowed && effect(*statement_index) == Effect::Allow)
            }
            Reason::ExplicitDeny {
                statement_index, ..
            } => {
                assert!(!d.allowed && effect(*statement_index) == Effect::Deny)
            }
            Reason::DefaultDeny => assert!(!d.allowed),
        }
        for order in [[&policy, &deny_all], [&deny_all, &policy]] {
            let order: Vec<Policy> = order.into_iter().cloned().collect();
            assert!(
                !authorize(&ctx, &order, action, resource).allowed,
                "deny-all lost"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn st(effect: Effect, actions: &[&str], resources: &[&str]) -> Statement {
        Statement {
            effect,
            actions: actions.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn policy(id: &str, statements: Vec<Statement>) -> Policy {
        Policy::new(id, id, statements).unwrap()
    }

    fn ctx() -> RequestContext {
        let mut attributes = BTreeMap::new();
        attributes.insert("site".to_string(), "plant-7".to_string());
        RequestContext {
            device: DeviceFacts {
                id: "d1".into(),
                name: "meter*1".into(),
                hardware: "meter-v2".into(),
                attributes,
                ..Default::default()
            },
            group_ids: vec!["g-eu".into(), "g-prod".into()],
        }
    }

    fn err(statements: Vec<Statement>) -> String {
        validate_statements(&statements).unwrap_err().to_string()
    }

    // --- validation

    #[test]
    fn valid_documents() {
        assert!(validate_statements(&[
            st(
                Effect::Allow,
                &["device:checkin", "config:read"],
                &["fleet:device/${device.id}"]
            ),
            st(
                Effect::Allow,
                &["telemetry:publish"],
                &["fleet:telemetry/${device.id}/*"]
            ),
            st(
                Effect::Allow,
                &["firmware:*"],
                &["fleet:group/${device.group}/*"]
            ),
            st(Effect::Deny, &["*"], &["*", "fleet:*", "fleet:*/x"]),
            st(
                Effect::Allow,
                &["device:enroll"],
                &["fleet:device/${device.hardware}-${device.name}/${device.attr.site}"]
            ),
        ])
        .is_ok());
    }

    #[test]
    fn statement_list_errors() {
        assert_eq!(
            err(vec![]),
            "statement: a policy needs at least one statement"
        );
        let many = vec![st(Effect::Allow, &["*"], &["*"]); MAX_STATEMENTS + 1];
        assert!(err(many).starts_with("statement: at most 100 statements"));
        assert_eq!(
            err(vec![
                st(Effect::Allow, &["*"], &["*"]),
                st(Effect::Allow, &[], &["*"])
            ]),
            "statement[1].actions: must list at least one action"
        );
        assert_eq!(
            err(vec![st(Effect::Allow, &["*"], &[])]),
            "statement[0].resources: must list at least one resource"
        );
        let many: Vec<&str> = vec!["*"; 101];
        assert!(err(vec![st(Effect::Allow, &many, &["*"])])
            .starts_with("statement[0].actions: at most 100"));
    }

    #[test]
    fn action_errors() {
        assert_eq!(
            err(vec![
                st(Effect::Allow, &["*"], &["*"]),
                st(Effect::Allow, &["firmware:donwload"], &["*"])
            ]),
            "statement[1].actions[0]: unknown action \"firmware:donwload\" (did you mean \"firmware:download\"?)"
        );
        assert_eq!(
            err(vec![st(Effect::Allow, &["config:read", "shell:exec"], &["*"])]),
            "statement[0].actions[1]: unknown action \"shell:exec\" (actions: device:checkin, device:enroll, config:read, firmware:download, firmware:report, telemetry:publish)"
        );
        assert_eq!(
            err(vec![st(Effect::Allow, &["shell:*"], &["*"])]),
            "statement[0].actions[0]: unknown action \"shell:*\": no service \"shell\" (wildcards: *, device:*, config:*, firmware:*, telemetry:*)"
        );
        assert!(err(vec![st(Effect::Allow, &["firmware"], &["*"])])
            .contains("unknown action \"firmware\""));
    }

    #[test]
    fn resource_errors() {
        let r = |res: &str| err(vec![st(Effect::Allow, &["*"], &["*", res])]);
        assert_eq!(
            r("fleet:device/${device.ip}"),
            "statement[0].resources[1]: unknown variable \"${device.ip}\" (variables: ${device.id}, ${device.name}, ${device.group}, ${device.hardware}, ${device.attr.<key>})"
        );
        assert_eq!(
            r("fleet:device/${device.id"),
            "statement[0].resources[1]: malformed resource pattern \"fleet:device/${device.id\": unterminated variable, missing '}'"
        );
        assert!(r("fleet:device/$device.id").contains("'$' must start a variable"));
        assert!(r("fleet:device/{device.id}").contains("'{' outside a variable"));
        assert!(
            r("fleet:device/${device.attr.}").contains("malformed variable \"${device.attr.}\"")
        );
        assert!(r("device/1")
            .contains("malformed resource pattern \"device/1\": expected \"fleet:<type>/<id>\""));
        assert_eq!(
            r("fleet:devices/1"),
            "statement[0].resources[1]: unknown resource type \"devices\" in \"fleet:devices/1\" (types: device, group, config, firmware, telemetry, or *)"
        );
        assert!(r("fleet:device").contains("expected \"fleet:device/<id>\""));
        assert!(r("fleet:device/").contains("nothing after \"fleet:device/\""));
        assert_eq!(r(""), "statement[0].resources[1]: must not be empty");
        assert!(r("fleet:device/a b").contains("invalid character ' '"));
        assert!(r(&format!("fleet:device/{}", "x".repeat(600))).contains("at most 512"));
    }

    #[test]
    fn statements_deserialize_from_json() {
        let s: Statement = serde_json::from_value(serde_json::json!({
            "effect": "deny", "actions": ["*"], "resources": ["*"]
        }))
        .unwrap();
        assert_eq!(s.effect, Effect::Deny);
        assert!(serde_json::from_value::<Statement>(serde_json::json!({
            "effect": "maybe", "actions": [], "resources": []
        }))
        .is_err());
    }

    #[test]
    fn policy_new_validates_name_too() {
        assert_eq!(
            Policy::new("p1", "", vec![st(Effect::Allow, &["*"], &["*"])])
                .unwrap_err()
                .to_string(),
            "name: must not be empty"
        );
        let p = policy("p1", vec![st(Effect::Allow, &["*"], &["*"])]);
        assert_eq!(p.statements().len(), 1);
    }

    // --- evaluation

    #[test]
    fn deny_by_default() {
        let d = authorize(&ctx(), &[], "device:checkin", "fleet:device/d1");
        assert_eq!(
            d,
            Decision {
                allowed: false,
                reason: Reason::DefaultDeny
            }
        );
        let p = policy(
            "p",
            vec![st(
                Effect::Allow,
                &["config:read"],
                &["fleet:config/${device.id}"],
            )],
        );
        assert!(
            !authorize(
                &ctx(),
                std::slice::from_ref(&p),
                "device:checkin",
                "fleet:device/d1"
            )
            .allowed
        );
        assert!(!authorize(&ctx(), &[p], "config:read", "fleet:config/d2").allowed);
    }

    #[test]
    fn allow_with_variables() {
        let p = policy(
            "p",
            vec![
                st(
                    Effect::Allow,
                    &["device:checkin"],
                    &["fleet:device/${device.id}"],
                ),
                st(
                    Effect::Allow,
                    &["telemetry:publish"],
                    &["fleet:telemetry/${device.id}/*"],
                ),
            ],
        );
        let c = ctx();
        let d = authorize(
            &c,
            std::slice::from_ref(&p),
            "device:checkin",
            "fleet:device/d1",
        );
        assert_eq!(
            d,
            Decision {
                allowed: true,
                reason: Reason::Allow {
                    policy: "p".into(),
                    statement_index: 0
                }
            }
        );
        assert!(
            !authorize(
                &c,
                std::slice::from_ref(&p),
                "device:checkin",
                "fleet:device/d12"
            )
            .allowed
        );
        assert!(
            authorize(
                &c,
                std::slice::from_ref(&p),
                "telemetry:publish",
                "fleet:telemetry/d1/temp/raw"
            )
            .allowed
        );
        assert!(
            authorize(
                &c,
                std::slice::from_ref(&p),
                "telemetry:publish",
                "fleet:telemetry/d1/"
            )
            .allowed
        );
        assert!(
            !authorize(
                &c,
                std::slice::from_ref(&p),
                "telemetry:publish",
                "fleet:telemetry/d2/temp"
            )
            .allowed
        );
        assert!(!authorize(&c, &[p], "telemetry:publish", "fleet:telemetry/d1").allowed);
    }

    #[test]
    fn group_variable_matches_any_group() {
        let p = policy(
            "p",
            vec![st(
                Effect::Allow,
                &["firmware:*"],
                &["fleet:group/${device.group}/*"],
            )],
        );
        let c = ctx();
        assert!(
            authorize(
                &c,
                std::slice::from_ref(&p),
                "firmware:download",
                "fleet:group/g-eu/fw-1"
            )
            .allowed
        );
        assert!(
            authorize(
                &c,
                std::slice::from_ref(&p),
                "firmware:report",
                "fleet:group/g-prod/fw-1"
            )
            .allowed
        );
        assert!(
            !authorize(
                &c,
                std::slice::from_ref(&p),
                "firmware:download",
                "fleet:group/g-us/fw-1"
            )
            .allowed
        );
        let mut lonely = c.clone();
        lonely.group_ids.clear();
        assert!(!authorize(&lonely, &[p], "firmware:download", "fleet:group/g-eu/fw-1").allowed);
    }

    #[test]
    fn other_variables() {
        let p = policy(
            "p",
            vec![st(
                Effect::Allow,
                &["config:read"],
                &["fleet:config/${device.hardware}/${device.attr.site}/${device.name}"],
            )],
        );
        let c = ctx();
        assert!(
            authorize(
                &c,
                std::slice::from_ref(&p),
                "config:read",
                "fleet:config/meter-v2/plant-7/meter*1"
            )
            .allowed
        );
        // substituted values are literal: the '*' in the name is not a wildcard
        assert!(
            !authorize(
                &c,
                std::slice::from_ref(&p),
                "config:read",
                "fleet:config/meter-v2/plant-7/meterX1"
            )
            .allowed
        );
        let mut no_site = c.clone();
        no_site.device.attributes.clear();
        assert!(
            !authorize(
                &no_site,
                std::slice::from_ref(&p),
                "config:read",
                "fleet:config/meter-v2//meter*1"
            )
            .allowed,
            "a missing attribute makes the pattern match nothing"
        );
    }

    #[test]
    fn action_wildcards() {
        let p = policy("p", vec![st(Effect::Allow, &["firmware:*"], &["*"])]);
        assert!(
            authorize(
                &ctx(),
                std::slice::from_ref(&p),
                "firmware:download",
                "fleet:firmware/f1"
            )
            .allowed
        );
        assert!(
            !authorize(
                &ctx(),
                std::slice::from_ref(&p),
                "config:read",
                "fleet:config/d1"
            )
            .allowed
        );
        let all = policy("all", vec![st(Effect::Allow, &["*"], &["*"])]);
        for a in ACTIONS {
            assert!(authorize(&ctx(), std::slice::from_ref(&all), a, "fleet:device/d1").allowed);
        }
        assert_eq!(
            authorize(&ctx(), &[all], "shell:exec", "fleet:device/d1").reason,
            Reason::DefaultDeny,
            "actions outside the catalogue are never allowed"
        );
    }

    #[test]
    fn explicit_deny_wins_regardless_of_order() {
        let allow = policy("allow-all", vec![st(Effect::Allow, &["*"], &["*"])]);
        let deny = policy(
            "quarantine",
            vec![
                st(Effect::Allow, &["config:read"], &["*"]),
                st(
                    Effect::Deny,
                    &["firmware:*"],
                    &["fleet:group/${device.group}/*"],
                ),
            ],
        );
        let c = ctx();
        for policies in [
            vec![allow.clone(), deny.clone()],
            vec![deny.clone(), allow.clone()],
        ] {
            let d = authorize(&c, &policies, "firmware:download", "fleet:group/g-eu/fw");
            assert_eq!(
                d,
                Decision {
                    allowed: false,
                    reason: Reason::ExplicitDeny {
                        policy: "quarantine".into(),
                        statement_index: 1
                    }
                }
            );
        }
        // the deny does not apply to other actions or resources
        let d = authorize(
            &c,
            &[deny.clone(), allow.clone()],
            "config:read",
            "fleet:config/d1",
        );
        assert_eq!(
            d.reason,
            Reason::Allow {
                policy: "quarantine".into(),
                statement_index: 0
            }
        );
        assert!(authorize(&c, &[allow, deny], "firmware:download", "fleet:firmware/fw").allowed);
    }

    #[test]
    fn deny_within_one_policy_wins_over_earlier_allow() {
        let p = policy(
            "p",
            vec![
                st(Effect::Allow, &["*"], &["fleet:device/*"]),
                st(
                    Effect::Deny,
                    &["device:enroll"],
                    &["fleet:device/${device.id}"],
                ),
            ],
        );
        let d = authorize(&ctx(), &[p], "device:enroll", "fleet:device/d1");
        assert_eq!(
            d.reason,
            Reason::ExplicitDeny {
                policy: "p".into(),
                statement_index: 1
            }
        );
    }

    #[test]
    fn glob_semantics() {
        let c = ctx();
        let m = |pat: &str, res: &str| parse_resource(pat).unwrap().matches(res, &c);
        assert!(m("*", "anything/at:all"));
        assert!(m("fleet:*", "fleet:device/x"));
        assert!(!m("fleet:*", "other:device/x"));
        assert!(m("fleet:*/${device.id}", "fleet:config/d1"));
        assert!(m("fleet:device/*-*-*", "fleet:device/a-b-c"));
        assert!(!m("fleet:device/*-*-*", "fleet:device/a-b"));
        assert!(m("fleet:device/**", "fleet:device/é/x"));
        assert!(m("fleet:device/d*", "fleet:device/d"));
        assert!(!m("fleet:device/d1", "fleet:device/d1/extra"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let c = ctx();
        let pat = format!("fleet:device/{}b", "*a".repeat(40));
        let p = parse_resource(&pat).unwrap();
        let input = format!("fleet:device/{}", "a".repeat(400));
        let start = std::time::Instant::now();
        assert!(!p.matches(&input, &c));
        assert!(start.elapsed().as_secs() < 5);
    }

    #[test]
    fn reasons_serialize() {
        let v = serde_json::to_value(Reason::ExplicitDeny {
            policy: "p".into(),
            statement_index: 2,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "explicit_deny", "policy": "p", "statement_index": 2})
        );
        assert_eq!(
            serde_json::to_value(Reason::DefaultDeny).unwrap(),
            serde_json::json!({"kind": "default_deny"})
        );
    }

    #[test]
    fn version_pruning() {
        let versions: Vec<u64> = (1..=15).collect();
        assert_eq!(prune_versions(&versions, 10), vec![1, 2, 3, 4, 5]);
        assert_eq!(prune_versions(&versions, DEFAULT_KEEP_VERSIONS).len(), 5);
        assert!(prune_versions(&versions, 20).is_empty());
        assert_eq!(
            prune_versions(&[3, 1, 2, 2], 1),
            vec![1, 2],
            "unsorted with duplicates"
        );
        assert_eq!(
            prune_versions(&[1, 2, 3], 0),
            vec![1, 2],
            "the current version is always kept"
        );
        assert!(prune_versions(&[], 10).is_empty());
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("firmware:donwload", "firmware:download"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(closest("config:raed", ACTIONS), Some("config:read"));
        assert_eq!(closest("zzz", ACTIONS), None);
    }
}
