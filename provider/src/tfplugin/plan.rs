//! Generic planning: turns Terraform's proposed new state into the planned
//! state from the schema's declarations, the way terraform-plugin-framework
//! users expect.
//!
//! Rules, per top-level attribute:
//! - write-only attributes are never planned (always null);
//! - an omitted optional+computed attribute takes its default, else on
//!   create it is "known after apply";
//! - on update, omitted computed attributes keep their prior value when
//!   nothing else changes, and become unknown when something does — unless
//!   they are marked use-state-for-unknown;
//! - a changed attribute marked requires-replace (or a changed nested block
//!   marked so) is reported for replacement.

use super::diag::AttrPath;
use super::schema::{Block, PlanModifier, Schema};
use super::value::Value;

pub struct Planned {
    pub planned: Value,
    pub requires_replace: Vec<AttrPath>,
}

pub fn plan(schema: &Schema, prior: &Value, proposed: &Value, config: &Value) -> Planned {
    if proposed.is_null() {
        return Planned {
            planned: Value::Null,
            requires_replace: vec![],
        };
    }
    let Value::Object(mut planned) = proposed.clone() else {
        return Planned {
            planned: proposed.clone(),
            requires_replace: vec![],
        };
    };
    let creating = prior.is_null();
    let cfg = |name: &str| config.attr(name).cloned().unwrap_or(Value::Null);
    let prior_attr = |name: &str| prior.attr(name).cloned().unwrap_or(Value::Null);

    // Pass 1: write-only and defaults; unknown computed values on create.
    for a in &schema.block.attributes {
        if a.write_only {
            planned.insert(a.name.clone(), Value::Null);
            continue;
        }
        if a.is_computed() && cfg(&a.name).is_null() {
            if let Some(d) = &a.default {
                planned.insert(a.name.clone(), d.clone());
            } else if creating {
                planned.insert(a.name.clone(), Value::Unknown);
            }
        }
    }

    // Pass 2: on update, anything that changed makes the other omitted
    // computed attributes unknown (the server may recompute them).
    if !creating {
        let changed = schema.block.attributes.iter().any(|a| {
            !a.write_only && planned.get(&a.name).unwrap_or(&Value::Null) != &prior_attr(&a.name)
        }) || schema.block.blocks.iter().any(|b| {
            planned.get(&b.type_name).unwrap_or(&Value::Null) != &prior_attr(&b.type_name)
        });
        if changed {
            for a in &schema.block.attributes {
                if a.is_computed()
                    && !a.write_only
                    && a.default.is_none()
                    && cfg(&a.name).is_null()
                    && !a.has(PlanModifier::UseStateForUnknown)
                {
                    planned.insert(a.name.clone(), Value::Unknown);
                }
            }
        }
    }

    // Defaults of attributes inside nested blocks.
    for b in &schema.block.blocks {
        if let Some(pv) = planned.get_mut(&b.type_name) {
            let cv = config.attr(&b.type_name).unwrap_or(&Value::Null);
            block_defaults(&b.block, pv, cv);
        }
    }

    let mut requires_replace = Vec::new();
    if !creating {
        for a in &schema.block.attributes {
            if a.has(PlanModifier::RequiresReplace)
                && planned.get(&a.name).unwrap_or(&Value::Null) != &prior_attr(&a.name)
            {
                requires_replace.push(AttrPath::root(&a.name));
            }
        }
        for b in &schema.block.blocks {
            if b.requires_replace
                && planned.get(&b.type_name).unwrap_or(&Value::Null) != &prior_attr(&b.type_name)
            {
                requires_replace.push(AttrPath::root(&b.type_name));
            }
        }
    }
    Planned {
        planned: Value::Object(planned),
        requires_replace,
    }
}

