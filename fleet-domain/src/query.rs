//! The device query language used by dynamic groups and device search.
//!
//! ```text
//! hardware == "meter-v2" and attr.region in ["eu-west", "eu-north"] and firmware < "2.0.0"
//! ```
//!
//! Grammar (keywords are case-insensitive, canonical form is lower case):
//!
//! ```text
//! query      := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | primary
//! primary    := "(" or ")" | "exists" "(" field ")" | comparison
//! comparison := field op value | field "in" list | field "not" "in" list
//! op         := "==" | "!=" | "<" | "<=" | ">" | ">="
//! list       := "[" (value ("," value)* ","?)? "]"
//! value      := string | number | "true" | "false"
//! field      := id | name | hardware | firmware | health | last_seen
//!             | attr.KEY | attr["any key"]
//! ```
//!
//! Why a hand-written lexer and recursive-descent parser: the queries are
//! validated at `terraform plan` time, so error messages matter more than
//! anything else and must point at a line and column
//! (`line 1, col 17: expected value after '=='`).
//!
//! Types are checked at parse time so that mistakes surface in the plan,
//! not as a group that silently matches nothing:
//! - `id`, `name`, `hardware`, `health` compare with strings (byte order);
//! - `firmware` compares as semantic versions (precedence order, build
//!   metadata ignored); a literal that is not a valid version is an error
//!   pointing at the literal;
//! - `last_seen` compares with RFC 3339 timestamps;
//! - `attr.KEY` values are strings on the device; they compare numerically
//!   when both sides read as numbers, else as strings; `true`/`false` match
//!   the strings `"true"`/`"false"` (booleans cannot be ordered).
//!
//! Missing values: a comparison on a field the device does not have is
//! false, and `!=` / `not in` are exactly the negation of `==` / `in`, so
//! `attr.region != "eu"` matches devices without a region (like Kubernetes
//! label selectors). Use `exists(attr.region) and ...` to exclude them.
//!
//! [`Query`]'s `Display` prints a canonical text that re-parses to the same
//! AST; `and`/`or` chains are flattened, so `(a and b) and c` and
//! `a and (b and c)` have the same canonical form. Inputs are bounded
//! ([`MAX_QUERY_LEN`], [`MAX_DEPTH`], [`MAX_LIST_ITEMS`]) because queries
//! arrive from the network and are evaluated against millions of devices.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use semver::Version;

use super::FieldError;

/// Longest accepted query source, in bytes.
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// Deepest accepted nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 32;
/// Most values accepted in one `in [...]` list.
pub const MAX_LIST_ITEMS: usize = 1024;

/// What a query can see of a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    pub id: String,
    pub name: String,
    pub hardware: String,
    /// Firmware version the device last reported, if any.
    pub firmware: Option<String>,
    /// Health the device last reported (`"ok"`, `"degraded"`...), if any.
    pub health: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub attributes: BTreeMap<String, String>,
}

/// A device field a query can refer to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Id,
    Name,
    Hardware,
    Firmware,
    Health,
    LastSeen,
    /// `attr.KEY`: a user-defined device attribute.
    Attr(String),
}

/// How a field's values compare; decides which literals are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Text,
    Version,
    Time,
    Attr,
}

impl Field {
    fn kind(&self) -> FieldKind {
        match self {
            Field::Id | Field::Name | Field::Hardware | Field::Health => FieldKind::Text,
            Field::Firmware => FieldKind::Version,
            Field::LastSeen => FieldKind::Time,
            Field::Attr(_) => FieldKind::Attr,
        }
    }

    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "id" => Field::Id,
            "name" => Field::Name,
            "hardware" => Field::Hardware,
            "firmware" => Field::Firmware,
            "health" => Field::Health,
            "last_seen" => Field::LastSeen,
            _ => return None,
        })
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }

    /// Applies the operator to the outcome of a comparison; `None` means
    /// "not comparable" (missing value, type mismatch), which satisfies
    /// only `!=`.
    fn holds(self, ord: Option<Ordering>) -> bool {
        match self {
            CmpOp::Eq => ord == Some(Ordering::Equal),
            CmpOp::Ne => ord != Some(Ordering::Equal),
            CmpOp::Lt => ord == Some(Ordering::Less),
            CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            CmpOp::Gt => ord == Some(Ordering::Greater),
            CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        }
    }
}

/// A literal value, already typed for the field it is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    /// Always finite.
    Num(f64),
    Bool(bool),
    /// A `firmware` literal, checked at parse time.
    Version(Version),
    /// A `last_seen` literal, checked at parse time.
    Time(DateTime<Utc>),
}

/// The query AST. `And`/`Or` hold at least two operands and never directly
/// contain an operand of their own kind (chains are flattened).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Compare {
        field: Field,
        op: CmpOp,
        value: Literal,
    },
    In {
        field: Field,
        values: Vec<Literal>,
        /// `not in`
        negated: bool,
    },
    Exists(Field),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// `a and b and ...`, flattening nested `And`s; one operand is returned as is.
    pub fn and(items: Vec<Expr>) -> Expr {
        Self::chain(items, true)
    }

    /// `a or b or ...`, flattening nested `Or`s; one operand is returned as is.
    pub fn or(items: Vec<Expr>) -> Expr {
        Self::chain(items, false)
    }

    fn chain(items: Vec<Expr>, is_and: bool) -> Expr {
        let mut flat = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Expr::And(inner) if is_and => flat.extend(inner),
                Expr::Or(inner) if !is_and => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            return flat.pop().expect("one item");
        }
        if is_and {
            Expr::And(flat)
        } else {
            Expr::Or(flat)
        }
    }

    fn eval(&self, device: &DeviceFacts) -> bool {
        match self {
            Expr::Compare { field, op, value } => op.holds(compare(device, field, value)),
            Expr::In {
                field,
                values,
                negated,
            } => {
                let found = values
                    .iter()
                    .any(|v| compare(device, field, v) == Some(Ordering::Equal));
                found != *negated
            }
            Expr::Exists(field) => exists(device, field),
            Expr::Not(inner) => !inner.eval(device),
            Expr::And(items) => items.iter().all(|e| e.eval(device)),
            Expr::Or(items) => items.iter().any(|e| e.eval(device)),
        }
    }
}

/// A parsed, type-checked query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    expr: Expr,
}

impl Query {
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether `device` is selected by the query.
    pub fn matches(&self, device: &DeviceFacts) -> bool {
        self.expr.eval(device)
    }
}

/// A necessary condition of a query, for a store to narrow a scan before
/// evaluating the query exactly: every device the query matches has a
/// value of `field` equal (as text) to one of `values`. Devices outside it
/// can be skipped; devices inside it still need [`Query::matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowing {
    /// Never [`Field::Firmware`] or [`Field::LastSeen`] (they compare as
    /// versions and times, not text).
    pub field: Field,
    /// Not empty.
    pub values: Vec<String>,
}

