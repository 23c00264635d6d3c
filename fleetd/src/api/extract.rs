//! Request extractors whose rejections use our JSON error shape.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain-text bodies and
//! (for JSON data errors) a 422 that does not say which field was wrong.
//! These wrappers answer 400 with `field` set to the exact path of the
//! problem (`name`, `tags.env`, or the unknown field itself).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use fleet_api::ErrorKind;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::HttpError;

/// A JSON request body, deserialised into `T`.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        if !is_json(req.headers()) {
            return Err(HttpError::new(
                ErrorKind::UnsupportedMediaType,
                None,
                "the request body must be JSON: send the header \"Content-Type: application/json\"",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_error(rejection: BytesRejection) -> HttpError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        HttpError::new(
            ErrorKind::PayloadTooLarge,
            None,
            "the request body is too large",
        )
    } else {
        HttpError::invalid_request(format!(
            "could not read the request body: {}",
            rejection.body_text()
        ))
    }
}

/// Deserialises `bytes`, describing any failure in terms of the field.
///
/// The body must be a JSON object: serde would otherwise also accept a
/// struct written as an array of its fields in declaration order, a form no
/// client should rely on.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(HttpError::invalid_request(
                "the request body is empty; expected a JSON object",
            ))
        }
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err(HttpError::invalid_request(
                "the request body must be a JSON object",
            ))
        }
        // Not JSON at all: let the parser below describe the syntax error.
        Some(_) => {}
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(describe)?;
    de.end().map_err(|e| {
        HttpError::invalid_request(format!(
            "the request body is not valid JSON: {e} (unexpected data after the object)"
        ))
    })?;
    Ok(value)
}

fn describe(err: serde_path_to_error::Error<serde_json::Error>) -> HttpError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            HttpError::invalid_request(format!("the request body is not valid JSON: {inner}"))
        }
        Category::Data => {
            let detail = without_position(&inner.to_string()).replace('`', "\"");
            // Missing and unknown fields are reported at the enclosing
            // object; the field itself is only named in serde's message.
            // An unknown field's path ends with the field itself; a missing
            // field is reported at the enclosing object and only named in
            // serde's message.
            // Below the top level, the message starts with the path, so
            // that it names the field as `field` does ("statements[0]:
            // missing field \"actions\"").
            if let Some(name) = quoted_after(&detail, "unknown field ").map(str::to_owned) {
                // serde_path_to_error's path ends with the unknown field.
                return if path == "." || path == name {
                    HttpError::invalid_field(&name, detail)
                } else {
                    HttpError::invalid_field(&path, format!("{path}: {detail}"))
                };
            }
            if let Some(name) = quoted_after(&detail, "missing field ").map(str::to_owned) {
                return if path == "." {
                    HttpError::invalid_field(&name, detail)
                } else {
                    let field = format!("{path}.{name}");
                    HttpError::invalid_field(&field, format!("{path}: {detail}"))
                };
            }
            if path == "." {
                HttpError::invalid_request(format!("request body: {detail}"))
            } else {
                HttpError::invalid_field(&path, format!("{path}: {detail}"))
            }
        }
    }
}

/// serde_json appends " at line L column C"; drop it from data errors,
/// whose position is the field path instead.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// In `unknown field "x", expected ...`, the `x` after `prefix`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.split_once(prefix)?.1.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// Query-string parameters, checked by name so that unknown or repeated
/// ones are reported instead of silently ignored.
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                HttpError::invalid_request(format!("invalid query string: {}", e.body_text()))
            })?;
        Ok(QueryParams(pairs))
    }
}

impl QueryParams {
    /// Fails on any parameter not in `allowed` or given more than once.
    pub fn only(&self, allowed: &[&str]) -> Result<(), HttpError> {
        for (i, (name, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(HttpError::invalid_field(
                    name,
                    format!(
                        "unknown query parameter {name:?}; expected one of: {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if self.0[..i].iter().any(|(n, _)| n == name) {
                return Err(HttpError::invalid_field(
                    name,
                    format!("query parameter {name:?} is given more than once"),
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses an optional integer parameter.
    pub fn int<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, HttpError> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    HttpError::invalid_field(name, format!("{name} must be an integer, got {v:?}"))
                })
            })
            .transpose()
    }
}

/// The `{id}` segment of an object route.
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| HttpError::invalid_field("id", format!("id: {}", e.body_text())))?;
        Ok(IdPath(id))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        tags: BTreeMap<String, String>,
    }

    fn err(json: &str) -> fleet_api::ApiError {
        parse_json::<Body>(json.as_bytes()).unwrap_err().0
    }

    #[test]
    fn names_unknown_fields() {
        let e = err(r#"{"name":"a","colour":"red"}"#);
        assert_eq!(e.field.as_deref(), Some("colour"));
        assert_eq!(
            e.message,
            r#"unknown field "colour", expected "name" or "tags""#
        );
    }

    #[test]
    fn names_missing_fields() {
        let e = err(r#"{}"#);
        assert_eq!(e.field.as_deref(), Some("name"));
        assert_eq!(e.message, r#"missing field "name""#);
        let e = err(r#"{"name":"a","tags":[]}"#);
        assert_eq!(e.field.as_deref(), Some("tags"));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Body>,
    }

    #[test]
    fn nested_missing_and_unknown_fields_name_their_path_in_the_message() {
        let e = parse_json::<Outer>(br#"{"items":[{"tags":{}}]}"#)
            .unwrap_err()
            .0;
        assert_eq!(e.field.as_deref(), Some("items[0].name"));
        assert_eq!(e.message, r#"items[0]: missing field "name""#);
        let e = parse_json::<Outer>(br#"{"items":[{"name":"a","x":1}]}"#)
            .unwrap_err()
            .0;
        assert_eq!(e.field.as_deref(), Some("items[0].x"));
        assert!(
            e.message.starts_with(r#"items[0].x: unknown field "x""#),
            "{}",
            e.message
        );
    }

    #[test]
    fn names_nested_type_errors() {
        let e = err(r#"{"name":"a","tags":{"env":5}}"#);
        assert_eq!(e.field.as_deref(), Some("tags.env"));
        assert!(
            e.message.starts_with("tags.env: invalid type: integer"),
            "{}",
            e.message
        );
        let e = err(r#"{"name":null}"#);
        assert_eq!(e.field.as_deref(), Some("name"));
    }

    #[test]
    fn syntax_errors_have_no_field() {
        let e = err(r#"{"name":"#);
        assert_eq!(e.field, None);
        assert!(
            e.message.starts_with("the request body is not valid JSON"),
            "{}",
            e.message
        );
        let e = err("");
        assert_eq!(
            e.message,
            "the request body is empty; expected a JSON object"
        );
        let e = err(r#"{"name":"a"} x"#);
        assert!(
            e.message.contains("unexpected data after the object"),
            "{}",
            e.message
        );
        let e = err(" [\"a\", {}]");
        assert_eq!(e.field, None);
        assert_eq!(e.message, "the request body must be a JSON object");
        let e = err("nope");
        assert!(
            e.message.starts_with("the request body is not valid JSON"),
            "{}",
            e.message
        );
    }
}
