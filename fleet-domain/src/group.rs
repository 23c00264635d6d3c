//! Device group hierarchy rules: names, parents, paths and configuration
//! inheritance.
//!
//! Groups nest (`prod` → `meters` → `eu`). A group's `path` is the names of
//! its ancestors and itself joined with `/` (`prod/meters/eu`), which is
//! why names may not contain `/`. Its `effective_config` is the desired
//! `config` of every group from the root down to it, deep-merged so that a
//! subgroup only states what differs from its parent:
//!
//! - objects merge key by key, recursively;
//! - anything else (strings, numbers, arrays) in the child replaces the
//!   parent's value — arrays are values, not sets to union;
//! - `null` in a child deletes the key inherited from above, so a subgroup
//!   can opt out of a setting without knowing its parent's default.
//!   Effective configs therefore never contain `null` object members.
//!
//! Storage is not this module's business: functions take the parent
//! relation as a [`ParentLookup`] (a map, or a closure over the store) and
//! the per-group configs as a root-first list.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::query::{self, Query};
use super::{check_name, FieldError, MAX_NAME_LEN};

/// Deepest allowed hierarchy: a root group is at depth 1.
pub const MAX_HIERARCHY_DEPTH: usize = 16;
/// Longest accepted description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most tags on one group.
pub const MAX_TAGS: usize = 50;
/// Longest tag key / value, in characters.
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Deepest nesting of objects/arrays inside a group's `config`.
pub const MAX_CONFIG_DEPTH: usize = 32;
/// Largest `config`, serialized as compact JSON, in bytes. Configs are sent
/// to every device on check-in, so they are kept small.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Validates a group name (`name`). See [`super::check_name`] for the
/// character rules; `/` is refused in particular because it separates path
/// segments.
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    check_name("name", name, MAX_NAME_LEN)
}

/// Validates `description`: free text, bounded.
pub fn validate_description(description: &str) -> Result<(), FieldError> {
    let len = description.chars().count();
    if len > MAX_DESCRIPTION_LEN {
        return Err(FieldError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_LEN} characters long, got {len}"),
        ));
    }
    Ok(())
}