impl Query {
    /// A text-equality condition every match satisfies, when the query
    /// implies one: `==` or `in` on `id`, `name`, `hardware`, `health`, or
    /// on an attribute with a non-numeric string or a boolean (an
    /// attribute compared with a number-like string compares numerically,
    /// so `"1"` would match `"1.0"`: no narrowing). An `and` narrows by
    /// its first operand that does; an `or` only when every operand
    /// narrows on the same field.
    pub fn narrowing(&self) -> Option<Narrowing> {
        narrowing(&self.expr)
    }
}

fn narrowing(expr: &Expr) -> Option<Narrowing> {
    match expr {
        Expr::Compare {
            field,
            op: CmpOp::Eq,
            value,
        } => Some(Narrowing {
            field: field.clone(),
            values: vec![equal_text(field, value)?],
        }),
        Expr::In {
            field,
            values,
            negated: false,
        } if !values.is_empty() => Some(Narrowing {
            field: field.clone(),
            values: values
                .iter()
                .map(|v| equal_text(field, v))
                .collect::<Option<_>>()?,
        }),
        Expr::And(items) => items.iter().find_map(narrowing),
        Expr::Or(items) => {
            let mut all = items.iter().map(narrowing);
            let mut out = all.next()??;
            for n in all {
                let n = n?;
                if n.field != out.field {
                    return None;
                }
                out.values.extend(n.values);
            }
            out.values.sort();
            out.values.dedup();
            Some(out)
        }
        _ => None,
    }
}

/// The only text `field` can hold to compare equal to `lit`, if there is
/// exactly one.
fn equal_text(field: &Field, lit: &Literal) -> Option<String> {
    match (field.kind(), lit) {
        (FieldKind::Text, Literal::Str(s)) => Some(s.clone()),
        (FieldKind::Attr, Literal::Str(s)) if parse_number(s).is_none() => Some(s.clone()),
        (FieldKind::Attr, Literal::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

impl FromStr for Query {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// A syntax or type error, positioned in the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, col {column}: {message}")]
pub struct QueryError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Byte offset into the source.
    pub offset: usize,
    pub message: String,
}

impl QueryError {
    fn at(src: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(src.len());
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        QueryError {
            line,
            column,
            offset,
            message: message.into(),
        }
    }

    /// The error as a [`FieldError`] on `field` (e.g. `query`), keeping the
    /// position in the message.
    pub fn into_field_error(self, field: &str) -> FieldError {
        FieldError::new(field, self.to_string())
    }
}

/// Parses and type-checks a query.
pub fn parse(src: &str) -> Result<Query, QueryError> {
    if src.len() > MAX_QUERY_LEN {
        return Err(QueryError::at(
            src,
            0,
            format!(
                "query is too long ({} bytes, at most {MAX_QUERY_LEN})",
                src.len()
            ),
        ));
    }
    let mut p = Parser {
        src,
        lexer: Lexer { src, pos: 0 },
        peeked: None,
        depth: 0,
    };
    if p.peek()?.tok == Tok::Eof {
        return Err(QueryError::at(src, 0, "query is empty"));
    }
    let expr = p.parse_or()?;
    let t = p.next()?;
    if t.tok != Tok::Eof {
        return Err(p.err(
            t.start,
            format!(
                "expected 'and', 'or' or end of query, found {}",
                t.tok.describe()
            ),
        ));
    }
    Ok(Query { expr })
}

/// Entry point for a fuzz target: parses arbitrary bytes (as lossy UTF-8)
/// and checks the invariants that must hold for every accepted query —
/// canonical text re-parses to the same AST, evaluation terminates. Never
/// panics unless one of those invariants is broken.
pub fn fuzz_parse(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    let Ok(query) = parse(&src) else { return };
    let canonical = query.to_string();
    if canonical.len() <= MAX_QUERY_LEN {
        match parse(&canonical) {
            Ok(again) => assert_eq!(
                again, query,
                "canonical text {canonical:?} re-parsed differently"
            ),
            Err(e) => panic!("canonical text {canonical:?} does not re-parse: {e}"),
        }
    }
    let mut device = DeviceFacts {
        id: "dev-1".into(),
        name: "meter 1".into(),
        hardware: "meter-v2".into(),
        firmware: Some("1.2.3".into()),
        health: Some("ok".into()),
        last_seen: DateTime::from_timestamp(1_700_000_000, 0),
        attributes: BTreeMap::new(),
    };
    device.attributes.insert("region".into(), "eu-west".into());
    device.attributes.insert("count".into(), "42".into());
    let _ = query.matches(&device);
    let _ = query.matches(&DeviceFacts::default());
}

// ---------------------------------------------------------------- evaluation

fn text_value<'a>(device: &'a DeviceFacts, field: &Field) -> Option<&'a str> {
    match field {
        Field::Id => Some(&device.id),
        Field::Name => Some(&device.name),
        Field::Hardware => Some(&device.hardware),
        Field::Health => device.health.as_deref(),
        Field::Firmware => device.firmware.as_deref(),
        Field::Attr(key) => device.attributes.get(key).map(String::as_str),
        Field::LastSeen => None,
    }
}

fn exists(device: &DeviceFacts, field: &Field) -> bool {
    match field {
        Field::LastSeen => device.last_seen.is_some(),
        Field::Attr(key) => device.attributes.contains_key(key),
        other => text_value(device, other).is_some_and(|v| !v.is_empty()),
    }
}

/// Compares the device's value of `field` with `lit`; `None` when the
/// device lacks the value or the two cannot be compared.
fn compare(device: &DeviceFacts, field: &Field, lit: &Literal) -> Option<Ordering> {
    match (field.kind(), lit) {
        (FieldKind::Time, Literal::Time(t)) => device.last_seen.map(|seen| seen.cmp(t)),
        (FieldKind::Version, Literal::Version(v)) => {
            let reported = Version::parse(device.firmware.as_deref()?).ok()?;
            Some(reported.cmp_precedence(v))
        }
        (FieldKind::Text, Literal::Str(s)) => Some(text_value(device, field)?.cmp(s.as_str())),
        (FieldKind::Attr, lit) => {
            let value = text_value(device, field)?;
            match lit {
                Literal::Num(n) => parse_number(value)?.partial_cmp(n),
                Literal::Str(s) => match (parse_number(value), parse_number(s)) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    _ => Some(value.cmp(s.as_str())),
                },
                Literal::Bool(b) => {
                    (value == if *b { "true" } else { "false" }).then_some(Ordering::Equal)
                }
                Literal::Version(_) | Literal::Time(_) => None,
            }
        }
        _ => None,
    }
}

