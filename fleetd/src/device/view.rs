//! The fleet as a device request sees it: groups with their paths,
//! ancestors, parsed queries and configs; compiled policies and which
//! groups they are attached to.
//!
//! Built from the store's [`FleetView`] and cached until the store's stamp
//! changes (see [`ViewCache`]), so a request costs one store round trip
//! however many groups and policies the fleet has.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value};

use crate::domain::compliance::config_digest;
use crate::domain::group;
use crate::domain::policy::Policy as CompiledPolicy;
use crate::domain::query::{DeviceFacts, Query};
use crate::store::device_api::FleetView;

/// One group, resolved.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub id: String,
    /// Names from the root, joined with `/`.
    pub path: String,
    /// Ids from the root down to this group, inclusive.
    pub ancestry: Vec<String>,
    pub query: Option<Query>,
    pub config: Map<String, Value>,
    pub stale_after_secs: Option<u64>,
}

impl GroupInfo {
    /// 0 for a root group.
    pub fn depth(&self) -> usize {
        self.ancestry.len().saturating_sub(1)
    }
}

/// A compiled [`FleetView`].
#[derive(Debug, Default)]
pub struct CompiledView {
    pub stamp: String,
    pub groups: HashMap<String, GroupInfo>,
    /// Groups with a query, in id order.
    dynamic: Vec<String>,
    pub policies: HashMap<String, Arc<CompiledPolicy>>,
    /// group id → attached policy ids.
    group_policies: HashMap<String, Vec<String>>,
    /// Contexts built so far, by direct group ids and certificate policy
    /// ids. Devices share a few such sets, and the view is replaced
    /// whenever a group or policy changes, so entries never go stale.
    contexts: Mutex<HashMap<String, Arc<DeviceContext>>>,
}

/// Most sets of groups and certificate policies whose context a view
/// remembers; others are built on every request.
const CONTEXTS: usize = 4096;

/// A device's effective config and its canonical digest
/// ([`crate::domain::compliance::config_digest`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EffectiveConfig {
    pub config: Map<String, Value>,
    pub digest: String,
}

impl EffectiveConfig {
    pub fn new(config: Map<String, Value>) -> EffectiveConfig {
        let digest = config_digest(&config);
        EffectiveConfig { config, digest }
    }
}

