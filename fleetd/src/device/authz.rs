//! Authorising device calls with the policy evaluator.
//!
//! A device call is one *action* from the policy catalogue on a set of
//! *resource strings* that describe what it touches:
//!
//! | action | resources (for device `D` in groups `G…`) |
//! |---|---|
//! | every action | `fleet:device/D`, and for each group of `D` and each ancestor of those: `fleet:group/<path>/D` and `fleet:group/<group id>/D` |
//! | `config:read` | also `fleet:config/D` and `fleet:config/<group id>/D` for each group |
//! | `firmware:download`, `firmware:report` | also `fleet:firmware/<firmware id>` once the firmware is known |
//!
//! So `allow [device:checkin, config:read] [fleet:device/${device.id}]`
//! lets every device read its own config, `deny [firmware:*]
//! [fleet:group/quarantine/*]` stops firmware for every device in the
//! `quarantine` group and its subgroups, and `allow [config:read]
//! [fleet:config/${device.group}/*]` reads config through any group.
//!
//! The call is allowed when some statement allows the action on at least
//! one of its resources and no statement denies it on any of them: deny by
//! default, an explicit deny always wins ([`crate::domain::policy`]).
//!
//! `device:enroll` is not decided here: the enrollment itself (a platform
//! team's `fleet_enrollment` for the certificate's CA, enabled, matching
//! hardware, under its limit) is the authorisation, because a device that
//! is not enrolled has no groups and no policies yet.

use std::sync::Arc;

use crate::domain::policy::{self, Decision, Reason, RequestContext};

use super::view::DeviceContext;

pub const DEVICE_ENROLL: &str = "device:enroll";
pub const DEVICE_CHECKIN: &str = "device:checkin";
pub const CONFIG_READ: &str = "config:read";
pub const FIRMWARE_DOWNLOAD: &str = "firmware:download";
pub const FIRMWARE_REPORT: &str = "firmware:report";

/// The resource strings of `action` by `device_id` in `ctx`'s groups: what
/// [`crate::device::auth::Caller`] decides on, as one list (for tests).
#[cfg(test)]
pub fn resources(
    action: &str,
    device_id: &str,
    ctx: &DeviceContext,
    firmware_id: Option<&str>,
) -> Vec<String> {
    let mut out = base_resources(device_id, ctx);
    out.extend(action_resources(action, device_id, ctx, firmware_id));
    out
}

/// The resource strings every action by `device_id` is decided on: the
/// device and its place in each group (built once per request).
pub fn base_resources(device_id: &str, ctx: &DeviceContext) -> Vec<String> {
    let mut out = Vec::with_capacity(1 + 2 * ctx.groups.len());
    out.push(["fleet:device/", device_id].concat());
    for g in &ctx.groups {
        out.push(["fleet:group/", &g.path, "/", device_id].concat());
        out.push(["fleet:group/", &g.id, "/", device_id].concat());
    }
    out
}

/// The resource strings `action` adds to [`base_resources`].
pub fn action_resources(
    action: &str,
    device_id: &str,
    ctx: &DeviceContext,
    firmware_id: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    if action == CONFIG_READ {
        out.reserve(1 + ctx.groups.len());
        out.push(["fleet:config/", device_id].concat());
        for g in &ctx.groups {
            out.push(["fleet:config/", &g.id, "/", device_id].concat());
        }
    }
    if let Some(fw) = firmware_id {
        out.push(["fleet:firmware/", fw].concat());
    }
    out
}

/// The decision on `action` over `resources`: the first explicit deny on
/// any resource, else the first allow, else the default deny; plus the
/// resource the decision is about (for messages).
pub fn decide<'r>(
    req: &RequestContext,
    ctx: &DeviceContext,
    action: &str,
    resources: impl IntoIterator<Item = &'r String>,
) -> (Decision, String) {
    let mut allowed: Option<(Decision, &String)> = None;
    let mut first = None;
    for resource in resources {
        first.get_or_insert(resource);
        let d = authorize_refs(req, &ctx.policies, action, resource);
        match d.reason {
            Reason::ExplicitDeny { .. } => return (d, resource.clone()),
            Reason::Allow { .. } if allowed.is_none() => allowed = Some((d, resource)),
            _ => {}
        }
    }
    match allowed {
        Some((d, resource)) => (d, resource.clone()),
        None => (
            Decision {
                allowed: false,
                reason: Reason::DefaultDeny,
            },
            first.cloned().unwrap_or_default(),
        ),
    }
}