/// Reads `s` as a number using the query language's number syntax (so
/// `"inf"`, `"NaN"`, `" 1"` and `"0x10"` are not numbers).
fn parse_number(s: &str) -> Option<f64> {
    if number_len(s.as_bytes()) != s.len() || s.is_empty() {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Length of the longest prefix of `b` matching
/// `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`, or 0.
fn number_len(b: &[u8]) -> usize {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let n = digits(i);
    if n == 0 {
        return 0;
    }
    i += n;
    if b.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n > 0 {
            i += 1 + n;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let n = digits(j);
        if n > 0 {
            i = j + n;
        }
    }
    i
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64, String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Op(CmpOp),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("string {}", quote(s)),
            Tok::Num(_, text) => format!("number {text}"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Op(op) => format!("'{}'", op.as_str()),
            Tok::Eof => "end of query".into(),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Characters allowed after the first one of a word. `.`, `-`, `:` and `/`
/// are included so that `attr.net.ip-v4` needs no quoting.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '/')
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn err(&self, offset: usize, msg: impl Into<String>) -> QueryError {
        QueryError::at(self.src, offset, msg)
    }

    fn next_token(&mut self) -> Result<Token, QueryError> {
        let rest = &self.src[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let Some(c) = trimmed.chars().next() else {
            return Ok(Token {
                tok: Tok::Eof,
                start,
            });
        };
        let two = trimmed.get(..2).unwrap_or("");
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '[' => (Tok::LBracket, 1),
            ']' => (Tok::RBracket, 1),
            ',' => (Tok::Comma, 1),
            '=' if two == "==" => (Tok::Op(CmpOp::Eq), 2),
            '=' => return Err(self.err(start, "unexpected '=': use '==' to compare")),
            '!' if two == "!=" => (Tok::Op(CmpOp::Ne), 2),
            '!' => return Err(self.err(start, "unexpected '!': use 'not' to negate")),
            '<' if two == "<=" => (Tok::Op(CmpOp::Le), 2),
            '<' => (Tok::Op(CmpOp::Lt), 1),
            '>' if two == ">=" => (Tok::Op(CmpOp::Ge), 2),
            '>' => (Tok::Op(CmpOp::Gt), 1),
            '"' => return self.string(start),
            c if c.is_ascii_digit() || c == '-' => return self.number(start),
            c if is_word_start(c) => {
                let len = trimmed
                    .char_indices()
                    .find(|&(_, c)| !is_word_char(c))
                    .map_or(trimmed.len(), |(i, _)| i);
                (Tok::Word(trimmed[..len].to_string()), len)
            }
            other => {
                return Err(self.err(start, format!("unexpected character {other:?}")));
            }
        };
        self.pos += len;
        Ok(Token { tok, start })
    }

    fn number(&mut self, start: usize) -> Result<Token, QueryError> {
        let rest = &self.src[start..];
        let len = number_len(rest.as_bytes());
        if len == 0 {
            return Err(self.err(start, "unexpected '-': expected a number"));
        }
        // A number glued to letters or dots (`5m`, `1.2.3`) is a mistake,
        // most often an unquoted version or duration.
        let glued = rest[len..]
            .char_indices()
            .find(|&(_, c)| !is_word_char(c))
            .map_or(rest.len() - len, |(i, _)| i);
        if glued > 0 {
            let text = &rest[..len + glued];
            return Err(self.err(
                start,
                format!("invalid number {text:?} (quote strings and versions: \"{text}\")"),
            ));
        }
        let text = &rest[..len];
        let value: f64 = text
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| self.err(start, format!("number {text} is out of range")))?;
        self.pos = start + len;
        Ok(Token {
            tok: Tok::Num(value, text.to_string()),
            start,
        })
    }

    fn string(&mut self, start: usize) -> Result<Token, QueryError> {
        let mut out = String::new();
        let mut chars = self.src[start + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            let at = start + 1 + i;
            match c {
                '"' => {
                    self.pos = at + 1;
                    return Ok(Token {
                        tok: Tok::Str(out),
                        start,
                    });
                }
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'u' => {
                            let bad = || {
                                self.err(at, "invalid unicode escape: use \\u{XXXX} with 1-6 hex digits")
                            };
                            if chars.next().map(|(_, c)| c) != Some('{') {
                                return Err(bad());
                            }
                            let mut hex = String::new();
                            loop {
                                match chars.next() {
                                    Some((_, '}')) => break,
                                    Some((_, h)) if h.is_ascii_hexdigit() && hex.len() < 6 => {
                                        hex.push(h)
                                    }
                                    _ => return Err(bad()),
                                }
                            }
                            let code = u32::from_str_radix(&hex, 16).map_err(|_| bad())?;
                            let ch = char::from_u32(code).ok_or_else(|| {
                                self.err(at, format!("\\u{{{hex}}} is not a valid character"))
                            })?;
                            out.push(ch);
                        }
                        other => {
                            return Err(self.err(
                                at,
                                format!(
                                    "invalid escape '\\{other}' (use \\\", \\\\, \\n, \\t, \\r or \\u{{XXXX}})"
                                ),
                            ))
                        }
                    }
                }
                c => out.push(c),
            }
        }
        Err(self.err(start, "unterminated string: missing closing '\"'"))
    }
}

// ---------------------------------------------------------------- parser

