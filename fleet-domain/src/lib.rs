//! Pure fleet rules: no HTTP, no SQL, no clock or randomness that a caller
//! cannot inject. Everything here is testable with plain values.
//!
//! Every module validates its own inputs and reports problems as a
//! [`FieldError`] that names the offending field with the same path a
//! Terraform user sees in their configuration (`phase[2].percent`,
//! `statement[1].actions[0]`). The API layer turns it into
//! `{"error": "invalid_field", "field": ..., "message": ...}` without having
//! to understand the rule that failed.
//!
//! Validators stop at the first problem, in document order. That keeps
//! errors deterministic (the same input always names the same field) and
//! maps one-to-one onto the API's single-error response shape.

pub mod compliance;
pub mod device;
pub mod duration;
pub mod enrollment;
pub mod firmware;
pub mod group;
pub mod pki;
pub mod policy;
pub mod query;
pub mod rollout;
pub mod rollout_engine;

use serde::Serialize;

/// A validation failure tied to one field of a request.
///
/// `field` is a path into the request as the user wrote it: plain names
/// (`name`), nested objects joined with `.` (`failure_threshold.percent`)
/// and list elements with `[index]` (`hardware[1]`). Block lists use the
/// block's singular HCL name (`phase[0]`, `statement[2]`) so the path reads
/// like the Terraform configuration that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the offending field, e.g. `statement[1].actions[0]`.
    pub field: String,
    /// Human-readable explanation, without the field path.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Re-roots the error under `prefix`: an error on `percent` becomes an
    /// error on `failure_threshold.percent`. Used when a nested validator
    /// does not know where its input sits in the surrounding request.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// Builds `list[index]` field paths.
pub fn indexed(list: &str, index: usize) -> String {
    format!("{list}[{index}]")
}

/// Longest name accepted for any named object (group, policy, product...).
pub const MAX_NAME_LEN: usize = 128;

/// The shared naming rule for objects that users refer to by name: a
/// letter or digit first, then letters, digits, `-`, `_` and `.`.
///
/// Names end up in group paths (`prod/meters`), policy resource patterns and
/// log lines, so anything that needs quoting there (`/`, spaces, `*`, `$`,
/// braces) is refused up front rather than escaped everywhere later.
pub fn check_name(field: &str, value: &str, max_len: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    let len = value.chars().count();
    if len > max_len {
        return Err(FieldError::new(
            field,
            format!("must be at most {max_len} characters long, got {len}"),
        ));
    }
    let first = value.chars().next().unwrap_or(' ');
    if !first.is_ascii_alphanumeric() {
        return Err(FieldError::new(
            field,
            format!("must start with a letter or digit, got {first:?}"),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(FieldError::new(
            field,
            format!(
                "invalid character {bad:?} in {value:?}: use letters, digits, '-', '_' and '.'"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_displays_path_and_message() {
        let e = FieldError::new("phase[2].percent", "must be at most 100");
        assert_eq!(e.to_string(), "phase[2].percent: must be at most 100");
    }

    #[test]
    fn within_prefixes_paths() {
        assert_eq!(
            FieldError::new("percent", "x")
                .within("failure_threshold")
                .field,
            "failure_threshold.percent"
        );
        assert_eq!(
            FieldError::new("[3]", "x").within("hardware").field,
            "hardware[3]"
        );
        assert_eq!(FieldError::new("", "x").within("config").field, "config");
    }

    #[test]
    fn field_error_serializes_for_the_api() {
        let v = serde_json::to_value(FieldError::new("name", "must not be empty")).unwrap();
        assert_eq!(v["field"], "name");
        assert_eq!(v["message"], "must not be empty");
    }

    #[test]
    fn names() {
        assert!(check_name("name", "meter-v2_eu.1", 128).is_ok());
        assert_eq!(
            check_name("name", "", 128).unwrap_err().message,
            "must not be empty"
        );
        assert_eq!(
            check_name("name", "-x", 128).unwrap_err().message,
            "must start with a letter or digit, got '-'"
        );
        assert_eq!(
            check_name("name", "a/b", 128).unwrap_err().message,
            "invalid character '/' in \"a/b\": use letters, digits, '-', '_' and '.'"
        );
        assert_eq!(
            check_name("name", "abcd", 3).unwrap_err().message,
            "must be at most 3 characters long, got 4"
        );
        assert_eq!(indexed("hardware", 2), "hardware[2]");
    }
}