impl CompiledView {
    pub fn compile(view: FleetView) -> CompiledView {
        let parents: HashMap<String, Option<String>> = view
            .groups
            .iter()
            .map(|g| (g.id.clone(), g.parent_id.clone()))
            .collect();
        let names: HashMap<&str, &str> = view
            .groups
            .iter()
            .map(|g| (g.id.as_str(), g.name.as_str()))
            .collect();
        let mut groups = HashMap::with_capacity(view.groups.len());
        let mut dynamic = Vec::new();
        for g in &view.groups {
            let ancestry = match group::ancestry(&g.id, &parents) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(group_id = %g.id, error = %e, "ignoring a group with a broken hierarchy");
                    continue;
                }
            };
            let path_names: Vec<&str> = ancestry
                .iter()
                .map(|id| names.get(id.as_str()).copied().unwrap_or(""))
                .collect();
            let query = g.query.as_deref().and_then(|q| match group::validate_query(q) {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::warn!(group_id = %g.id, error = %e, "ignoring an invalid stored group query");
                    None
                }
            });
            if query.is_some() {
                dynamic.push(g.id.clone());
            }
            groups.insert(
                g.id.clone(),
                GroupInfo {
                    id: g.id.clone(),
                    path: group::path(&path_names),
                    ancestry,
                    query,
                    config: g.config.clone(),
                    stale_after_secs: g.stale_after_secs,
                },
            );
        }
        let mut policies = HashMap::with_capacity(view.policies.len());
        for p in view.policies {
            match CompiledPolicy::new(p.id.clone(), p.name, p.statements) {
                Ok(c) => {
                    policies.insert(p.id, Arc::new(c));
                }
                Err(e) => {
                    tracing::warn!(policy_id = %p.id, error = %e, "ignoring an invalid stored policy")
                }
            }
        }
        let mut group_policies: HashMap<String, Vec<String>> = HashMap::new();
        for (group_id, policy_id) in view.group_policies {
            group_policies.entry(group_id).or_default().push(policy_id);
        }
        CompiledView {
            stamp: view.stamp,
            groups,
            dynamic,
            policies,
            group_policies,
            contexts: Mutex::default(),
        }
    }

    /// Everything about `facts`' device that authorization and config
    /// need: its groups (static `static_groups` plus query matches) and
    /// their ancestors, and the policies attached to any of them or to the
    /// certificate (`certificate_policies`).
    ///
    /// Only the query matches are evaluated per call; the rest depends on
    /// the set of groups and certificate policies alone, which devices
    /// share, and is built once per set for this view.
    pub fn context(
        &self,
        facts: &DeviceFacts,
        static_groups: &[String],
        certificate_policies: &[String],
    ) -> Arc<DeviceContext> {
        let mut direct: Vec<&GroupInfo> = static_groups
            .iter()
            .filter_map(|id| self.groups.get(id))
            .collect();
        for id in &self.dynamic {
            let g = &self.groups[id];
            if !static_groups.contains(id) && g.query.as_ref().is_some_and(|q| q.matches(facts)) {
                direct.push(g);
            }
        }
        direct.sort_by(|a, b| a.id.cmp(&b.id));
        direct.dedup_by(|a, b| a.id == b.id);
        let mut key = String::new();
        for g in &direct {
            key.push_str(&g.id);
            key.push('\n');
        }
        key.push('\0');
        for p in certificate_policies {
            key.push_str(p);
            key.push('\n');
        }
        let mut memo = self.contexts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ctx) = memo.get(&key) {
            return Arc::clone(ctx);
        }
        let ctx = Arc::new(self.build_context(&direct, certificate_policies));
        if memo.len() < CONTEXTS {
            memo.insert(key, Arc::clone(&ctx));
        }
        ctx
    }

    /// [`CompiledView::context`] of the device directly in `direct` (sorted
    /// by id).
    fn build_context(
        &self,
        direct: &[&GroupInfo],
        certificate_policies: &[String],
    ) -> DeviceContext {
        // The device's groups and their ancestors, each once, shallowest
        // first and in path order at equal depth: the config merge order.
        let mut seen = HashSet::new();
        let mut all: Vec<&GroupInfo> = Vec::new();
        for g in direct {
            for id in &g.ancestry {
                if seen.insert(id.as_str()) {
                    if let Some(a) = self.groups.get(id) {
                        all.push(a);
                    }
                }
            }
        }
        all.sort_by(|a, b| a.depth().cmp(&b.depth()).then_with(|| a.path.cmp(&b.path)));

        let mut policy_ids: Vec<&str> = certificate_policies.iter().map(String::as_str).collect();
        for g in &all {
            if let Some(ids) = self.group_policies.get(&g.id) {
                policy_ids.extend(ids.iter().map(String::as_str));
            }
        }
        let mut seen_policies = HashSet::new();
        let policies = policy_ids
            .into_iter()
            .filter(|id| seen_policies.insert(*id))
            .filter_map(|id| self.policies.get(id).cloned())
            .collect();

        let config = EffectiveConfig::new(group::effective_config(all.iter().map(|g| &g.config)));
        let mut by_id = all.clone();
        by_id.sort_by(|a, b| a.id.cmp(&b.id));
        DeviceContext {
            direct_group_ids: direct.iter().map(|g| g.id.clone()).collect(),
            groups: all
                .iter()
                .map(|g| GroupRef {
                    id: g.id.clone(),
                    path: g.path.clone(),
                })
                .collect(),
            policies,
            config,
            group_ids: by_id.iter().map(|g| g.id.clone()).collect(),
            stale_after_secs: by_id.iter().filter_map(|g| g.stale_after_secs).collect(),
        }
    }
}

/// A group of the calling device, for resource strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: String,
    pub path: String,
}

/// What a request knows about the calling device's place in the fleet.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    /// Static and dynamic memberships, sorted.
    pub direct_group_ids: Vec<String>,
    /// Direct groups and their ancestors, shallowest first.
    pub groups: Vec<GroupRef>,
    /// Policies attached to the certificate and to any of `groups`.
    pub policies: Vec<Arc<CompiledPolicy>>,
    /// Effective config: the groups' configs merged in `groups` order.
    pub config: EffectiveConfig,
    /// The ids of `groups`, sorted.
    pub group_ids: Vec<String>,
    /// The `stale_after` of every group in `groups` that has one, in
    /// `group_ids` order.
    pub stale_after_secs: Vec<u64>,
}

/// The current [`CompiledView`], swapped when the store says it changed.
#[derive(Debug, Default)]
pub struct ViewCache {
    current: RwLock<Arc<CompiledView>>,
}