/// Plans the defaults of a nested block's attributes, element by element
/// (list and single blocks; set elements have no stable correspondence).
fn block_defaults(block: &Block, planned: &mut Value, config: &Value) {
    match (planned, config) {
        (Value::List(ps), Value::List(cs)) => {
            for (p, c) in ps.iter_mut().zip(cs) {
                block_defaults(block, p, c);
            }
        }
        (Value::Object(p), Value::Object(c)) => {
            for a in &block.attributes {
                if let Some(d) = &a.default {
                    if c.get(&a.name).is_none_or(|v| v.is_null()) {
                        p.insert(a.name.clone(), d.clone());
                    }
                }
            }
            for nb in &block.blocks {
                if let (Some(pv), Some(cv)) = (p.get_mut(&nb.type_name), c.get(&nb.type_name)) {
                    block_defaults(&nb.block, pv, cv);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfplugin::schema::{Attribute, Block};
    use std::collections::BTreeMap;

    fn schema() -> Schema {
        Schema::new(
            0,
            Block::new("t")
                .attr(Attribute::string("id").computed().use_state_for_unknown())
                .attr(Attribute::string("name").required())
                .attr(Attribute::string("kind").required().requires_replace())
                .attr(Attribute::string("description").default(""))
                .attr(Attribute::string("path").computed())
                .attr(Attribute::string("secret").optional().write_only()),
        )
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    }
    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn create_plans_defaults_and_unknown_computed() {
        let config = obj(&[
            ("id", Value::Null),
            ("name", s("a")),
            ("kind", s("k")),
            ("description", Value::Null),
            ("path", Value::Null),
            ("secret", s("hush")),
        ]);
        let p = plan(&schema(), &Value::Null, &config, &config);
        assert_eq!(p.planned.attr("id"), Some(&Value::Unknown));
        assert_eq!(p.planned.attr("path"), Some(&Value::Unknown));
        assert_eq!(p.planned.attr("description"), Some(&s("")));
        assert_eq!(p.planned.attr("secret"), Some(&Value::Null));
        assert!(p.requires_replace.is_empty());
    }

    #[test]
    fn unchanged_update_keeps_computed_values() {
        let prior = obj(&[
            ("id", s("1")),
            ("name", s("a")),
            ("kind", s("k")),
            ("description", s("")),
            ("path", s("/a")),
            ("secret", Value::Null),
        ]);
        let config = obj(&[
            ("id", Value::Null),
            ("name", s("a")),
            ("kind", s("k")),
            ("description", Value::Null),
            ("path", Value::Null),
            ("secret", Value::Null),
        ]);
        let p = plan(&schema(), &prior, &prior, &config);
        assert_eq!(p.planned, prior);
    }

    #[test]
    fn changed_update_unknowns_computed_but_keeps_stable_ones() {
        let prior = obj(&[
            ("id", s("1")),
            ("name", s("a")),
            ("kind", s("k")),
            ("description", s("")),
            ("path", s("/a")),
            ("secret", Value::Null),
        ]);
        let mut proposed = prior.clone();
        if let Value::Object(m) = &mut proposed {
            m.insert("name".into(), s("b"));
            m.insert("kind".into(), s("k2"));
        }
        let config = obj(&[
            ("id", Value::Null),
            ("name", s("b")),
            ("kind", s("k2")),
            ("description", Value::Null),
            ("path", Value::Null),
            ("secret", Value::Null),
        ]);
        let p = plan(&schema(), &prior, &proposed, &config);
        assert_eq!(p.planned.attr("id"), Some(&s("1")));
        assert_eq!(p.planned.attr("path"), Some(&Value::Unknown));
        assert_eq!(p.requires_replace, vec![AttrPath::root("kind")]);
    }

    #[test]
    fn nested_block_defaults_are_planned() {
        use crate::tfplugin::schema::NestedBlock;
        let schema = Schema::new(
            0,
            Block::new("t").block(NestedBlock::list(
                "phase",
                Block::new("p")
                    .attr(Attribute::number("percent").required())
                    .attr(Attribute::string("soak").default("0s")),
            )),
        );
        let cfg = obj(&[(
            "phase",
            Value::List(vec![
                obj(&[("percent", Value::from(10)), ("soak", s("1h"))]),
                obj(&[("percent", Value::from(100)), ("soak", Value::Null)]),
            ]),
        )]);
        let p = plan(&schema, &Value::Null, &cfg, &cfg);
        let Some(Value::List(phases)) = p.planned.attr("phase").cloned() else {
            panic!()
        };
        assert_eq!(phases[0].attr("soak"), Some(&s("1h")));
        assert_eq!(phases[1].attr("soak"), Some(&s("0s")));
    }

    #[test]
    fn destroy_plans_null() {
        let p = plan(
            &schema(),
            &obj(&[("id", s("1"))]),
            &Value::Null,
            &Value::Null,
        );
        assert!(p.planned.is_null());
    }
}
