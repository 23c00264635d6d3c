//! Reusable attribute validators. Each runs only on known, non-null values:
//! an unknown value at plan time is never an error.

use std::sync::Arc;

use super::diag::{AttrPath, Diagnostic, Diagnostics};
use super::schema::Validator;
use super::value::Value;

/// Any check over a string value: `Err(message)` becomes an error at the path.
pub fn string(check: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) -> Validator {
    Arc::new(move |v: &Value, path: &AttrPath, diags: &mut Diagnostics| {
        if let Some(s) = v.as_str() {
            if let Err(msg) = check(s) {
                diags.push(
                    Diagnostic::error(format!("Invalid value for {path}"), msg).at(path.clone()),
                );
            }
        }
    })
}

pub fn length_between(min: usize, max: usize) -> Validator {
    string(move |s| {
        let n = s.chars().count();
        if n < min || n > max {
            Err(format!(
                "must be between {min} and {max} characters long, got {n}"
            ))
        } else {
            Ok(())
        }
    })
}

/// Names fleetd accepts: letters, digits, `.`, `_` and `-`.
pub fn identifier(max: usize) -> Validator {
    string(move |s| {
        if s.is_empty() || s.chars().count() > max {
            return Err(format!("must be 1 to {max} characters long"));
        }
        match s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            Some(c) => Err(format!(
                "{c:?} is not allowed: use letters, digits, '.', '_' and '-'"
            )),
            None => Ok(()),
        }
    })
}

pub fn one_of(allowed: &'static [&'static str]) -> Validator {
    string(move |s| {
        if allowed.contains(&s) {
            Ok(())
        } else {
            Err(format!("must be one of {}, got {s:?}", allowed.join(", ")))
        }
    })
}

/// An integer in `[min, max]`.
pub fn int_between(min: i64, max: i64) -> Validator {
    Arc::new(move |v: &Value, path: &AttrPath, diags: &mut Diagnostics| {
        if let Some(n) = v.as_number() {
            match n.as_i64() {
                Some(i) if i >= min && i <= max => {}
                _ => diags.push(
                    Diagnostic::error(
                        format!("Invalid value for {path}"),
                        format!(
                            "must be a whole number between {min} and {max}, got {}",
                            n.0
                        ),
                    )
                    .at(path.clone()),
                ),
            }
        }
    })
}

/// Checks every key and value of a map of strings.
pub fn map_entries(max_entries: usize, max_key: usize, max_value: usize) -> Validator {
    Arc::new(move |v: &Value, path: &AttrPath, diags: &mut Diagnostics| {
        if let Value::Map(m) = v {
            if m.len() > max_entries {
                diags.push(
                    Diagnostic::error(
                        format!("Invalid value for {path}"),
                        format!("at most {max_entries} entries are allowed, got {}", m.len()),
                    )
                    .at(path.clone()),
                );
            }
            for (k, val) in m {
                let p = path.clone().key(k);
                if k.is_empty() || k.chars().count() > max_key {
                    diags.push(
                        Diagnostic::error(
                            format!("Invalid key in {path}"),
                            format!("keys must be 1 to {max_key} characters long"),
                        )
                        .at(p.clone()),
                    );
                }
                if let Some(s) = val.as_str() {
                    if s.chars().count() > max_value {
                        diags.push(
                            Diagnostic::error(
                                format!("Invalid value for {p}"),
                                format!("values must be at most {max_value} characters long"),
                            )
                            .at(p),
                        );
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &Validator, val: Value) -> Diagnostics {
        let mut d = Diagnostics::new();
        v(&val, &AttrPath::root("name"), &mut d);
        d
    }

    #[test]
    fn identifier_names_the_offending_character() {
        let d = run(&identifier(10), Value::String("a b".into()));
        assert!(d.has_errors());
        assert!(d.0[0].detail.contains("' '"), "{:?}", d);
        assert_eq!(d.0[0].path, Some(AttrPath::root("name")));
        assert!(!run(&identifier(20), Value::String("ok-name_1.2".into())).has_errors());
    }

    #[test]
    fn unknown_and_null_are_never_errors() {
        assert!(!run(&identifier(3), Value::Unknown).has_errors());
        assert!(!run(&identifier(3), Value::Null).has_errors());
        assert!(!run(&int_between(1, 2), Value::Unknown).has_errors());
    }
}