struct Parser<'a> {
    src: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, offset: usize, msg: impl Into<String>) -> QueryError {
        QueryError::at(self.src, offset, msg)
    }

    fn peek(&mut self) -> Result<&Token, QueryError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> Result<Token, QueryError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn eat_keyword(&mut self, kw: &str) -> Result<bool, QueryError> {
        if self.peek()?.tok.is_keyword(kw) {
            self.next()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect(&mut self, want: Tok, context: &str) -> Result<Token, QueryError> {
        let t = self.next()?;
        if t.tok == want {
            Ok(t)
        } else {
            Err(self.err(
                t.start,
                format!(
                    "expected {} {context}, found {}",
                    want.describe(),
                    t.tok.describe()
                ),
            ))
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(
                at,
                format!("query is nested too deeply (at most {MAX_DEPTH} levels of parentheses and 'not')"),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.parse_and()?];
        while self.eat_keyword("or")? {
            items.push(self.parse_and()?);
        }
        Ok(Expr::or(items))
    }

    fn parse_and(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.parse_unary()?];
        while self.eat_keyword("and")? {
            items.push(self.parse_unary()?);
        }
        Ok(Expr::and(items))
    }

    fn parse_unary(&mut self) -> Result<Expr, QueryError> {
        let t = self.peek()?;
        if t.tok.is_keyword("not") {
            let at = t.start;
            self.next()?;
            self.enter(at)?;
            let inner = self.parse_unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, QueryError> {
        let t = self.next()?;
        match &t.tok {
            Tok::LParen => {
                self.enter(t.start)?;
                let inner = self.parse_or()?;
                self.depth -= 1;
                let close = self.next()?;
                if close.tok != Tok::RParen {
                    return Err(self.err(
                        close.start,
                        format!(
                            "expected ')' to close '(' at col {}, found {}",
                            QueryError::at(self.src, t.start, "").column,
                            close.tok.describe()
                        ),
                    ));
                }
                Ok(inner)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("exists") => {
                self.expect(Tok::LParen, "after 'exists'")?;
                let ft = self.next()?;
                let field = self.field(ft)?;
                self.expect(Tok::RParen, "after the field in 'exists(...)'")?;
                Ok(Expr::Exists(field))
            }
            Tok::Word(_) => {
                let field = self.field(t)?;
                self.comparison(field)
            }
            Tok::Eof => Err(self.err(t.start, "unexpected end of query: expected a comparison")),
            other => Err(self.err(
                t.start,
                format!("expected a field name (id, name, hardware, firmware, health, last_seen, attr.<key>), found {}", other.describe()),
            )),
        }
    }

    /// Resolves a field token (plus `["key"]` for `attr["key"]`).
    fn field(&mut self, t: Token) -> Result<Field, QueryError> {
        let Tok::Word(word) = &t.tok else {
            return Err(self.err(
                t.start,
                format!("expected a field name, found {}", t.tok.describe()),
            ));
        };
        if let Some(f) = Field::from_name(word) {
            return Ok(f);
        }
        if let Some(key) = word.strip_prefix("attr.") {
            if key.is_empty() {
                return Err(self.err(t.start, "expected an attribute key after 'attr.'"));
            }
            return Ok(Field::Attr(key.to_string()));
        }
        if word == "attr" {
            if self.peek()?.tok == Tok::LBracket {
                self.next()?;
                let k = self.next()?;
                let Tok::Str(key) = k.tok else {
                    return Err(self.err(
                        k.start,
                        format!(
                            "expected a quoted attribute key after 'attr[', found {}",
                            k.tok.describe()
                        ),
                    ));
                };
                if key.is_empty() {
                    return Err(self.err(k.start, "attribute key must not be empty"));
                }
                self.expect(Tok::RBracket, "after the attribute key")?;
                return Ok(Field::Attr(key));
            }
            return Err(self.err(t.start, "expected '.KEY' or '[\"KEY\"]' after 'attr'"));
        }
        Err(self.err(
            t.start,
            format!(
                "unknown field '{word}' (fields: id, name, hardware, firmware, health, last_seen, attr.<key>)"
            ),
        ))
    }

    fn comparison(&mut self, field: Field) -> Result<Expr, QueryError> {
        let t = self.next()?;
        match &t.tok {
            Tok::Op(op) => {
                let op = *op;
                let context = format!("'{}'", op.as_str());
                let value = self.value(&field, &context, op.is_ordering())?;
                Ok(Expr::Compare { field, op, value })
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("in") => self.list(field, false),
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                let n = self.next()?;
                if !n.tok.is_keyword("in") {
                    return Err(self.err(
                        n.start,
                        format!("expected 'in' after 'not', found {}", n.tok.describe()),
                    ));
                }
                self.list(field, true)
            }
            other => Err(self.err(
                t.start,
                format!(
                    "expected an operator (==, !=, <, <=, >, >=, in, not in) after '{}', found {}",
                    FieldDisplay(&field),
                    other.describe()
                ),
            )),
        }
    }

    fn list(&mut self, field: Field, negated: bool) -> Result<Expr, QueryError> {
        let context = if negated { "'not in'" } else { "'in'" };
        let open = self.next()?;
        if open.tok != Tok::LBracket {
            return Err(self.err(
                open.start,
                format!(
                    "expected '[' after {context}, found {}",
                    open.tok.describe()
                ),
            ));
        }
        let mut values = Vec::new();
        loop {
            if self.peek()?.tok == Tok::RBracket {
                self.next()?;
                break;
            }
            let at = self.peek()?.start;
            if values.len() == MAX_LIST_ITEMS {
                return Err(self.err(
                    at,
                    format!("too many values in list (at most {MAX_LIST_ITEMS})"),
                ));
            }
            values.push(self.value(&field, "in list", false)?);
            let sep = self.next()?;
            match sep.tok {
                Tok::Comma => {}
                Tok::RBracket => break,
                other => {
                    return Err(self.err(
                        sep.start,
                        format!("expected ',' or ']' in list, found {}", other.describe()),
                    ))
                }
            }
        }
        Ok(Expr::In {
            field,
            values,
            negated,
        })
    }

    /// Reads a literal and checks it against the field's type.
    fn value(
        &mut self,
        field: &Field,
        context: &str,
        ordering: bool,
    ) -> Result<Literal, QueryError> {
        let t = self.next()?;
        let fname = FieldDisplay(field).to_string();
        let lit = match t.tok {
            Tok::Str(s) => Literal::Str(s),
            Tok::Num(n, _) => Literal::Num(n),
            Tok::Word(ref w) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Word(ref w) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            ref other => {
                let what = if context == "in list" {
                    "expected value in list".to_string()
                } else {
                    format!("expected value after {context}")
                };
                let found = match other {
                    Tok::Eof => String::new(),
                    Tok::Word(w) => format!(", found '{w}' (quote strings: \"{w}\")"),
                    o => format!(", found {}", o.describe()),
                };
                return Err(self.err(t.start, format!("{what}{found}")));
            }
        };
        let kind_name = |l: &Literal| match l {
            Literal::Str(_) => "a string",
            Literal::Num(_) => "a number",
            Literal::Bool(_) => "a boolean",
            Literal::Version(_) => "a version",
            Literal::Time(_) => "a timestamp",
        };
        match (field.kind(), lit) {
            (FieldKind::Text, lit @ Literal::Str(_)) => Ok(lit),
            (FieldKind::Text, other) => Err(self.err(
                t.start,
                format!("'{fname}' compares with strings, got {}", kind_name(&other)),
            )),
            (FieldKind::Version, Literal::Str(s)) => match Version::parse(&s) {
                Ok(v) => Ok(Literal::Version(v)),
                Err(e) => Err(self.err(
                    t.start,
                    format!("invalid semver {} for '{fname}': {e}", quote(&s)),
                )),
            },
            (FieldKind::Version, other) => Err(self.err(
                t.start,
                format!(
                    "'{fname}' compares with version strings like \"1.2.3\", got {}",
                    kind_name(&other)
                ),
            )),
            (FieldKind::Time, Literal::Str(s)) => match DateTime::parse_from_rfc3339(&s) {
                Ok(ts) => Ok(Literal::Time(ts.with_timezone(&Utc))),
                Err(_) => Err(self.err(
                    t.start,
                    format!(
                        "invalid timestamp {} for '{fname}': expected RFC 3339 like \"2025-01-31T12:00:00Z\"",
                        quote(&s)
                    ),
                )),
            },
            (FieldKind::Time, other) => Err(self.err(
                t.start,
                format!(
                    "'{fname}' compares with RFC 3339 timestamps like \"2025-01-31T12:00:00Z\", got {}",
                    kind_name(&other)
                ),
            )),
            (FieldKind::Attr, Literal::Bool(_)) if ordering => Err(self.err(
                t.start,
                format!("booleans cannot be ordered with {context}"),
            )),
            (FieldKind::Attr, lit) => Ok(lit),
        }
    }
}

// ---------------------------------------------------------------- display

/// Quotes `s` as a query string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text that reads back as exactly `n`: plain decimal notation (Rust's
/// shortest round-tripping digits), switching to exponent notation only for
/// magnitudes where the plain form gets long (`1e21`, `5e-324`).
fn format_number(n: f64) -> String {
    let plain = format!("{n}");
    let exp = format!("{n:e}");
    if plain.len() > 16 && exp.len() < plain.len() {
        exp
    } else {
        plain
    }
}

struct FieldDisplay<'a>(&'a Field);

impl fmt::Display for FieldDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Field::Id => "id",
            Field::Name => "name",
            Field::Hardware => "hardware",
            Field::Firmware => "firmware",
            Field::Health => "health",
            Field::LastSeen => "last_seen",
            Field::Attr(key) => {
                return if key.chars().all(is_word_char) && !key.is_empty() {
                    write!(f, "attr.{key}")
                } else {
                    write!(f, "attr[{}]", quote(key))
                }
            }
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FieldDisplay(self).fmt(f)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => f.write_str(&quote(s)),
            Literal::Num(n) => f.write_str(&format_number(*n)),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Version(v) => f.write_str(&quote(&v.to_string())),
            Literal::Time(t) => {
                f.write_str(&quote(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn operand(f: &mut fmt::Formatter<'_>, e: &Expr, parens: bool) -> fmt::Result {
            if parens {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        }
        match self {
            Expr::Compare { field, op, value } => write!(f, "{field} {} {value}", op.as_str()),
            Expr::In {
                field,
                values,
                negated,
            } => {
                write!(f, "{field} {}[", if *negated { "not in " } else { "in " })?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Expr::Exists(field) => write!(f, "exists({field})"),
            Expr::Not(inner) => {
                f.write_str("not ")?;
                operand(f, inner, matches!(**inner, Expr::And(_) | Expr::Or(_)))
            }
            Expr::And(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    operand(f, e, matches!(e, Expr::And(_) | Expr::Or(_)))?;
                }
                Ok(())
            }
            Expr::Or(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    operand(f, e, matches!(e, Expr::Or(_)))?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device() -> DeviceFacts {
        let mut d = DeviceFacts {
            id: "dev-1".into(),
            name: "meter-001".into(),
            hardware: "meter-v2".into(),
            firmware: Some("1.4.2".into()),
            health: Some("ok".into()),
            last_seen: Some("2025-03-01T12:00:00Z".parse().unwrap()),
            attributes: BTreeMap::new(),
        };
        for (k, v) in [
            ("region", "eu-west"),
            ("floor", "10"),
            ("ratio", "0.5"),
            ("beta", "true"),
            ("site name", "Main St"),
        ] {
            d.attributes.insert(k.into(), v.into());
        }
        d
    }

    fn m(q: &str) -> bool {
        parse(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .matches(&device())
    }

    fn err(q: &str) -> String {
        parse(q).map(|q| q.to_string()).unwrap_err().to_string()
    }

    // --- matching

    #[test]
    fn narrowing_examples() {
        let n = |q: &str| parse(q).unwrap().narrowing().map(|n| (n.field, n.values));
        let attr = |k: &str| Field::Attr(k.into());
        assert_eq!(
            n(r#"attr.region == "eu""#),
            Some((attr("region"), vec!["eu".into()]))
        );
        assert_eq!(
            n(r#"firmware < "2.0.0" and hardware in ["a", "b"]"#),
            Some((Field::Hardware, vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            n(r#"attr.r == "b" or attr.r == "a" or attr.r in ["b"]"#),
            Some((attr("r"), vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            n("attr.beta == true"),
            Some((attr("beta"), vec!["true".into()]))
        );
        // Numeric comparison: "10" also equals "10.0".
        assert_eq!(n(r#"attr.floor == "10""#), None);
        assert_eq!(n("attr.floor == 10"), None);
        assert_eq!(n(r#"attr.r == "a" or name == "a""#), None);
        assert_eq!(n(r#"attr.r != "a""#), None);
        assert_eq!(n(r#"not attr.r == "a""#), None);
        assert_eq!(n(r#"attr.r not in ["a"]"#), None);
        assert_eq!(n(r#"firmware == "1.0.0""#), None);
        assert_eq!(n("exists(attr.r)"), None);
    }

    #[test]
    fn example_from_the_docs() {
        let q = r#"hardware == "meter-v2" and attr.region in ["eu-west", "eu-north"] and firmware < "2.0.0""#;
        assert!(m(q));
        let mut d = device();
        d.firmware = Some("2.0.0".into());
        assert!(!parse(q).unwrap().matches(&d));
    }

    #[test]
    fn text_fields() {
        assert!(m(r#"id == "dev-1""#));
        assert!(m(r#"name != "other""#));
        assert!(m(r#"hardware >= "meter-v1""#));
        assert!(m(r#"hardware < "meter-v3""#));
        assert!(m(r#"health == "ok""#));
        assert!(!m(r#"health == "degraded""#));
        assert!(m(r#"name in ["a", "meter-001"]"#));
        assert!(m(r#"name not in ["a", "b"]"#));
        assert!(!m(r#"name not in ["meter-001"]"#));
    }

    #[test]
    fn firmware_compares_as_semver() {
        // "1.10.0" > "1.4.2" numerically even though it sorts lower as text.
        assert!(m(r#"firmware < "1.10.0""#));
        assert!(m(r#"firmware > "1.4.2-rc.1""#));
        assert!(m(r#"firmware == "1.4.2""#));
        assert!(
            m(r#"firmware == "1.4.2+build.7""#),
            "build metadata is ignored"
        );
        assert!(m(r#"firmware <= "1.4.2""#));
        assert!(!m(r#"firmware != "1.4.2""#));
        assert!(m(r#"firmware in ["1.0.0", "1.4.2"]"#));
        let mut d = device();
        d.firmware = None;
        let q = parse(r#"firmware < "2.0.0""#).unwrap();
        assert!(!q.matches(&d), "missing firmware never compares");
        assert!(parse(r#"firmware != "2.0.0""#).unwrap().matches(&d));
        d.firmware = Some("not-semver".into());
        assert!(!q.matches(&d));
    }

    #[test]
    fn last_seen_compares_as_time() {
        assert!(m(r#"last_seen > "2025-03-01T11:59:59Z""#));
        assert!(m(r#"last_seen == "2025-03-01T13:00:00+01:00""#));
        assert!(!m(r#"last_seen < "2025-01-01T00:00:00Z""#));
        assert!(m("exists(last_seen)"));
        let mut d = device();
        d.last_seen = None;
        assert!(!parse("exists(last_seen)").unwrap().matches(&d));
    }

    #[test]
    fn attributes_compare_numerically_when_both_sides_are_numbers() {
        assert!(m("attr.floor > 9"), "10 > 9 numerically");
        assert!(m(r#"attr.floor > "9""#), "quoted number is still a number");
        assert!(m("attr.floor == 10.0"));
        assert!(m("attr.floor >= 1e1"));
        assert!(m("attr.ratio < 1"));
        assert!(m("attr.ratio > -1"));
        assert!(m(r#"attr.floor in [1, 10]"#));
        // text comparison when one side is not a number
        assert!(m(r#"attr.region > "eu""#));
        assert!(
            !m("attr.region > 5"),
            "non-numeric value never orders against a number"
        );
        assert!(m("attr.region != 5"));
        assert!(m(r#"attr.region == "eu-west""#));
    }

    #[test]
    fn attribute_booleans_match_strings() {
        assert!(m("attr.beta == true"));
        assert!(m("attr.beta != false"));
        assert!(m("attr.beta in [true]"));
        assert!(!m("attr.region == true"));
    }

    #[test]
    fn missing_attributes() {
        assert!(!m(r#"attr.missing == "x""#));
        assert!(m(r#"attr.missing != "x""#), "!= is the negation of ==");
        assert!(!m("attr.missing < 5"));
        assert!(!m(r#"attr.missing in ["x"]"#));
        assert!(m(r#"attr.missing not in ["x"]"#));
        assert!(!m("exists(attr.missing)"));
        assert!(m("exists(attr.region)"));
        assert!(m(
            r#"exists(attr["site name"]) and attr["site name"] == "Main St""#
        ));
    }

    #[test]
    fn boolean_logic_and_precedence() {
        assert!(m(r#"id == "x" or id == "dev-1""#));
        assert!(!m(r#"id == "x" and id == "dev-1""#));
        assert!(m(r#"not id == "x""#));
        // and binds tighter than or
        assert!(m(r#"id == "dev-1" or id == "x" and id == "y""#));
        assert!(!m(r#"(id == "dev-1" or id == "x") and id == "y""#));
        // not binds tighter than and
        assert!(!m(r#"not id == "dev-1" and id == "dev-1""#));
        assert!(m(r#"not (id == "dev-1" and id == "x")"#));
        assert!(
            m(r#"NOT id == "x" AND health == "ok""#),
            "keywords are case-insensitive"
        );
        assert!(m("exists(firmware) and exists(health) and exists(id)"));
        assert!(!parse("exists(health)")
            .unwrap()
            .matches(&DeviceFacts::default()));
    }

    #[test]
    fn empty_list_and_trailing_comma() {
        assert!(!m("attr.region in []"));
        assert!(m("attr.region not in []"));
        assert!(m(r#"attr.region in ["eu-west",]"#));
    }

    #[test]
    fn strings_with_escapes() {
        let q = parse(r#"name == "a\"b\\c\n\t\r\u{1F600}""#).unwrap();
        match q.expr() {
            Expr::Compare {
                value: Literal::Str(s),
                ..
            } => assert_eq!(s, "a\"b\\c\n\t\r\u{1F600}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.to_string(), r#"name == "a\"b\\c\n\t\r😀""#);
    }

    #[test]
    fn multi_line_queries() {
        let q = "hardware == \"meter-v2\"\n  and attr.floor > 3";
        assert!(m(q));
        assert_eq!(
            err("hardware == \"meter-v2\"\n  and attr.floor >"),
            "line 2, col 19: expected value after '>'"
        );
    }

    // --- canonical text

    #[test]
    fn canonical_text() {
        let cases = [
            (
                r#"hardware=="m"   AND (attr.a in ["x","y",] )"#,
                r#"hardware == "m" and attr.a in ["x", "y"]"#,
            ),
            (
                r#"(id=="a" and id=="b") and id=="c""#,
                r#"id == "a" and id == "b" and id == "c""#,
            ),
            (
                r#"id=="a" and (id=="b" and id=="c")"#,
                r#"id == "a" and id == "b" and id == "c""#,
            ),
            (
                r#"(id=="a" or id=="b") and id=="c""#,
                r#"(id == "a" or id == "b") and id == "c""#,
            ),
            (
                r#"id=="a" or id=="b" and id=="c""#,
                r#"id == "a" or id == "b" and id == "c""#,
            ),
            (
                r#"not (id=="a" or id=="b")"#,
                r#"not (id == "a" or id == "b")"#,
            ),
            (r#"not not exists ( attr.x )"#, "not not exists(attr.x)"),
            (
                r#"attr["we ird"] not in [1, 2.50, -3, 1e3, 1e-7, true]"#,
                r#"attr["we ird"] not in [1, 2.5, -3, 1000, 0.0000001, true]"#,
            ),
            (
                r#"firmware >= "1.2.3-rc.1+b5""#,
                r#"firmware >= "1.2.3-rc.1+b5""#,
            ),
            (
                r#"last_seen < "2025-01-31T13:00:00+01:00""#,
                r#"last_seen < "2025-01-31T12:00:00Z""#,
            ),
            (r#"attr["plain.key-1"] == 1"#, "attr.plain.key-1 == 1"),
        ];
        for (src, want) in cases {
            let q = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(q.to_string(), want, "canonical form of {src}");
            assert_eq!(parse(want).unwrap(), q, "{want} re-parses");
        }
    }

    // --- errors with positions

    #[test]
    fn error_positions_and_messages() {
        let cases = [
            (r#"hardware == "m" and name =="#, "line 1, col 28: expected value after '=='"),
            (r#"hardware == and"#, "line 1, col 13: expected value after '==', found 'and' (quote strings: \"and\")"),
            (r#"hardware == meter"#, "line 1, col 13: expected value after '==', found 'meter' (quote strings: \"meter\")"),
            (r#"firmware < "2.0""#, "line 1, col 12: invalid semver \"2.0\" for 'firmware': unexpected end of input while parsing minor version number"),
            (r#"firmware < 2"#, "line 1, col 12: 'firmware' compares with version strings like \"1.2.3\", got a number"),
            (r#"firmware < 2.0.0"#, "line 1, col 12: invalid number \"2.0.0\" (quote strings and versions: \"2.0.0\")"),
            (r#"name == 5"#, "line 1, col 9: 'name' compares with strings, got a number"),
            (r#"last_seen > "yesterday""#, "line 1, col 13: invalid timestamp \"yesterday\" for 'last_seen': expected RFC 3339 like \"2025-01-31T12:00:00Z\""),
            (r#"last_seen > true"#, "line 1, col 13: 'last_seen' compares with RFC 3339 timestamps like \"2025-01-31T12:00:00Z\", got a boolean"),
            (r#"attr.x < true"#, "line 1, col 10: booleans cannot be ordered with '<'"),
            (r#"hardwre == "x""#, "line 1, col 1: unknown field 'hardwre' (fields: id, name, hardware, firmware, health, last_seen, attr.<key>)"),
            (r#"attr. == "x""#, "line 1, col 1: expected an attribute key after 'attr.'"),
            (r#"attr == "x""#, "line 1, col 1: expected '.KEY' or '[\"KEY\"]' after 'attr'"),
            (r#"attr[""] == "x""#, "line 1, col 6: attribute key must not be empty"),
            (r#"attr[x] == "x""#, "line 1, col 6: expected a quoted attribute key after 'attr[', found 'x'"),
            (r#"id = "x""#, "line 1, col 4: unexpected '=': use '==' to compare"),
            (r#"!id"#, "line 1, col 1: unexpected '!': use 'not' to negate"),
            (r#"id == "x" && id == "y""#, "line 1, col 11: unexpected character '&'"),
            (r#"id == "x" id == "y""#, "line 1, col 11: expected 'and', 'or' or end of query, found 'id'"),
            (r#"id == "abc"#, "line 1, col 7: unterminated string: missing closing '\"'"),
            (r#"id == "a\qb""#, "line 1, col 9: invalid escape '\\q' (use \\\", \\\\, \\n, \\t, \\r or \\u{XXXX})"),
            (r#"id == "\u{D800}""#, "line 1, col 8: \\u{D800} is not a valid character"),
            (r#"id == "\u00e9""#, "line 1, col 8: invalid unicode escape: use \\u{XXXX} with 1-6 hex digits"),
            (r#"id in "x""#, "line 1, col 7: expected '[' after 'in', found string \"x\""),
            (r#"id not "x""#, "line 1, col 8: expected 'in' after 'not', found string \"x\""),
            (r#"id not in ["a" "b"]"#, "line 1, col 16: expected ',' or ']' in list, found string \"b\""),
            (r#"id in ["a", ]]"#, "line 1, col 14: expected 'and', 'or' or end of query, found ']'"),
            (r#"id in ["a", and]"#, "line 1, col 13: expected value in list, found 'and' (quote strings: \"and\")"),
            (r#"id in ["a""#, "line 1, col 11: expected ',' or ']' in list, found end of query"),
            (r#"id"#, "line 1, col 3: expected an operator (==, !=, <, <=, >, >=, in, not in) after 'id', found end of query"),
            (r#"(id == "a""#, "line 1, col 11: expected ')' to close '(' at col 1, found end of query"),
            (r#"id == "a" and"#, "line 1, col 14: unexpected end of query: expected a comparison"),
            (r#"exists attr.x"#, "line 1, col 8: expected '(' after 'exists', found 'attr.x'"),
            (r#"exists(attr.x"#, "line 1, col 14: expected ')' after the field in 'exists(...)', found end of query"),
            (r#"== "x""#, "line 1, col 1: expected a field name (id, name, hardware, firmware, health, last_seen, attr.<key>), found '=='"),
            (r#"attr.n > 5m"#, "line 1, col 10: invalid number \"5m\" (quote strings and versions: \"5m\")"),
            (r#"attr.n > - 5"#, "line 1, col 10: unexpected '-': expected a number"),
            (r#"attr.n > 1e999"#, "line 1, col 10: number 1e999 is out of range"),
            ("", "line 1, col 1: query is empty"),
            ("   \n ", "line 1, col 1: query is empty"),
            (r#"attr.x == "é" and ?"#, "line 1, col 19: unexpected character '?'"),
        ];
        for (src, want) in cases {
            assert_eq!(err(src), want, "error for {src:?}");
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = parse(r#"name == "ééé" and ?"#).unwrap_err();
        assert_eq!((e.line, e.column), (1, 19));
        assert_eq!(e.offset, 21);
    }

    #[test]
    fn limits() {
        let long = format!("id == \"{}\"", "x".repeat(MAX_QUERY_LEN));
        assert!(err(&long).contains("query is too long"));

        let deep = format!(
            "{}id == \"x\"{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(parse(&deep).is_ok());
        let too_deep = format!(
            "{}id == \"x\"{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            err(&too_deep),
            format!("line 1, col {}: query is nested too deeply (at most {MAX_DEPTH} levels of parentheses and 'not')", MAX_DEPTH + 1)
        );
        let nots = format!("{}id == \"x\"", "not ".repeat(MAX_DEPTH + 1));
        assert!(err(&nots).contains("nested too deeply"));

        let items = vec!["1"; MAX_LIST_ITEMS].join(",");
        assert!(parse(&format!("attr.x in [{items}]")).is_ok());
        let items = vec!["1"; MAX_LIST_ITEMS + 1].join(",");
        assert!(err(&format!("attr.x in [{items}]")).contains("too many values in list"));

        // long flat chains are fine (flattened, no recursion per operand)
        let chain = vec!["id == \"x\""; 1000].join(" or ");
        assert!(!m(&chain));
    }

    #[test]
    fn into_field_error_keeps_position() {
        let fe = parse("id ==").unwrap_err().into_field_error("query");
        assert_eq!(fe.field, "query");
        assert_eq!(fe.message, "line 1, col 6: expected value after '=='");
    }

    #[test]
    fn from_str_works() {
        let q: Query = r#"id == "a""#.parse().unwrap();
        assert_eq!(q.to_string(), r#"id == "a""#);
    }

    #[test]
    fn number_syntax() {
        assert_eq!(parse_number("10"), Some(10.0));
        assert_eq!(parse_number("-0.5e2"), Some(-50.0));
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number(" 1"), None);
        assert_eq!(parse_number("1."), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-"), None);
        assert_eq!(format_number(1e21), "1e21");
        assert_eq!(format_number(1e-7), "0.0000001");
        assert_eq!(format_number(1e-20), "1e-20");
        assert_eq!(format_number(1000.0), "1000");
        assert_eq!(format_number(123.5), "123.5");
        assert_eq!(format_number(-0.0), "-0");
    }

    #[test]
    fn fuzz_parse_examples() {
        for s in [
            "",
            "\u{0}",
            "id == \"",
            "attr[\"\\u{",
            "((((((((((",
            "not not not",
            "attr.x in [1,2,3",
            "last_seen == \"2016-12-31T23:59:60Z\"",
            "attr.x == -0",
        ] {
            fuzz_parse(s.as_bytes());
        }
        fuzz_parse(&[0xff, 0xfe, b'i', b'd']);
    }

    // --- property tests

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9_.:/-]{0,10}",
            any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        ]
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9 -]{0,8}", any::<String>()]
    }

    fn arb_number() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-1000i64..1000).prop_map(|n| n as f64),
            any::<f64>().prop_filter("finite", |n| n.is_finite()),
        ]
    }

    fn arb_version() -> impl Strategy<Value = Version> {
        (
            0u64..20,
            0u64..20,
            0u64..20,
            prop::option::of("[a-z]{1,4}(\\.(0|[1-9][0-9]?))?"),
            prop::option::of("[a-z0-9]{1,4}"),
        )
            .prop_map(|(a, b, c, pre, build)| {
                let mut s = format!("{a}.{b}.{c}");
                if let Some(p) = pre {
                    s.push('-');
                    s.push_str(&p);
                }
                if let Some(b) = build {
                    s.push('+');
                    s.push_str(&b);
                }
                Version::parse(&s).unwrap()
            })
    }

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        (
            0i64..4_000_000_000,
            prop_oneof![Just(0u32), 0u32..1_000_000_000],
        )
            .prop_map(|(s, ns)| DateTime::from_timestamp(s, ns).unwrap())
    }

    fn arb_field() -> impl Strategy<Value = Field> {
        prop_oneof![
            Just(Field::Id),
            Just(Field::Name),
            Just(Field::Hardware),
            Just(Field::Health),
            Just(Field::Firmware),
            Just(Field::LastSeen),
            arb_key().prop_map(Field::Attr),
        ]
    }

    fn arb_literal(field: &Field, allow_bool: bool) -> BoxedStrategy<Literal> {
        match field.kind() {
            FieldKind::Text => arb_string().prop_map(Literal::Str).boxed(),
            FieldKind::Version => arb_version().prop_map(Literal::Version).boxed(),
            FieldKind::Time => arb_time().prop_map(Literal::Time).boxed(),
            FieldKind::Attr if allow_bool => prop_oneof![
                arb_string().prop_map(Literal::Str),
                arb_number().prop_map(Literal::Num),
                any::<bool>().prop_map(Literal::Bool),
            ]
            .boxed(),
            FieldKind::Attr => prop_oneof![
                arb_string().prop_map(Literal::Str),
                arb_number().prop_map(Literal::Num),
            ]
            .boxed(),
        }
    }

    fn arb_op() -> impl Strategy<Value = CmpOp> {
        prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge),
        ]
    }

    fn arb_leaf() -> impl Strategy<Value = Expr> {
        prop_oneof![
            (arb_field(), arb_op()).prop_flat_map(|(field, op)| {
                arb_literal(&field, !op.is_ordering()).prop_map(move |value| Expr::Compare {
                    field: field.clone(),
                    op,
                    value,
                })
            }),
            (arb_field(), any::<bool>()).prop_flat_map(|(field, negated)| {
                prop::collection::vec(arb_literal(&field, true), 0..4).prop_map(move |values| {
                    Expr::In {
                        field: field.clone(),
                        values,
                        negated,
                    }
                })
            }),
            arb_field().prop_map(Expr::Exists),
        ]
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        arb_leaf().prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::and),
                prop::collection::vec(inner, 2..4).prop_map(Expr::or),
            ]
        })
    }

    /// A device whose text fields and attributes take values among the
    /// literals of `expr` (so that queries over random literals match
    /// often), chosen by `picks`.
    fn device_from_literals(expr: &Expr, picks: &[usize]) -> DeviceFacts {
        fn walk(e: &Expr, lits: &mut Vec<String>, keys: &mut Vec<String>) {
            let mut add = |field: &Field, lit: &Literal| {
                if let Field::Attr(k) = field {
                    keys.push(k.clone());
                }
                match lit {
                    Literal::Str(s) => lits.push(s.clone()),
                    Literal::Bool(b) => lits.push(b.to_string()),
                    Literal::Num(n) => lits.push(n.to_string()),
                    _ => {}
                }
            };
            match e {
                Expr::Compare { field, value, .. } => add(field, value),
                Expr::In { field, values, .. } => values.iter().for_each(|v| add(field, v)),
                Expr::Exists(Field::Attr(k)) => keys.push(k.clone()),
                Expr::Exists(_) => {}
                Expr::Not(inner) => walk(inner, lits, keys),
                Expr::And(items) | Expr::Or(items) => {
                    items.iter().for_each(|i| walk(i, lits, keys))
                }
            }
        }
        let (mut lits, mut keys) = (vec!["x".to_string()], Vec::new());
        walk(expr, &mut lits, &mut keys);
        let mut pick = picks.iter().cycle().map(|i| lits[i % lits.len()].clone());
        let mut d = DeviceFacts {
            id: pick.next().unwrap(),
            name: pick.next().unwrap(),
            hardware: pick.next().unwrap(),
            health: Some(pick.next().unwrap()),
            ..DeviceFacts::default()
        };
        for k in keys {
            d.attributes.insert(k, pick.next().unwrap());
        }
        d
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn display_round_trips(expr in arb_expr()) {
            let q = Query { expr };
            let text = q.to_string();
            let again = parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            prop_assert_eq!(&again, &q, "text: {}", text);
            prop_assert_eq!(again.to_string(), text);
        }

        #[test]
        fn narrowing_holds_for_every_match(
            (expr, picks) in arb_expr().prop_flat_map(|e| (Just(e), prop::collection::vec(0usize..64, 16)))
        ) {
            let q = Query { expr };
            let device = device_from_literals(q.expr(), &picks);
            if let (true, Some(n)) = (q.matches(&device), q.narrowing()) {
                let value = text_value(&device, &n.field);
                prop_assert!(
                    value.is_some_and(|v| n.values.iter().any(|w| w == v)),
                    "{q} matches {device:?} but narrows to {n:?}"
                );
            }
        }

        #[test]
        fn fuzz_parse_never_panics_on_strings(s in any::<String>()) {
            fuzz_parse(s.as_bytes());
        }

        #[test]
        fn fuzz_parse_never_panics_on_query_like_text(
            parts in prop::collection::vec(prop_oneof![
                Just("id".to_string()), Just("attr.x".to_string()), Just("firmware".to_string()),
                Just("last_seen".to_string()), Just("==".to_string()), Just("<".to_string()),
                Just("in".to_string()), Just("not".to_string()), Just("and".to_string()),
                Just("or".to_string()), Just("(".to_string()), Just(")".to_string()),
                Just("[".to_string()), Just("]".to_string()), Just(",".to_string()),
                Just("exists".to_string()), Just("true".to_string()), Just("\"1.2.3\"".to_string()),
                Just("\"2025-01-01T00:00:00Z\"".to_string()), Just("-1.5e3".to_string()),
                "\"[^\"]{0,4}\"", "[ -~]{1,3}",
            ], 0..24)
        ) {
            fuzz_parse(parts.join(" ").as_bytes());
        }

        #[test]
        fn fuzz_parse_never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..64)) {
            fuzz_parse(&data);
        }
    }
}
