//! Bridges cty values and plain Rust structs (serde), so a resource works
//! with typed models and never handles msgpack or unknown markers.
//!
//! Unknown values become `null` on the way into a model: by the time a
//! resource's create or update runs, only computed attributes — the ones the
//! resource fills in — can still be unknown.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Serialize};

use super::diag::{Diagnostic, Diagnostics};
use super::value::{Number, Type, Value};

/// A value as plain JSON (unknown → null; sets → arrays).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null | Value::Unknown => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) => serde_json::from_str::<serde_json::Number>(&n.0)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::String(s) => J::String(s.clone()),
        Value::List(xs) | Value::Set(xs) | Value::Tuple(xs) => {
            J::Array(xs.iter().map(to_json).collect())
        }
        Value::Map(m) | Value::Object(m) => {
            J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        Value::Dynamic(_, inner) => to_json(inner),
    }
}

/// Builds a value of type `ty` from plain JSON. With `lenient`, object keys
/// the type does not know are dropped (used when upgrading old state).
pub fn from_json(j: &serde_json::Value, ty: &Type, lenient: bool) -> Result<Value, String> {
    from_json_at(j, ty, lenient, "")
}

fn from_json_at(
    j: &serde_json::Value,
    ty: &Type,
    lenient: bool,
    at: &str,
) -> Result<Value, String> {
    use serde_json::Value as J;
    if j.is_null() {
        return Ok(Value::Null);
    }
    let wrong = |what: &str| {
        Err(format!(
            "{}: expected {what}, got {j}",
            if at.is_empty() { "value" } else { at }
        ))
    };
    Ok(match ty {
        Type::Bool => match j {
            J::Bool(b) => Value::Bool(*b),
            _ => return wrong("a bool"),
        },
        Type::Number => match j {
            J::Number(n) => {
                Value::Number(Number::parse(&n.to_string()).map_err(|e| e.to_string())?)
            }
            _ => return wrong("a number"),
        },
        Type::String => match j {
            J::String(s) => Value::String(s.clone()),
            J::Number(n) => Value::String(n.to_string()),
            J::Bool(b) => Value::String(b.to_string()),
            _ => return wrong("a string"),
        },
        Type::List(et) | Type::Set(et) => match j {
            J::Array(xs) => {
                let items = xs
                    .iter()
                    .enumerate()
                    .map(|(i, x)| from_json_at(x, et, lenient, &format!("{at}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if matches!(ty, Type::Set(_)) {
                    Value::Set(items)
                } else {
                    Value::List(items)
                }
            }
            _ => return wrong("a list"),
        },
        Type::Tuple(ets) => match j {
            J::Array(xs) if xs.len() == ets.len() => Value::Tuple(
                xs.iter()
                    .zip(ets)
                    .enumerate()
                    .map(|(i, (x, t))| from_json_at(x, t, lenient, &format!("{at}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => return wrong("a tuple"),
        },
        Type::Map(et) => match j {
            J::Object(m) => Value::Map(
                m.iter()
                    .map(|(k, x)| {
                        Ok((
                            k.clone(),
                            from_json_at(x, et, lenient, &format!("{at}[{k:?}]"))?,
                        ))
                    })
                    .collect::<Result<BTreeMap<_, _>, String>>()?,
            ),
            _ => return wrong("a map"),
        },
        Type::Object(attrs) => match j {
            J::Object(m) => {
                if !lenient {
                    if let Some(k) = m.keys().find(|k| !attrs.contains_key(*k)) {
                        return Err(format!("{at}: unsupported attribute {k:?}"));
                    }
                }
                let mut out = BTreeMap::new();
                for (name, aty) in attrs {
                    let v = match m.get(name) {
                        Some(x) => from_json_at(x, aty, lenient, &format!("{at}.{name}"))?,
                        None => Value::Null,
                    };
                    out.insert(name.clone(), v);
                }
                Value::Object(out)
            }
            _ => return wrong("an object"),
        },
        Type::Dynamic => {
            let (t, v) = infer_dynamic(j);
            Value::Dynamic(t, Box::new(v))
        }
    })
}

/// The natural cty type of a JSON value, for dynamic attributes.
fn infer_dynamic(j: &serde_json::Value) -> (Type, Value) {
    use serde_json::Value as J;
    match j {
        J::Null => (Type::Dynamic, Value::Null),
        J::Bool(b) => (Type::Bool, Value::Bool(*b)),
        J::Number(n) => (Type::Number, Value::Number(Number(n.to_string()))),
        J::String(s) => (Type::String, Value::String(s.clone())),
        J::Array(xs) => {
            let (ts, vs): (Vec<_>, Vec<_>) = xs.iter().map(infer_dynamic).unzip();
            (Type::Tuple(ts), Value::Tuple(vs))
        }
        J::Object(m) => {
            let mut ts = BTreeMap::new();
            let mut vs = BTreeMap::new();
            for (k, x) in m {
                let (t, v) = infer_dynamic(x);
                ts.insert(k.clone(), t);
                vs.insert(k.clone(), v);
            }
            (Type::Object(ts), Value::Object(vs))
        }
    }
}

/// Decodes a resource's value into its model.
pub fn decode<M: DeserializeOwned>(v: &Value) -> Result<M, Diagnostics> {
    serde_json::from_value(to_json(v)).map_err(|e| {
        Diagnostics::from(Diagnostic::error(
            "Provider could not read the value",
            format!("the provider's model does not match its schema: {e}"),
        ))
    })
}

/// Encodes a model into a value of the resource's object type.
pub fn encode<M: Serialize>(m: &M, ty: &Type) -> Result<Value, Diagnostics> {
    let j = serde_json::to_value(m).map_err(|e| {
        Diagnostics::from(Diagnostic::error(
            "Provider could not encode the value",
            e.to_string(),
        ))
    })?;
    from_json(&j, ty, false).map_err(|e| {
        Diagnostics::from(Diagnostic::error(
            "Provider could not encode the value",
            format!("the provider's model does not match its schema: {e}"),
        ))
    })
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Number(Number::from_i64(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct M {
        id: Option<String>,
        n: i64,
        tags: BTreeMap<String, String>,
    }

    fn ty() -> Type {
        Type::Object(BTreeMap::from([
            ("id".to_string(), Type::String),
            ("n".to_string(), Type::Number),
            ("tags".to_string(), Type::Map(Box::new(Type::String))),
        ]))
    }

    #[test]
    fn model_round_trips_and_unknown_reads_as_none() {
        let m = M {
            id: Some("a".into()),
            n: 7,
            tags: BTreeMap::from([("k".into(), "v".into())]),
        };
        let v = encode(&m, &ty()).unwrap();
        assert_eq!(decode::<M>(&v).unwrap(), m);
        let mut obj = match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        };
        obj.insert("id".into(), Value::Unknown);
        let back: M = decode(&Value::Object(obj)).unwrap();
        assert_eq!(back.id, None);
    }

    #[test]
    fn unsupported_attribute_is_refused_unless_lenient() {
        let j = serde_json::json!({"id": "x", "n": 1, "tags": {}, "old": true});
        assert!(from_json(&j, &ty(), false).unwrap_err().contains("old"));
        assert!(from_json(&j, &ty(), true).is_ok());
    }
}