impl ViewCache {
    /// The stamp to send to the store; `None` before the first load.
    pub fn stamp(&self) -> Option<String> {
        let v = self.get();
        (!v.stamp.is_empty()).then(|| v.stamp.clone())
    }

    pub fn get(&self) -> Arc<CompiledView> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Compiles and installs `view` (if the store sent one) and returns
    /// the view to use.
    pub fn update(&self, view: Option<FleetView>) -> Arc<CompiledView> {
        match view {
            None => self.get(),
            Some(v) => {
                let compiled = Arc::new(CompiledView::compile(v));
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&compiled);
                compiled
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{Effect, Statement};
    use crate::store::device_api::GroupNode;
    use crate::store::Policy;
    use serde_json::json;

    fn node(id: &str, parent: Option<&str>, query: Option<&str>, config: Value) -> GroupNode {
        GroupNode {
            id: id.into(),
            name: format!("n{id}"),
            parent_id: parent.map(Into::into),
            query: query.map(Into::into),
            config: config.as_object().unwrap().clone(),
            stale_after_secs: None,
        }
    }

    fn policy(id: &str) -> Policy {
        Policy {
            id: id.into(),
            name: format!("p{id}"),
            description: String::new(),
            statements: vec![Statement {
                effect: Effect::Allow,
                actions: vec!["device:checkin".into()],
                resources: vec!["*".into()],
            }],
            policy_version: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            version: 1,
        }
    }

    fn view() -> CompiledView {
        CompiledView::compile(FleetView {
            stamp: "s".into(),
            groups: vec![
                node("root", None, None, json!({"a": 1, "b": {"x": 1}})),
                node("child", Some("root"), None, json!({"a": 2})),
                node("sib", Some("root"), None, json!({"b": {"y": 2}})),
                node("dyn", None, Some("hardware == \"m2\""), json!({"c": 3})),
            ],
            policies: vec![policy("p1"), policy("p2"), policy("p3")],
            group_policies: vec![
                ("root".into(), "p1".into()),
                ("dyn".into(), "p2".into()),
                ("sib".into(), "p3".into()),
            ],
        })
    }

    fn facts(hw: &str) -> DeviceFacts {
        DeviceFacts {
            id: "d".into(),
            hardware: hw.into(),
            ..Default::default()
        }
    }

    #[test]
    fn paths_and_ancestry() {
        let v = view();
        assert_eq!(v.groups["child"].path, "nroot/nchild");
        assert_eq!(v.groups["child"].ancestry, ["root", "child"]);
        assert_eq!(v.groups["child"].depth(), 1);
    }

    #[test]
    fn policies_are_inherited_from_ancestors_and_dynamic_groups() {
        let v = view();
        let ctx = v.context(&facts("m1"), &["child".into()], &[]);
        let ids: Vec<&str> = ctx.policies.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["p1"]);
        assert_eq!(ctx.direct_group_ids, ["child"]);
        let ctx = v.context(&facts("m2"), &["child".into()], &["p3".into()]);
        let ids: Vec<&str> = ctx.policies.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["p3", "p2", "p1"]);
        assert_eq!(ctx.direct_group_ids, ["child", "dyn"]);
    }

    #[test]
    fn contexts_are_shared_per_group_set() {
        let v = view();
        let a = v.context(&facts("m1"), &["child".into()], &[]);
        let b = v.context(&facts("m1"), &["child".into()], &[]);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            a.config.digest,
            config_digest(&json!({"a": 2, "b": {"x": 1}}).as_object().unwrap().clone())
        );
        // Another set of groups (here through a dynamic match) merges anew.
        let c = v.context(&facts("m2"), &["child".into()], &[]);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(
            Value::Object(c.config.config.clone()),
            json!({"a": 2, "b": {"x": 1}, "c": 3})
        );
        assert_ne!(a.config.digest, c.config.digest);
        // Certificate policies are part of the set.
        let d = v.context(&facts("m1"), &["child".into()], &["p3".into()]);
        assert!(!Arc::ptr_eq(&a, &d));
        let ids: Vec<&str> = d.policies.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["p3", "p1"]);
    }

    #[test]
    fn config_merges_shallowest_first() {
        let v = view();
        let ctx = v.context(&facts("m2"), &["child".into(), "sib".into()], &[]);
        assert_eq!(
            Value::Object(ctx.config.config.clone()),
            json!({"a": 2, "b": {"x": 1, "y": 2}, "c": 3})
        );
    }
}