/// Validates `tags`: bounded count, non-empty keys, bounded lengths.
/// Errors name the tag as `tags["key"]`, the way HCL addresses map elements.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if tags.len() > MAX_TAGS {
        return Err(FieldError::new(
            "tags",
            format!("at most {MAX_TAGS} tags are allowed, got {}", tags.len()),
        ));
    }
    for (key, value) in tags {
        let field = format!("tags[{key:?}]");
        if key.trim().is_empty() {
            return Err(FieldError::new(field, "tag keys must not be empty"));
        }
        if key.chars().count() > MAX_TAG_KEY_LEN {
            return Err(FieldError::new(
                field,
                format!("tag keys must be at most {MAX_TAG_KEY_LEN} characters long"),
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE_LEN {
            return Err(FieldError::new(
                field,
                format!("tag values must be at most {MAX_TAG_VALUE_LEN} characters long"),
            ));
        }
    }
    Ok(())
}

/// Parses a dynamic-membership `query`, reporting syntax errors on the
/// `query` field with their line and column.
pub fn validate_query(query: &str) -> Result<Query, FieldError> {
    query::parse(query).map_err(|e| e.into_field_error("query"))
}

/// The parent relation of the existing groups.
pub trait ParentLookup {
    /// `None` if there is no group `group_id`; `Some(None)` for a root
    /// group; `Some(Some(parent))` otherwise.
    fn parent_of(&self, group_id: &str) -> Option<Option<String>>;
}

impl<F> ParentLookup for F
where
    F: Fn(&str) -> Option<Option<String>>,
{
    fn parent_of(&self, group_id: &str) -> Option<Option<String>> {
        self(group_id)
    }
}

impl ParentLookup for HashMap<String, Option<String>> {
    fn parent_of(&self, group_id: &str) -> Option<Option<String>> {
        self.get(group_id).cloned()
    }
}

impl ParentLookup for BTreeMap<String, Option<String>> {
    fn parent_of(&self, group_id: &str) -> Option<Option<String>> {
        self.get(group_id).cloned()
    }
}

/// Ids from the root down to `group_id` (inclusive) — the order in which
/// names form the [`path`] and configs feed [`effective_config`].
///
/// Fails (on `parent_id`) if a group in the chain is missing, the stored
/// hierarchy already contains a cycle, or the chain exceeds
/// [`MAX_HIERARCHY_DEPTH`].
pub fn ancestry(group_id: &str, lookup: &impl ParentLookup) -> Result<Vec<String>, FieldError> {
    let mut chain = vec![group_id.to_string()];
    let mut seen: HashSet<String> = HashSet::from([group_id.to_string()]);
    let mut current = group_id.to_string();
    loop {
        let parent = match lookup.parent_of(&current) {
            None if current == group_id => {
                return Err(FieldError::new(
                    "id",
                    format!("group {group_id:?} does not exist"),
                ))
            }
            None => {
                return Err(FieldError::new(
                    "parent_id",
                    format!("ancestor group {current:?} does not exist"),
                ))
            }
            Some(None) => break,
            Some(Some(p)) => p,
        };
        if !seen.insert(parent.clone()) {
            return Err(FieldError::new(
                "parent_id",
                format!(
                    "the stored hierarchy above {group_id:?} contains a cycle through {parent:?}"
                ),
            ));
        }
        chain.push(parent.clone());
        if chain.len() > MAX_HIERARCHY_DEPTH {
            return Err(FieldError::new(
                "parent_id",
                format!("groups nest at most {MAX_HIERARCHY_DEPTH} levels deep"),
            ));
        }
        current = parent;
    }
    chain.reverse();
    Ok(chain)
}

/// Checks that `group_id` (or a new group, when `None`) may be placed under
/// `parent_id`: the parent exists, the group would not become its own
/// ancestor, and the result is at most [`MAX_HIERARCHY_DEPTH`] deep.
///
/// Only the moved group's own depth is checked; a caller moving a group
/// that has subgroups should also check the deepest descendant.
pub fn check_parent(
    group_id: Option<&str>,
    parent_id: &str,
    lookup: &impl ParentLookup,
) -> Result<(), FieldError> {
    if group_id == Some(parent_id) {
        return Err(FieldError::new(
            "parent_id",
            "a group cannot be its own parent",
        ));
    }
    if lookup.parent_of(parent_id).is_none() {
        return Err(FieldError::new(
            "parent_id",
            format!("parent group {parent_id:?} does not exist"),
        ));
    }
    // Walk up from the proposed parent. Meeting the group itself means the
    // move would close a loop; report it the way a user can follow it.
    let mut chain = vec![parent_id.to_string()];
    let mut seen: HashSet<String> = HashSet::from([parent_id.to_string()]);
    let mut current = parent_id.to_string();
    while let Some(Some(up)) = lookup.parent_of(&current) {
        if Some(up.as_str()) == group_id {
            let me = group_id.unwrap_or_default();
            let mut cycle = vec![me.to_string()];
            cycle.extend(chain.iter().cloned());
            cycle.push(me.to_string());
            return Err(FieldError::new(
                "parent_id",
                format!(
                    "setting the parent to {parent_id:?} would create a cycle: {}",
                    cycle.join(" -> ")
                ),
            ));
        }
        if !seen.insert(up.clone()) {
            return Err(FieldError::new(
                "parent_id",
                format!("the stored hierarchy above {parent_id:?} contains a cycle through {up:?}"),
            ));
        }
        chain.push(up.clone());
        current = up;
    }
    if lookup.parent_of(&current).is_none() {
        return Err(FieldError::new(
            "parent_id",
            format!("ancestor group {current:?} does not exist"),
        ));
    }
    // The group sits one below its parent's chain.
    if chain.len() + 1 > MAX_HIERARCHY_DEPTH {
        return Err(FieldError::new(
            "parent_id",
            format!(
                "groups nest at most {MAX_HIERARCHY_DEPTH} levels deep; {parent_id:?} is already at depth {}",
                chain.len()
            ),
        ));
    }
    Ok(())
}

/// The `path` of a group from its and its ancestors' names, root first:
/// `["prod", "meters", "eu"]` → `prod/meters/eu`.
pub fn path<S: AsRef<str>>(names_root_first: &[S]) -> String {
    names_root_first
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join("/")
}

/// Validates a desired `config`: a JSON object (so that it can be merged),
/// bounded in depth and size.
pub fn validate_config(config: &Value) -> Result<&Map<String, Value>, FieldError> {
    let Value::Object(map) = config else {
        return Err(FieldError::new(
            "config",
            format!("must be a JSON object, got {}", kind(config)),
        ));
    };
    if let Some(path) = too_deep(config, 0, "config") {
        return Err(FieldError::new(
            path,
            format!("config is nested more than {MAX_CONFIG_DEPTH} levels deep"),
        ));
    }
    let size = serde_json::to_string(config)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_CONFIG_BYTES {
        return Err(FieldError::new(
            "config",
            format!("config is {size} bytes as JSON, at most {MAX_CONFIG_BYTES} are allowed"),
        ));
    }
    Ok(map)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Path to the first value nested deeper than [`MAX_CONFIG_DEPTH`].
fn too_deep(v: &Value, depth: usize, path: &str) -> Option<String> {
    if depth > MAX_CONFIG_DEPTH {
        return Some(path.to_string());
    }
    match v {
        Value::Object(m) => m
            .iter()
            .find_map(|(k, v)| too_deep(v, depth + 1, &format!("{path}.{k}"))),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| too_deep(v, depth + 1, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Deep-merges `overlay` (a child's config) over `base` (what the child
/// inherits). See the module docs for the rules.
pub fn merge_config(base: &Map<String, Value>, overlay: &Map<String, Value>) -> Map<String, Value> {
    let mut out = base.clone();
    merge_into(&mut out, overlay);
    out
}

fn merge_into(base: &mut Map<String, Value>, overlay: &Map<String, Value>) {
    for (key, value) in overlay {
        match value {
            // shift_remove keeps the inherited key order stable.
            Value::Null => {
                base.shift_remove(key);
            }
            Value::Object(child) => match base.get_mut(key) {
                Some(Value::Object(inherited)) => merge_into(inherited, child),
                _ => {
                    base.insert(key.clone(), Value::Object(without_nulls(child)));
                }
            },
            other => {
                base.insert(key.clone(), other.clone());
            }
        }
    }
}

/// An object with its `null` members removed, recursively through objects
/// (a `null` means "absent" even when there is nothing to delete).
fn without_nulls(map: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    merge_into(&mut out, map);
    out
}

/// The `effective_config` of a group from the desired configs of the
/// groups from the root down to it.
pub fn effective_config<'a, I>(configs_root_first: I) -> Map<String, Value>
where
    I: IntoIterator<Item = &'a Map<String, Value>>,
{
    let mut out = Map::new();
    for config in configs_root_first {
        merge_into(&mut out, config);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// root ← a ← b ← c, and x (root) ; `dangling` points at a missing group.
    fn tree() -> HashMap<String, Option<String>> {
        let mut m = HashMap::new();
        m.insert("root".into(), None);
        m.insert("a".into(), Some("root".into()));
        m.insert("b".into(), Some("a".into()));
        m.insert("c".into(), Some("b".into()));
        m.insert("x".into(), None);
        m.insert("dangling".into(), Some("gone".into()));
        m
    }

    #[test]
    fn names() {
        assert!(validate_name("meters-eu_1.0").is_ok());
        let e = validate_name("prod/meters").unwrap_err();
        assert_eq!(e.field, "name");
        assert!(e.message.contains("invalid character '/'"));
        assert_eq!(validate_name("").unwrap_err().message, "must not be empty");
        assert!(validate_name(&"a".repeat(129)).is_err());
        assert!(validate_name(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn descriptions_and_tags() {
        assert!(validate_description("").is_ok());
        assert_eq!(
            validate_description(&"x".repeat(1025))
                .unwrap_err()
                .to_string(),
            "description: must be at most 1024 characters long, got 1025"
        );
        let mut tags = BTreeMap::new();
        tags.insert("team".to_string(), "metering".to_string());
        assert!(validate_tags(&tags).is_ok());
        tags.insert(" ".to_string(), "x".to_string());
        assert_eq!(
            validate_tags(&tags).unwrap_err().to_string(),
            "tags[\" \"]: tag keys must not be empty"
        );
        tags.remove(" ");
        tags.insert("long".into(), "v".repeat(257));
        assert_eq!(validate_tags(&tags).unwrap_err().field, "tags[\"long\"]");
        tags.remove("long");
        tags.insert("k".repeat(129), "v".into());
        assert!(validate_tags(&tags)
            .unwrap_err()
            .message
            .contains("tag keys must be at most 128"));
        let many: BTreeMap<String, String> =
            (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(validate_tags(&many).unwrap_err().field, "tags");
    }

    #[test]
    fn query_errors_land_on_the_query_field() {
        assert!(validate_query(r#"hardware == "meter-v2""#).is_ok());
        let e = validate_query("hardware ==").unwrap_err();
        assert_eq!(e.field, "query");
        assert_eq!(e.message, "line 1, col 12: expected value after '=='");
    }

    #[test]
    fn ancestry_is_root_first() {
        let t = tree();
        assert_eq!(ancestry("c", &t).unwrap(), ["root", "a", "b", "c"]);
        assert_eq!(ancestry("root", &t).unwrap(), ["root"]);
        assert_eq!(
            ancestry("nope", &t).unwrap_err().to_string(),
            "id: group \"nope\" does not exist"
        );
        assert_eq!(
            ancestry("dangling", &t).unwrap_err().to_string(),
            "parent_id: ancestor group \"gone\" does not exist"
        );
    }

    #[test]
    fn ancestry_detects_stored_cycles_and_depth() {
        let mut t = tree();
        t.insert("root".into(), Some("c".into()));
        assert!(ancestry("c", &t)
            .unwrap_err()
            .message
            .contains("contains a cycle"));

        let mut deep = HashMap::new();
        deep.insert("g0".to_string(), None);
        for i in 1..20 {
            deep.insert(format!("g{i}"), Some(format!("g{}", i - 1)));
        }
        assert_eq!(ancestry("g15", &deep).unwrap().len(), MAX_HIERARCHY_DEPTH);
        assert!(ancestry("g16", &deep)
            .unwrap_err()
            .message
            .contains("at most 16 levels"));
    }

    #[test]
    fn closures_work_as_lookups() {
        let t = tree();
        let lookup = |id: &str| t.get(id).cloned();
        assert_eq!(ancestry("b", &lookup).unwrap(), ["root", "a", "b"]);
        let bt: BTreeMap<String, Option<String>> = t.clone().into_iter().collect();
        assert_eq!(ancestry("b", &bt).unwrap(), ["root", "a", "b"]);
    }

    #[test]
    fn parent_checks() {
        let t = tree();
        assert!(check_parent(None, "c", &t).is_ok(), "new group under c");
        assert!(check_parent(Some("c"), "x", &t).is_ok(), "move c under x");
        assert!(check_parent(Some("x"), "c", &t).is_ok(), "move x under c");
        assert_eq!(
            check_parent(Some("a"), "a", &t).unwrap_err().to_string(),
            "parent_id: a group cannot be its own parent"
        );
        assert_eq!(
            check_parent(None, "missing", &t).unwrap_err().to_string(),
            "parent_id: parent group \"missing\" does not exist"
        );
        assert_eq!(
            check_parent(Some("a"), "c", &t).unwrap_err().to_string(),
            "parent_id: setting the parent to \"c\" would create a cycle: a -> c -> b -> a"
        );
        assert_eq!(
            check_parent(Some("root"), "b", &t).unwrap_err().message,
            "setting the parent to \"b\" would create a cycle: root -> b -> a -> root"
        );
        assert_eq!(
            check_parent(None, "dangling", &t).unwrap_err().message,
            "ancestor group \"gone\" does not exist"
        );
    }

    #[test]
    fn parent_check_survives_stored_cycles() {
        let mut t = tree();
        t.insert("p".into(), Some("q".into()));
        t.insert("q".into(), Some("p".into()));
        assert!(check_parent(None, "p", &t)
            .unwrap_err()
            .message
            .contains("contains a cycle"));
    }

    #[test]
    fn parent_check_limits_depth() {
        let mut deep = HashMap::new();
        deep.insert("g1".to_string(), None);
        for i in 2..=20 {
            deep.insert(format!("g{i}"), Some(format!("g{}", i - 1)));
        }
        assert!(
            check_parent(None, "g15", &deep).is_ok(),
            "new group at depth 16"
        );
        assert_eq!(
            check_parent(None, "g16", &deep).unwrap_err().message,
            "groups nest at most 16 levels deep; \"g16\" is already at depth 16"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(path(&["prod", "meters", "eu"]), "prod/meters/eu");
        assert_eq!(path(&["prod".to_string()]), "prod");
        assert_eq!(path::<&str>(&[]), "");
    }

    #[test]
    fn config_validation() {
        assert!(validate_config(&json!({})).is_ok());
        assert_eq!(
            validate_config(&json!([1])).unwrap_err().to_string(),
            "config: must be a JSON object, got an array"
        );
        assert_eq!(
            validate_config(&Value::Null).unwrap_err().message,
            "must be a JSON object, got null"
        );
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "k": deep });
        }
        let e = validate_config(&deep).unwrap_err();
        assert!(e.field.starts_with("config.k.k.k"), "{}", e.field);
        assert!(e.message.contains("nested more than 32 levels"));
        let big = json!({ "blob": "x".repeat(MAX_CONFIG_BYTES) });
        assert!(validate_config(&big)
            .unwrap_err()
            .message
            .contains("bytes as JSON"));
    }

    #[test]
    fn merge_child_wins_and_objects_merge_deeply() {
        let parent = obj(json!({
            "telemetry": { "interval_s": 60, "endpoint": "eu", "topics": ["a", "b"] },
            "log_level": "info",
            "ntp": "pool.ntp.org"
        }));
        let child = obj(json!({
            "telemetry": { "interval_s": 10, "topics": ["c"] },
            "log_level": "debug",
            "extra": true
        }));
        let merged = merge_config(&parent, &child);
        assert_eq!(
            Value::Object(merged.clone()),
            json!({
                "telemetry": { "interval_s": 10, "endpoint": "eu", "topics": ["c"] },
                "log_level": "debug",
                "ntp": "pool.ntp.org",
                "extra": true
            })
        );
        // inherited keys keep their order, new keys come after
        let keys: Vec<_> = merged.keys().cloned().collect();
        assert_eq!(keys, ["telemetry", "log_level", "ntp", "extra"]);
    }

    #[test]
    fn null_deletes_inherited_keys() {
        let parent = obj(json!({ "a": 1, "b": { "c": 2, "d": 3 }, "e": 4 }));
        let child = obj(json!({ "a": null, "b": { "c": null }, "missing": null }));
        assert_eq!(
            Value::Object(merge_config(&parent, &child)),
            json!({ "b": { "d": 3 }, "e": 4 })
        );
    }

    #[test]
    fn nulls_never_reach_effective_config() {
        let root = obj(json!({ "x": null, "y": { "z": null, "w": [null] } }));
        assert_eq!(
            Value::Object(effective_config([&root])),
            json!({ "y": { "w": [null] } }),
            "nulls inside arrays are data and stay"
        );
    }

    #[test]
    fn type_changes_replace() {
        let parent = obj(json!({ "a": { "b": 1 }, "c": 5 }));
        let child = obj(json!({ "a": "flat", "c": { "d": null, "e": 1 } }));
        assert_eq!(
            Value::Object(merge_config(&parent, &child)),
            json!({ "a": "flat", "c": { "e": 1 } })
        );
    }

    #[test]
    fn effective_config_merges_down_the_chain() {
        let root = obj(json!({ "interval": 60, "region": "global", "feature": { "x": true } }));
        let mid = obj(json!({ "region": "eu", "feature": { "y": true } }));
        let leaf = obj(json!({ "interval": 5, "feature": { "x": null } }));
        assert_eq!(
            Value::Object(effective_config([&root, &mid, &leaf])),
            json!({ "interval": 5, "region": "eu", "feature": { "y": true } })
        );
        assert!(effective_config(std::iter::empty()).is_empty());
    }
}