/// [`policy::authorize`] over borrowed policies.
fn authorize_refs(
    req: &RequestContext,
    policies: &[Arc<policy::Policy>],
    action: &str,
    resource: &str,
) -> Decision {
    // `authorize` takes a slice of policies; evaluate each policy on its
    // own and combine with the same rule (deny wins, first allow kept).
    let mut first_allow = None;
    for p in policies {
        let d = policy::authorize(req, std::slice::from_ref(p.as_ref()), action, resource);
        match d.reason {
            Reason::ExplicitDeny { .. } => return d,
            Reason::Allow { .. } if first_allow.is_none() => first_allow = Some(d),
            _ => {}
        }
    }
    first_allow.unwrap_or(Decision {
        allowed: false,
        reason: Reason::DefaultDeny,
    })
}

/// A short word for metrics and error bodies.
pub fn reason_word(reason: &Reason) -> &'static str {
    match reason {
        Reason::ExplicitDeny { .. } => "explicit_deny",
        Reason::Allow { .. } => "allow",
        Reason::DefaultDeny => "default_deny",
    }
}

/// The human sentence of a denial.
pub fn denial_message(action: &str, resource: &str, reason: &Reason) -> String {
    match reason {
        Reason::ExplicitDeny {
            policy,
            statement_index,
        } => format!(
            "{action} on {resource} is denied by statement {statement_index} of policy {policy}"
        ),
        _ => format!(
            "{action} on {resource} is denied: no policy attached to the device's certificate or \
             groups allows it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::view::GroupRef;
    use crate::domain::policy::{Effect, Policy, Statement};
    use crate::domain::query::DeviceFacts;

    fn st(effect: Effect, actions: &[&str], resources: &[&str]) -> Statement {
        Statement {
            effect,
            actions: actions.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ctx(policies: Vec<Vec<Statement>>) -> (RequestContext, DeviceContext) {
        let groups = vec![
            GroupRef {
                id: "g-root".into(),
                path: "prod".into(),
            },
            GroupRef {
                id: "g-q".into(),
                path: "prod/quarantine".into(),
            },
        ];
        let req = RequestContext {
            device: DeviceFacts {
                id: "d1".into(),
                name: "dev".into(),
                ..Default::default()
            },
            group_ids: groups.iter().map(|g| g.id.clone()).collect(),
        };
        let policies = policies
            .into_iter()
            .enumerate()
            .map(|(i, s)| Arc::new(Policy::new(format!("p{i}"), format!("p{i}"), s).unwrap()))
            .collect();
        (
            req,
            DeviceContext {
                direct_group_ids: vec!["g-q".into()],
                group_ids: vec!["g-q".into(), "g-root".into()],
                groups,
                policies,
                config: Default::default(),
                stale_after_secs: vec![],
            },
        )
    }

    #[test]
    fn resource_sets() {
        let (_, c) = ctx(vec![]);
        let r = resources(CONFIG_READ, "d1", &c, None);
        assert!(r.contains(&"fleet:device/d1".to_string()));
        assert!(r.contains(&"fleet:group/prod/quarantine/d1".to_string()));
        assert!(r.contains(&"fleet:group/g-q/d1".to_string()));
        assert!(r.contains(&"fleet:config/g-root/d1".to_string()));
        let r = resources(FIRMWARE_DOWNLOAD, "d1", &c, Some("fw1"));
        assert_eq!(r.last().unwrap(), "fleet:firmware/fw1");
        assert!(!r.iter().any(|s| s.starts_with("fleet:config/")));
    }

    #[test]
    fn deny_by_default_allow_and_explicit_deny_wins() {
        let (req, c) = ctx(vec![]);
        let res = resources(DEVICE_CHECKIN, "d1", &c, None);
        assert!(!decide(&req, &c, DEVICE_CHECKIN, &res).0.allowed);

        let (req, c) = ctx(vec![vec![st(
            Effect::Allow,
            &["device:checkin", "firmware:*"],
            &["fleet:device/${device.id}"],
        )]]);
        assert!(decide(&req, &c, DEVICE_CHECKIN, &res).0.allowed);

        // A deny in another policy on the group resource wins.
        let (req, c) = ctx(vec![
            vec![st(Effect::Allow, &["*"], &["*"])],
            vec![st(
                Effect::Deny,
                &["firmware:*"],
                &["fleet:group/prod/quarantine/*"],
            )],
        ]);
        let res = resources(FIRMWARE_DOWNLOAD, "d1", &c, Some("fw"));
        let (d, resource) = decide(&req, &c, FIRMWARE_DOWNLOAD, &res);
        assert!(!d.allowed);
        assert_eq!(reason_word(&d.reason), "explicit_deny");
        assert_eq!(resource, "fleet:group/prod/quarantine/d1");
        assert!(decide(&req, &c, DEVICE_CHECKIN, &res).0.allowed);
    }

    #[test]
    fn config_through_group_variable() {
        let (req, c) = ctx(vec![vec![st(
            Effect::Allow,
            &["config:read"],
            &["fleet:config/${device.group}/*"],
        )]]);
        let res = resources(CONFIG_READ, "d1", &c, None);
        assert!(decide(&req, &c, CONFIG_READ, &res).0.allowed);
    }
}
