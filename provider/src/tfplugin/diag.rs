//! Diagnostics with attribute paths: how every error reaches the user.
//!
//! Terraform shows a diagnostic's summary and detail and, when it carries an
//! attribute path, points at the exact line of configuration. Every
//! user-facing failure in the provider is one of these, never a panic.

use std::fmt;

/// One step of an attribute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Attr(String),
    Key(String),
    Index(i64),
}

/// A path to an attribute inside a resource's configuration, e.g.
/// `statement[1].actions[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrPath(pub Vec<Step>);

impl AttrPath {
    pub fn root(name: &str) -> Self {
        AttrPath(vec![Step::Attr(name.to_string())])
    }
    pub fn attr(mut self, name: &str) -> Self {
        self.0.push(Step::Attr(name.to_string()));
        self
    }
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Step::Key(key.to_string()));
        self
    }
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Step::Index(i as i64));
        self
    }
    /// Parses the dotted form our backend uses in error bodies
    /// (`phase[2].percent`, `tags["a"]`) into a path.
    pub fn parse(field: &str) -> Self {
        let mut steps = Vec::new();
        for part in field.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                steps.push(Step::Attr(name.to_string()));
            }
            while let Some(end) = rest.find(']') {
                let inner = &rest[1..end];
                if let Ok(i) = inner.parse::<i64>() {
                    steps.push(Step::Index(i));
                } else {
                    steps.push(Step::Key(inner.trim_matches('"').to_string()));
                }
                rest = &rest[end + 1..];
            }
        }
        AttrPath(steps)
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Step::Attr(a) if i == 0 => write!(f, "{a}")?,
                Step::Attr(a) => write!(f, ".{a}")?,
                Step::Key(k) => write!(f, "[{k:?}]")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub path: Option<AttrPath>,
}

impl Diagnostic {
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            summary: summary.into(),
            detail: detail.into(),
            path: None,
        }
    }
    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(summary, detail)
        }
    }
    pub fn at(mut self, path: AttrPath) -> Self {
        self.path = Some(path);
        self
    }
}

/// An ordered collection of diagnostics; the unit every framework hook
/// reports into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn error(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Diagnostic::error(summary, detail));
    }
    pub fn error_at(
        &mut self,
        path: AttrPath,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(Diagnostic::error(summary, detail).at(path));
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            match &d.path {
                Some(p) => writeln!(f, "{}: {} ({})", p, d.summary, d.detail)?,
                None => writeln!(f, "{} ({})", d.summary, d.detail)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backend_field_paths() {
        let p = AttrPath::parse("phase[2].percent");
        assert_eq!(
            p.0,
            vec![
                Step::Attr("phase".into()),
                Step::Index(2),
                Step::Attr("percent".into())
            ]
        );
        assert_eq!(p.to_string(), "phase[2].percent");
        let p = AttrPath::parse("tags[\"env\"]");
        assert_eq!(
            p.0,
            vec![Step::Attr("tags".into()), Step::Key("env".into())]
        );
    }
}
