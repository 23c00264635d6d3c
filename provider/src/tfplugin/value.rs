//! Terraform values (cty) and their wire encodings (DynamicValue: msgpack, JSON).
//!
//! Terraform sends every configuration, plan and state value as a
//! `DynamicValue`: msgpack bytes (or, in older paths, JSON) that can only be
//! decoded with the schema type in hand, because msgpack cannot tell a list
//! from a set, an object from a map, nor carry "unknown".
//!
//! The rules implemented here follow Terraform's
//! `docs/plugin-protocol/object-wire-format.md` and the behaviour of go-cty's
//! `msgpack` and `json` packages, which are what Terraform itself uses:
//!
//! * msgpack `nil` is a null of whatever type is expected; *any* msgpack
//!   extension value is an unknown (code 0 is the plain form, code 12 carries
//!   refinements, future codes are promised to mean "unknown" too). We keep
//!   unknowns opaque and always write the plain code-0 form.
//! * Numbers are arbitrary precision; they may arrive as msgpack int, uint,
//!   float32/64 or as a decimal string. [`Number`] keeps an exact canonical
//!   decimal text so nothing is lost on the way back.
//! * A `dynamic` slot carries its own type: a 2-element array of the type in
//!   JSON syntax (as bytes) and the value (msgpack), or an object
//!   `{"value": ..., "type": ...}` (JSON).
//! * Objects are encoded with every attribute of the type, keys sorted, the
//!   same way cty does.
//!
//! Every decode validates the data against the type and every encode
//! validates the value against the type; errors name the offending position
//! with a path such as `.tags["a"]` or `.rules[2].port`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A cty type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    Bool,
    Number,
    String,
    /// `cty.DynamicPseudoType`: the value carries its own type on the wire.
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
}

/// An arbitrary-precision number kept as its canonical decimal text
/// (e.g. "42", "-0.5", "1000000000000000000000"), so nothing is lost between
/// Terraform and us.
///
/// Canonical text is plain decimal notation, the same notation cty uses in
/// state JSON: an optional `-`, no leading zeros (a lone `0` before the
/// point), no exponent, no `+`, no trailing fractional zeros, and zero is
/// always `0` (never `-0`). Two numbers are equal exactly when their
/// canonical texts are equal, which is why `derive(PartialEq)` on the text is
/// sound as long as values are built through [`Number::parse`] and friends.
/// (The derived `Ord` is textual, not numeric.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number(pub String);

/// A cty value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Not yet known (plan time). Refinements are kept opaque.
    Unknown,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
    /// A value of a `Dynamic`-typed attribute whose concrete type is known.
    Dynamic(Type, Box<Value>),
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a value or type could not be decoded or encoded.
///
/// `path` locates the problem inside the value (`.tags["a"]`, `[3].name`);
/// it is empty when the problem is the value as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_error(.path, .message))]
pub struct CodecError {
    /// Where in the value the problem is; empty for the root.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

fn render_error(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("at {path}: {message}")
    }
}

impl CodecError {
    /// An error about the whole value (or about something without a path,
    /// such as a type description).
    pub fn new(message: impl Into<String>) -> Self {
        CodecError {
            path: String::new(),
            message: message.into(),
        }
    }

    /// An error at `path` inside the value.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        CodecError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Tracks the current position inside a value for error messages; steps are
/// pushed before descending and popped (truncated) after.
#[derive(Default)]
struct ValuePath(String);

impl ValuePath {
    fn push_attr(&mut self, name: &str) -> usize {
        let mark = self.0.len();
        self.0.push('.');
        self.0.push_str(name);
        mark
    }

    fn push_index(&mut self, i: usize) -> usize {
        let mark = self.0.len();
        self.0.push_str(&format!("[{i}]"));
        mark
    }

    fn push_key(&mut self, key: &str) -> usize {
        let mark = self.0.len();
        // JSON string syntax gives unambiguous quoting and escaping.
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
        self.0.push('[');
        self.0.push_str(&quoted);
        self.0.push(']');
        mark
    }

    fn pop(&mut self, mark: usize) {
        self.0.truncate(mark);
    }

    fn err(&self, message: impl Into<String>) -> CodecError {
        CodecError::at(self.0.clone(), message)
    }
}

/// Nesting beyond this is rejected rather than risking the stack: schema
/// types are shallow, only `dynamic` values can nest arbitrarily.
const MAX_DEPTH: usize = 256;

// ---------------------------------------------------------------------------
// Type
// ---------------------------------------------------------------------------

impl Type {
    /// `list(elem)`.
    pub fn list(elem: Type) -> Type {
        Type::List(Box::new(elem))
    }

    /// `set(elem)`.
    pub fn set(elem: Type) -> Type {
        Type::Set(Box::new(elem))
    }

    /// `map(elem)`.
    pub fn map(elem: Type) -> Type {
        Type::Map(Box::new(elem))
    }

    /// `object({...})` from `(name, type)` pairs.
    pub fn object<I, K>(attrs: I) -> Type
    where
        I: IntoIterator<Item = (K, Type)>,
        K: Into<String>,
    {
        Type::Object(attrs.into_iter().map(|(k, t)| (k.into(), t)).collect())
    }

    /// The cty JSON type syntax, as used in `Schema.Attribute.type`, function
    /// signatures and dynamic values: `"string"`, `["list","number"]`,
    /// `["object",{"a":"bool"}]`, `["tuple",["string","number"]]`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        let pair = |kind: &str, arg: J| J::Array(vec![J::String(kind.to_string()), arg]);
        match self {
            Type::Bool => J::String("bool".into()),
            Type::Number => J::String("number".into()),
            Type::String => J::String("string".into()),
            Type::Dynamic => J::String("dynamic".into()),
            Type::List(e) => pair("list", e.to_json()),
            Type::Set(e) => pair("set", e.to_json()),
            Type::Map(e) => pair("map", e.to_json()),
            Type::Object(attrs) => pair(
                "object",
                // BTreeMap iteration is sorted, matching cty's output.
                J::Object(
                    attrs
                        .iter()
                        .map(|(k, t)| (k.clone(), t.to_json()))
                        .collect(),
                ),
            ),
            Type::Tuple(elems) => {
                pair("tuple", J::Array(elems.iter().map(Type::to_json).collect()))
            }
        }
    }

    /// [`Type::to_json`] serialised compactly, ready for a `bytes type` field.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a serde_json::Value built from strings cannot fail.
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }

    /// Parses the cty JSON type syntax. An object type may carry a third
    /// element listing its optional attributes (Terraform's
    /// `optional(...)` type constraints); it is accepted and ignored because
    /// optionality does not change how values are encoded.
    pub fn from_json(json: &serde_json::Value) -> Result<Type, CodecError> {
        Self::from_json_at(json, 0)
    }

    fn from_json_at(json: &serde_json::Value, depth: usize) -> Result<Type, CodecError> {
        use serde_json::Value as J;
        let bad = |what: String| CodecError::new(format!("invalid type description: {what}"));
        if depth > MAX_DEPTH {
            return Err(bad("nested too deeply".into()));
        }
        match json {
            J::String(name) => match name.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                other => Err(bad(format!("unknown primitive type {other:?}"))),
            },
            J::Array(items) => {
                let kind = items
                    .first()
                    .and_then(J::as_str)
                    .ok_or_else(|| bad("a complex type must start with its kind name".into()))?;
                let arity_ok = items.len() == 2 || (kind == "object" && items.len() == 3);
                if !arity_ok {
                    return Err(bad(format!("wrong number of elements for {kind:?}")));
                }
                let arg = &items[1];
                match kind {
                    "list" => Ok(Type::list(Self::from_json_at(arg, depth + 1)?)),
                    "set" => Ok(Type::set(Self::from_json_at(arg, depth + 1)?)),
                    "map" => Ok(Type::map(Self::from_json_at(arg, depth + 1)?)),
                    "object" => {
                        let J::Object(attrs) = arg else {
                            return Err(bad("object attributes must be a JSON object".into()));
                        };
                        if let Some(optional) = items.get(2) {
                            let ok = optional
                                .as_array()
                                .is_some_and(|names| names.iter().all(J::is_string));
                            if !ok {
                                return Err(bad(
                                    "optional attribute list must be an array of names".into(),
                                ));
                            }
                        }
                        let mut out = BTreeMap::new();
                        for (k, t) in attrs {
                            out.insert(k.clone(), Self::from_json_at(t, depth + 1)?);
                        }
                        Ok(Type::Object(out))
                    }
                    "tuple" => {
                        let J::Array(elems) = arg else {
                            return Err(bad("tuple element types must be a JSON array".into()));
                        };
                        elems
                            .iter()
                            .map(|t| Self::from_json_at(t, depth + 1))
                            .collect::<Result<Vec<_>, _>>()
                            .map(Type::Tuple)
                    }
                    other => Err(bad(format!("unknown type kind {other:?}"))),
                }
            }
            other => Err(bad(format!("unexpected JSON {other}"))),
        }
    }

    /// [`Type::from_json`] from raw bytes (e.g. a `Schema.Attribute.type`).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Type, CodecError> {
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| CodecError::new(format!("invalid type description: {e}")))?;
        Type::from_json(&json)
    }

    /// Short human description for error messages.
    fn describe(&self) -> &'static str {
        match self {
            Type::Bool => "a bool",
            Type::Number => "a number",
            Type::String => "a string",
            Type::Dynamic => "a dynamic value (Value::Dynamic)",
            Type::List(_) => "a list",
            Type::Set(_) => "a set",
            Type::Map(_) => "a map",
            Type::Object(_) => "an object",
            Type::Tuple(_) => "a tuple",
        }
    }
}

impl fmt::Display for Type {
    /// Displays the compact JSON type syntax, e.g. `["list","string"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

// ---------------------------------------------------------------------------
// Number
// ---------------------------------------------------------------------------

/// Numbers whose plain decimal text would need more digits than this (on
/// either side of the point) are refused, so a tiny `"1e999999999"` string
/// cannot make us allocate gigabytes.
const MAX_NUMBER_DIGITS: i64 = 100_000;

impl Number {
    /// Parses decimal number text (optional sign, digits with an optional
    /// point, optional `e`/`E` exponent) and returns it in canonical form.
    /// Accepts what Terraform's number parser accepts for finite decimals;
    /// rejects infinities, NaN, hex and anything else.
    pub fn parse(text: &str) -> Result<Number, CodecError> {
        let bad = || CodecError::new(format!("invalid number {text:?}"));
        let bytes = text.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = &text[int_start..i];
        let mut frac_digits = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = &text[frac_start..i];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(bad());
        }
        let mut exponent: i64 = 0;
        if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
            i += 1;
            let exp_negative = match bytes.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let exp_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                // Saturate: anything this large is rejected below anyway.
                exponent = exponent
                    .saturating_mul(10)
                    .saturating_add(i64::from(bytes[i] - b'0'));
                i += 1;
            }
            if i == exp_start {
                return Err(bad());
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if i != bytes.len() {
            return Err(bad());
        }

        // value = 0.DIGITS × 10^point
        let all: String = [int_digits, frac_digits].concat();
        let lead = all.bytes().take_while(|&b| b == b'0').count();
        let digits = all[lead..].trim_end_matches('0');
        if digits.is_empty() {
            return Ok(Number("0".into()));
        }
        let point = (int_digits.len() as i64 - lead as i64).saturating_add(exponent);
        if !(-MAX_NUMBER_DIGITS..=MAX_NUMBER_DIGITS).contains(&point) {
            return Err(CodecError::new(format!(
                "number {text:?} is too large or too small to represent"
            )));
        }
        let n = digits.len() as i64;
        let mut out = String::with_capacity(digits.len() + point.unsigned_abs() as usize + 3);
        if negative {
            out.push('-');
        }
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(digits);
        } else if point >= n {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', (point - n) as usize));
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
        Ok(Number(out))
    }

    /// An integer.
    pub fn from_i64(v: i64) -> Number {
        Number(v.to_string())
    }

    /// An unsigned integer (msgpack uint64 can exceed `i64`).
    pub fn from_u64(v: u64) -> Number {
        Number(v.to_string())
    }

    /// A binary float, converted so that Terraform will consider the result
    /// equal to the float it would build itself:
    ///
    /// * integral floats get their *exact* integer digits (1e23 becomes
    ///   `99999999999999991611392`), because cty compares integers exactly;
    /// * other floats get the shortest text that reads back as the same
    ///   float (0.1 becomes `0.1`), because cty compares non-integers by that
    ///   text.
    ///
    /// NaN and infinities are not numbers we can carry.
    pub fn from_f64(v: f64) -> Result<Number, CodecError> {
        if !v.is_finite() {
            return Err(CodecError::new(format!("number {v} is not finite")));
        }
        if v.fract() == 0.0 {
            return Ok(Number(exact_integral_f64(v)));
        }
        // Rust's Display prints the shortest round-trip digits without an
        // exponent; parse() only tidies it into canonical form.
        Number::parse(&format!("{v}"))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the number has no fractional part.
    pub fn is_integer(&self) -> bool {
        !self.0.contains('.')
    }

    /// The value as `i64` if it is an integer within range.
    pub fn as_i64(&self) -> Option<i64> {
        if self.is_integer() {
            self.0.parse().ok()
        } else {
            None
        }
    }

    /// The value as `u64` if it is a non-negative integer within range.
    pub fn as_u64(&self) -> Option<u64> {
        if self.is_integer() {
            self.0.parse().ok()
        } else {
            None
        }
    }

    /// The nearest `f64`, or `None` when the number is beyond `f64` range.
    /// May lose precision.
    pub fn as_f64(&self) -> Option<f64> {
        self.0.parse::<f64>().ok().filter(|f| f.is_finite())
    }
}

/// Exact decimal digits of an integral, finite `f64`.
fn exact_integral_f64(v: f64) -> String {
    if v == 0.0 {
        return "0".into(); // also folds -0
    }
    if v.abs() < 9.0e15 {
        // Well inside the range where the cast is exact.
        return (v as i64).to_string();
    }
    // v = mantissa × 2^exp with exp ≥ 0 here (|v| ≥ 2^53).
    let bits = v.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i64;
    let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let exp = raw_exp - 1075;
    // Little-endian base-1e9 limbs.
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = vec![
        mantissa % BASE,
        (mantissa / BASE) % BASE,
        mantissa / BASE / BASE,
    ];
    let mut remaining = exp;
    while remaining > 0 {
        let shift = remaining.min(30);
        remaining -= shift;
        let mut carry = 0u64;
        for limb in limbs.iter_mut() {
            let x = (*limb << shift) + carry;
            *limb = x % BASE;
            carry = x / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut out = String::new();
    if v < 0.0 {
        out.push('-');
    }
    let mut iter = limbs.iter().rev();
    if let Some(top) = iter.next() {
        out.push_str(&top.to_string());
    }
    for limb in iter {
        out.push_str(&format!("{limb:09}"));
    }
    out
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Number {
    type Err = CodecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Number::parse(s)
    }
}

impl From<i64> for Number {
    fn from(v: i64) -> Self {
        Number::from_i64(v)
    }
}

impl From<u64> for Number {
    fn from(v: u64) -> Self {
        Number::from_u64(v)
    }
}

// ---------------------------------------------------------------------------
// Value helpers
// ---------------------------------------------------------------------------

impl Value {
    /// Null, including a typed null inside a dynamic slot.
    pub fn is_null(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Dynamic(_, v) => v.is_null(),
            _ => false,
        }
    }

    /// Unknown itself (not "contains an unknown": see
    /// [`Value::is_fully_known`]), including inside a dynamic slot.
    pub fn is_unknown(&self) -> bool {
        match self {
            Value::Unknown => true,
            Value::Dynamic(_, v) => v.is_unknown(),
            _ => false,
        }
    }

    /// No unknown anywhere in the value. Required before JSON encoding and
    /// for values returned from apply.
    pub fn is_fully_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => true,
            Value::List(items) | Value::Set(items) | Value::Tuple(items) => {
                items.iter().all(Value::is_fully_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_fully_known),
            Value::Dynamic(_, v) => v.is_fully_known(),
        }
    }

    /// An object's attribute (looking through a dynamic wrapper).
    pub fn attr(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.get(name),
            Value::Dynamic(_, v) => v.attr(name),
            _ => None,
        }
    }

    /// The string, if this is a known string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Dynamic(_, v) => v.as_str(),
            _ => None,
        }
    }

    /// The bool, if this is a known bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Dynamic(_, v) => v.as_bool(),
            _ => None,
        }
    }

    /// The number, if this is a known number.
    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            Value::Dynamic(_, v) => v.as_number(),
            _ => None,
        }
    }

    /// Short human description for error messages.
    fn describe(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Unknown => "an unknown value",
            Value::Bool(_) => "a bool",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
            Value::Set(_) => "a set",
            Value::Map(_) => "a map",
            Value::Object(_) => "an object",
            Value::Tuple(_) => "a tuple",
            Value::Dynamic(..) => "a dynamic value",
        }
    }
}

// `From<bool>`, `From<&str>`, `From<String>` and `From<i64>` for `Value`
// live in `model.rs`.

impl From<Number> for Value {
    fn from(v: Number) -> Self {
        Value::Number(v)
    }
}

// ---------------------------------------------------------------------------
// msgpack decoding
// ---------------------------------------------------------------------------

/// Decodes a msgpack `DynamicValue` payload as a value of type `ty`.
///
/// Nulls, unknowns (any extension type) and dynamic wrappers are handled at
/// every level; numbers keep full precision; an object missing attributes
/// gets them as null (Terraform always sends all of them, but cty itself is
/// lenient here for empty maps); an attribute the type does not have is an
/// error naming it. Trailing bytes after the value are an error.
pub fn decode_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let mut d = MsgpackDecoder {
        buf: bytes,
        pos: 0,
        path: ValuePath::default(),
        depth: 0,
    };
    let value = d.value(ty)?;
    if d.pos != bytes.len() {
        return Err(CodecError::new(format!(
            "{} unexpected bytes after the value",
            bytes.len() - d.pos
        )));
    }
    Ok(value)
}

struct MsgpackDecoder<'a> {
    buf: &'a [u8],
    pos: usize,
    path: ValuePath,
    depth: usize,
}

/// What a msgpack marker byte introduces, for error messages.
fn marker_kind(m: u8) -> &'static str {
    match m {
        0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => "an integer",
        0x80..=0x8f | 0xde | 0xdf => "a map",
        0x90..=0x9f | 0xdc | 0xdd => "an array",
        0xa0..=0xbf | 0xd9..=0xdb => "a string",
        0xc0 => "nil",
        0xc2 | 0xc3 => "a bool",
        0xc4..=0xc6 => "binary data",
        0xca | 0xcb => "a float",
        0xc7..=0xc9 | 0xd4..=0xd8 => "an extension",
        _ => "an invalid marker",
    }
}

fn is_ext_marker(m: u8) -> bool {
    matches!(m, 0xc7..=0xc9 | 0xd4..=0xd8)
}

impl<'a> MsgpackDecoder<'a> {
    fn peek(&self) -> Result<u8, CodecError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.path.err("unexpected end of msgpack data"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.path.err("unexpected end of msgpack data"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, CodecError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn mismatch(&self, expected: &str, marker: u8) -> CodecError {
        self.path.err(format!(
            "expected {expected}, found {}",
            marker_kind(marker)
        ))
    }

    /// Skips one extension value (header and payload). The payload is never
    /// interpreted: plain unknowns carry junk, refined unknowns (code 12)
    /// carry a refinement map we do not model, and other codes are reserved
    /// for future kinds of unknown.
    fn skip_ext(&mut self) -> Result<(), CodecError> {
        let m = self.peek()?;
        self.pos += 1;
        let len = match m {
            0xd4 => 1,
            0xd5 => 2,
            0xd6 => 4,
            0xd7 => 8,
            0xd8 => 16,
            0xc7 => self.be(1)? as usize,
            0xc8 => self.be(2)? as usize,
            0xc9 => self.be(4)? as usize,
            _ => return Err(self.mismatch("an extension", m)),
        };
        self.take(1)?; // extension type code
        self.take(len)?;
        Ok(())
    }

    fn array_len(&mut self, expected: &str) -> Result<usize, CodecError> {
        let m = self.peek()?;
        let len = match m {
            0x90..=0x9f => {
                self.pos += 1;
                usize::from(m & 0x0f)
            }
            0xdc => {
                self.pos += 1;
                self.be(2)? as usize
            }
            0xdd => {
                self.pos += 1;
                self.be(4)? as usize
            }
            _ => return Err(self.mismatch(expected, m)),
        };
        Ok(len)
    }

    fn map_len(&mut self, expected: &str) -> Result<usize, CodecError> {
        let m = self.peek()?;
        let len = match m {
            0x80..=0x8f => {
                self.pos += 1;
                usize::from(m & 0x0f)
            }
            0xde => {
                self.pos += 1;
                self.be(2)? as usize
            }
            0xdf => {
                self.pos += 1;
                self.be(4)? as usize
            }
            _ => return Err(self.mismatch(expected, m)),
        };
        Ok(len)
    }

    /// Raw bytes of a msgpack str or bin.
    fn str_or_bin(&mut self, expected: &str) -> Result<&'a [u8], CodecError> {
        let m = self.peek()?;
        let len = match m {
            0xa0..=0xbf => {
                self.pos += 1;
                usize::from(m & 0x1f)
            }
            0xd9 | 0xc4 => {
                self.pos += 1;
                self.be(1)? as usize
            }
            0xda | 0xc5 => {
                self.pos += 1;
                self.be(2)? as usize
            }
            0xdb | 0xc6 => {
                self.pos += 1;
                self.be(4)? as usize
            }
            _ => return Err(self.mismatch(expected, m)),
        };
        self.take(len)
    }

    fn string(&mut self, expected: &str) -> Result<String, CodecError> {
        let raw = self.str_or_bin(expected)?;
        std::str::from_utf8(raw)
            .map(str::to_string)
            .map_err(|_| self.path.err("string is not valid UTF-8"))
    }

    fn number(&mut self) -> Result<Number, CodecError> {
        let m = self.peek()?;
        let n = match m {
            0x00..=0x7f => {
                self.pos += 1;
                Number::from_i64(i64::from(m))
            }
            0xe0..=0xff => {
                self.pos += 1;
                Number::from_i64(i64::from(m as i8))
            }
            0xcc..=0xcf => {
                self.pos += 1;
                let width = 1usize << (m - 0xcc);
                Number::from_u64(self.be(width)?)
            }
            0xd0..=0xd3 => {
                self.pos += 1;
                let width = 1usize << (m - 0xd0);
                let raw = self.be(width)?;
                // Sign-extend from `width` bytes.
                let shift = 64 - 8 * width as u32;
                Number::from_i64(((raw << shift) as i64) >> shift)
            }
            0xca => {
                self.pos += 1;
                let f = f32::from_bits(self.be(4)? as u32);
                // Widening is exact; cty does the same.
                Number::from_f64(f64::from(f)).map_err(|e| self.path.err(e.message))?
            }
            0xcb => {
                self.pos += 1;
                let f = f64::from_bits(self.be(8)?);
                Number::from_f64(f).map_err(|e| self.path.err(e.message))?
            }
            0xa0..=0xbf | 0xd9..=0xdb => {
                let text = self.string("a number")?;
                Number::parse(&text).map_err(|e| self.path.err(e.message))?
            }
            _ => return Err(self.mismatch("a number", m)),
        };
        Ok(n)
    }

    fn value(&mut self, ty: &Type) -> Result<Value, CodecError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.path.err("value is nested too deeply"));
        }
        self.depth += 1;
        let result = self.value_inner(ty);
        self.depth -= 1;
        result
    }

    fn value_inner(&mut self, ty: &Type) -> Result<Value, CodecError> {
        let m = self.peek()?;
        if is_ext_marker(m) {
            self.skip_ext()?;
            return Ok(Value::Unknown);
        }
        if m == 0xc0 {
            self.pos += 1;
            return Ok(Value::Null);
        }
        // Each element takes at least one byte, which bounds preallocation
        // whatever length the data claims.
        let cap = |len: usize, d: &Self| len.min(d.buf.len() - d.pos);
        match ty {
            Type::Bool => match m {
                0xc2 => {
                    self.pos += 1;
                    Ok(Value::Bool(false))
                }
                0xc3 => {
                    self.pos += 1;
                    Ok(Value::Bool(true))
                }
                _ => Err(self.mismatch("a bool", m)),
            },
            Type::Number => self.number().map(Value::Number),
            Type::String => self.string("a string").map(Value::String),
            Type::List(elem) | Type::Set(elem) => {
                let len = self.array_len(ty.describe())?;
                let mut items = Vec::with_capacity(cap(len, self));
                for i in 0..len {
                    let mark = self.path.push_index(i);
                    items.push(self.value(elem)?);
                    self.path.pop(mark);
                }
                Ok(match ty {
                    Type::Set(_) => Value::Set(items),
                    _ => Value::List(items),
                })
            }
            Type::Tuple(elems) => {
                let len = self.array_len("a tuple")?;
                if len != elems.len() {
                    return Err(self.path.err(format!(
                        "expected a tuple of {} elements, found {len}",
                        elems.len()
                    )));
                }
                let mut items = Vec::with_capacity(len);
                for (i, elem) in elems.iter().enumerate() {
                    let mark = self.path.push_index(i);
                    items.push(self.value(elem)?);
                    self.path.pop(mark);
                }
                Ok(Value::Tuple(items))
            }
            Type::Map(elem) => {
                let len = self.map_len("a map")?;
                let mut out = BTreeMap::new();
                for _ in 0..len {
                    let key = self.string("a string map key")?;
                    let mark = self.path.push_key(&key);
                    let v = self.value(elem)?;
                    self.path.pop(mark);
                    out.insert(key, v);
                }
                Ok(Value::Map(out))
            }
            Type::Object(attrs) => {
                let len = self.map_len("an object")?;
                let mut out = BTreeMap::new();
                for _ in 0..len {
                    let key = self.string("a string attribute name")?;
                    let Some(aty) = attrs.get(&key) else {
                        return Err(self.path.err(format!("unsupported attribute {key:?}")));
                    };
                    let mark = self.path.push_attr(&key);
                    let v = self.value(aty)?;
                    self.path.pop(mark);
                    out.insert(key, v);
                }
                for name in attrs.keys() {
                    out.entry(name.clone()).or_insert(Value::Null);
                }
                Ok(Value::Object(out))
            }
            Type::Dynamic => {
                let len = self.array_len("a dynamic value ([type, value])")?;
                if len != 2 {
                    return Err(self.path.err(format!(
                        "a dynamic value must be a 2-element array, found {len} elements"
                    )));
                }
                let type_json = self.str_or_bin("the JSON type of a dynamic value")?;
                let concrete =
                    Type::from_json_bytes(type_json).map_err(|e| self.path.err(e.message))?;
                let inner = self.value(&concrete)?;
                Ok(wrap_dynamic(concrete, inner))
            }
        }
    }
}

/// Builds `Value::Dynamic`, except that a "concrete" type of `dynamic` adds
/// no information: the inner value already is null, unknown or dynamic.
fn wrap_dynamic(ty: Type, inner: Value) -> Value {
    if ty == Type::Dynamic {
        inner
    } else {
        Value::Dynamic(ty, Box::new(inner))
    }
}

// ---------------------------------------------------------------------------
// msgpack encoding
// ---------------------------------------------------------------------------

/// The plain unknown: fixext1, extension type 0, one zero byte of payload.
/// This is exactly what cty writes for an unknown without refinements.
const UNKNOWN_MSGPACK: [u8; 3] = [0xd4, 0x00, 0x00];

/// Encodes `value` as msgpack for a `DynamicValue`, checking it against `ty`.
///
/// Null → nil, Unknown → the plain code-0 extension, objects as maps with
/// every attribute of the type in sorted key order (absent attributes are
/// written as nil; attributes the type lacks are an error). Numbers go out
/// as the most compact integer when integral and within `i64`/`u64`, as a
/// float64 when a non-integer reads back from the float unchanged, and as
/// decimal text otherwise, mirroring cty's choices.
pub fn encode_msgpack(value: &Value, ty: &Type) -> Result<Vec<u8>, CodecError> {
    let mut e = MsgpackEncoder {
        out: Vec::new(),
        path: ValuePath::default(),
    };
    e.value(value, ty)?;
    Ok(e.out)
}

struct MsgpackEncoder {
    out: Vec<u8>,
    path: ValuePath,
}

/// Writes into a `Vec`, which cannot fail; the `Result` from rmp is only
/// there for generic writers.
fn vec_write<T, E: fmt::Debug>(r: Result<T, E>) {
    if let Err(e) = r {
        unreachable!("msgpack write to a Vec failed: {e:?}");
    }
}

fn len_u32(len: usize, path: &ValuePath) -> Result<u32, CodecError> {
    u32::try_from(len).map_err(|_| path.err("too many elements for msgpack"))
}

impl MsgpackEncoder {
    fn string(&mut self, s: &str) -> Result<(), CodecError> {
        len_u32(s.len(), &self.path)?;
        vec_write(rmp::encode::write_str(&mut self.out, s));
        Ok(())
    }

    fn number(&mut self, n: &Number) -> Result<(), CodecError> {
        let canon = Number::parse(&n.0).map_err(|e| self.path.err(e.message))?;
        if let Some(i) = canon.as_i64() {
            vec_write(rmp::encode::write_sint(&mut self.out, i));
        } else if let Some(u) = canon.as_u64() {
            vec_write(rmp::encode::write_uint(&mut self.out, u));
        } else if let Some(f) = canon
            .as_f64()
            .filter(|_| !canon.is_integer())
            .filter(|&f| Number::from_f64(f).ok().as_ref() == Some(&canon))
        {
            vec_write(rmp::encode::write_f64(&mut self.out, f));
        } else {
            // Integers beyond 64 bits and decimals a float cannot hold
            // exactly travel as text, which Terraform parses at full
            // precision.
            self.string(&canon.0)?;
        }
        Ok(())
    }

    fn mismatch(&self, ty: &Type, value: &Value) -> CodecError {
        self.path.err(format!(
            "expected {}, found {}",
            ty.describe(),
            value.describe()
        ))
    }

    fn value(&mut self, value: &Value, ty: &Type) -> Result<(), CodecError> {
        match (value, ty) {
            (Value::Null, _) => {
                vec_write(rmp::encode::write_nil(&mut self.out));
                Ok(())
            }
            (Value::Unknown, _) => {
                self.out.extend_from_slice(&UNKNOWN_MSGPACK);
                Ok(())
            }
            (Value::Dynamic(concrete, inner), Type::Dynamic) => {
                if *concrete == Type::Dynamic {
                    return self.value(inner, ty);
                }
                vec_write(rmp::encode::write_array_len(&mut self.out, 2));
                let type_json = concrete.to_json_bytes();
                len_u32(type_json.len(), &self.path)?;
                vec_write(rmp::encode::write_bin(&mut self.out, &type_json));
                self.value(inner, concrete)
            }
            (_, Type::Dynamic) => Err(self.path.err(format!(
                "a dynamic attribute needs Value::Dynamic (a value with its type), found {}",
                value.describe()
            ))),
            // A dynamic wrapper in a statically typed slot is fine when the
            // types agree: just drop the wrapper.
            (Value::Dynamic(concrete, inner), _) => {
                if concrete == ty {
                    self.value(inner, ty)
                } else {
                    Err(self.path.err(format!(
                        "expected a value of type {ty}, found a dynamic value of type {concrete}"
                    )))
                }
            }
            (Value::Bool(b), Type::Bool) => {
                vec_write(rmp::encode::write_bool(&mut self.out, *b));
                Ok(())
            }
            (Value::Number(n), Type::Number) => self.number(n),
            (Value::String(s), Type::String) => self.string(s),
            (Value::List(items), Type::List(elem)) | (Value::Set(items), Type::Set(elem)) => {
                let len = len_u32(items.len(), &self.path)?;
                vec_write(rmp::encode::write_array_len(&mut self.out, len));
                for (i, item) in items.iter().enumerate() {
                    let mark = self.path.push_index(i);
                    self.value(item, elem)?;
                    self.path.pop(mark);
                }
                Ok(())
            }
            (Value::Tuple(items), Type::Tuple(elems)) => {
                if items.len() != elems.len() {
                    return Err(self.path.err(format!(
                        "expected a tuple of {} elements, found {}",
                        elems.len(),
                        items.len()
                    )));
                }
                let len = len_u32(items.len(), &self.path)?;
                vec_write(rmp::encode::write_array_len(&mut self.out, len));
                for (i, (item, elem)) in items.iter().zip(elems).enumerate() {
                    let mark = self.path.push_index(i);
                    self.value(item, elem)?;
                    self.path.pop(mark);
                }
                Ok(())
            }
            (Value::Map(m), Type::Map(elem)) => {
                let len = len_u32(m.len(), &self.path)?;
                vec_write(rmp::encode::write_map_len(&mut self.out, len));
                for (k, v) in m {
                    self.string(k)?;
                    let mark = self.path.push_key(k);
                    self.value(v, elem)?;
                    self.path.pop(mark);
                }
                Ok(())
            }
            (Value::Object(m), Type::Object(attrs)) => {
                if let Some(extra) = m.keys().find(|k| !attrs.contains_key(*k)) {
                    return Err(self.path.err(format!("unsupported attribute {extra:?}")));
                }
                let len = len_u32(attrs.len(), &self.path)?;
                vec_write(rmp::encode::write_map_len(&mut self.out, len));
                // BTreeMap order is byte-wise sorted, the order cty uses.
                for (name, aty) in attrs {
                    self.string(name)?;
                    let mark = self.path.push_attr(name);
                    self.value(m.get(name).unwrap_or(&Value::Null), aty)?;
                    self.path.pop(mark);
                }
                Ok(())
            }
            _ => Err(self.mismatch(ty, value)),
        }
    }
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// Decodes the JSON form of a value (state files, `RawState.json`, the
/// `json` field of `DynamicValue`).
///
/// Follows cty's JSON reader, including its leniencies, because upgraded
/// state written by older providers relies on them: a number may be given
/// as a JSON string, a bool as `"true"`/`"false"`/`"1"`/`"0"`, and a string
/// as a JSON number or bool. Numbers keep their exact text. JSON cannot
/// express unknowns.
pub fn decode_json(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    // arbitrary_precision keeps number text exactly as written.
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| CodecError::new(format!("invalid JSON: {e}")))?;
    let mut path = ValuePath::default();
    json_value(&json, ty, &mut path, 0)
}

fn json_found(j: &serde_json::Value) -> &'static str {
    use serde_json::Value as J;
    match j {
        J::Null => "null",
        J::Bool(_) => "a bool",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "an array",
        J::Object(_) => "an object",
    }
}

fn json_value(
    j: &serde_json::Value,
    ty: &Type,
    path: &mut ValuePath,
    depth: usize,
) -> Result<Value, CodecError> {
    use serde_json::Value as J;
    if depth >= MAX_DEPTH {
        return Err(path.err("value is nested too deeply"));
    }
    let mismatch = |path: &ValuePath| {
        path.err(format!(
            "expected {}, found {}",
            ty.describe(),
            json_found(j)
        ))
    };
    if j.is_null() {
        return Ok(Value::Null);
    }
    match ty {
        Type::Bool => match j {
            J::Bool(b) => Ok(Value::Bool(*b)),
            J::String(s) => match s.as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(path.err(format!("expected a bool, found the string {s:?}"))),
            },
            _ => Err(mismatch(path)),
        },
        Type::Number => {
            let text = match j {
                J::Number(n) => n.as_str(),
                J::String(s) => s.as_str(),
                _ => return Err(mismatch(path)),
            };
            Number::parse(text)
                .map(Value::Number)
                .map_err(|e| path.err(e.message))
        }
        Type::String => match j {
            J::String(s) => Ok(Value::String(s.clone())),
            J::Number(n) => Ok(Value::String(n.as_str().to_string())),
            J::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(mismatch(path)),
        },
        Type::List(elem) | Type::Set(elem) => {
            let J::Array(items) = j else {
                return Err(mismatch(path));
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let mark = path.push_index(i);
                out.push(json_value(item, elem, path, depth + 1)?);
                path.pop(mark);
            }
            Ok(match ty {
                Type::Set(_) => Value::Set(out),
                _ => Value::List(out),
            })
        }
        Type::Tuple(elems) => {
            let J::Array(items) = j else {
                return Err(mismatch(path));
            };
            if items.len() != elems.len() {
                return Err(path.err(format!(
                    "expected a tuple of {} elements, found {}",
                    elems.len(),
                    items.len()
                )));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, elem)) in items.iter().zip(elems).enumerate() {
                let mark = path.push_index(i);
                out.push(json_value(item, elem, path, depth + 1)?);
                path.pop(mark);
            }
            Ok(Value::Tuple(out))
        }
        Type::Map(elem) => {
            let J::Object(entries) = j else {
                return Err(mismatch(path));
            };
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let mark = path.push_key(k);
                out.insert(k.clone(), json_value(v, elem, path, depth + 1)?);
                path.pop(mark);
            }
            Ok(Value::Map(out))
        }
        Type::Object(attrs) => {
            let J::Object(entries) = j else {
                return Err(mismatch(path));
            };
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let Some(aty) = attrs.get(k) else {
                    return Err(path.err(format!("unsupported attribute {k:?}")));
                };
                let mark = path.push_attr(k);
                out.insert(k.clone(), json_value(v, aty, path, depth + 1)?);
                path.pop(mark);
            }
            for name in attrs.keys() {
                out.entry(name.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
        Type::Dynamic => {
            let J::Object(entries) = j else {
                return Err(path.err(format!(
                    "expected a dynamic value {{\"value\": ..., \"type\": ...}}, found {}",
                    json_found(j)
                )));
            };
            if let Some(k) = entries.keys().find(|k| *k != "value" && *k != "type") {
                return Err(path.err(format!("invalid key {k:?} in a dynamic value")));
            }
            let type_json = entries
                .get("type")
                .ok_or_else(|| path.err("dynamic value has no \"type\""))?;
            let concrete = Type::from_json(type_json).map_err(|e| path.err(e.message))?;
            let inner_json = entries
                .get("value")
                .ok_or_else(|| path.err("dynamic value has no \"value\""))?;
            let inner = json_value(inner_json, &concrete, path, depth + 1)?;
            Ok(wrap_dynamic(concrete, inner))
        }
    }
}

/// Encodes a wholly known value as JSON in the form [`decode_json`] reads
/// (and Terraform writes to state): numbers as JSON numbers with their exact
/// canonical text, dynamic values as `{"value": ..., "type": ...}`, objects
/// with every attribute of the type. Unknown values are an error.
pub fn encode_json(value: &Value, ty: &Type) -> Result<Vec<u8>, CodecError> {
    let mut path = ValuePath::default();
    let json = json_encode(value, ty, &mut path)?;
    serde_json::to_vec(&json).map_err(|e| CodecError::new(format!("JSON encoding failed: {e}")))
}

fn json_encode(
    value: &Value,
    ty: &Type,
    path: &mut ValuePath,
) -> Result<serde_json::Value, CodecError> {
    use serde_json::Value as J;
    let mismatch = |path: &ValuePath| {
        path.err(format!(
            "expected {}, found {}",
            ty.describe(),
            value.describe()
        ))
    };
    match (value, ty) {
        (Value::Unknown, _) => Err(path.err("unknown values cannot be encoded as JSON")),
        (Value::Null, _) => Ok(J::Null),
        (Value::Dynamic(concrete, inner), Type::Dynamic) => {
            if *concrete == Type::Dynamic {
                return json_encode(inner, ty, path);
            }
            let mut obj = serde_json::Map::new();
            obj.insert("value".into(), json_encode(inner, concrete, path)?);
            obj.insert("type".into(), concrete.to_json());
            Ok(J::Object(obj))
        }
        (_, Type::Dynamic) => Err(path.err(format!(
            "a dynamic attribute needs Value::Dynamic (a value with its type), found {}",
            value.describe()
        ))),
        (Value::Dynamic(concrete, inner), _) => {
            if concrete == ty {
                json_encode(inner, ty, path)
            } else {
                Err(path.err(format!(
                    "expected a value of type {ty}, found a dynamic value of type {concrete}"
                )))
            }
        }
        (Value::Bool(b), Type::Bool) => Ok(J::Bool(*b)),
        (Value::Number(n), Type::Number) => {
            let canon = Number::parse(&n.0).map_err(|e| path.err(e.message))?;
            // Canonical text is valid JSON number syntax; with
            // arbitrary_precision serde_json keeps it verbatim.
            canon
                .0
                .parse::<serde_json::Number>()
                .map(J::Number)
                .map_err(|e| path.err(format!("number {canon} is not valid JSON: {e}")))
        }
        (Value::String(s), Type::String) => Ok(J::String(s.clone())),
        (Value::List(items), Type::List(elem)) | (Value::Set(items), Type::Set(elem)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let mark = path.push_index(i);
                out.push(json_encode(item, elem, path)?);
                path.pop(mark);
            }
            Ok(J::Array(out))
        }
        (Value::Tuple(items), Type::Tuple(elems)) => {
            if items.len() != elems.len() {
                return Err(path.err(format!(
                    "expected a tuple of {} elements, found {}",
                    elems.len(),
                    items.len()
                )));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, elem)) in items.iter().zip(elems).enumerate() {
                let mark = path.push_index(i);
                out.push(json_encode(item, elem, path)?);
                path.pop(mark);
            }
            Ok(J::Array(out))
        }
        (Value::Map(m), Type::Map(elem)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let mark = path.push_key(k);
                out.insert(k.clone(), json_encode(v, elem, path)?);
                path.pop(mark);
            }
            Ok(J::Object(out))
        }
        (Value::Object(m), Type::Object(attrs)) => {
            if let Some(extra) = m.keys().find(|k| !attrs.contains_key(*k)) {
                return Err(path.err(format!("unsupported attribute {extra:?}")));
            }
            let mut out = serde_json::Map::new();
            for (name, aty) in attrs {
                let mark = path.push_attr(name);
                out.insert(
                    name.clone(),
                    json_encode(m.get(name).unwrap_or(&Value::Null), aty, path)?,
                );
                path.pop(mark);
            }
            Ok(J::Object(out))
        }
        _ => Err(mismatch(path)),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Fuzzing
// ---------------------------------------------------------------------------

/// The types a fuzz input can be decoded as: every kind of cty type, nested
/// the way provider schemas nest them.
fn fuzz_types() -> Vec<Type> {
    let nested = Type::object([
        ("name", Type::String),
        ("tags", Type::map(Type::String)),
        (
            "rules",
            Type::list(Type::object([("n", Type::Number), ("on", Type::Bool)])),
        ),
        ("any", Type::Dynamic),
    ]);
    vec![
        Type::String,
        Type::Number,
        Type::Bool,
        Type::Dynamic,
        Type::list(Type::String),
        Type::set(Type::Number),
        Type::map(Type::Dynamic),
        Type::Tuple(vec![Type::String, Type::Number, Type::Dynamic]),
        nested.clone(),
        Type::set(nested),
    ]
}

/// Entry point for a fuzz target: the first byte picks a type, the rest is
/// decoded as a msgpack and as a JSON `DynamicValue` of it, and the bytes as
/// a whole as a JSON type. Whatever decodes must encode and decode back to
/// the same value (or type). Never panics unless one of those invariants is
/// broken.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(ty) = Type::from_json_bytes(data) {
        let again = Type::from_json_bytes(&ty.to_json_bytes());
        assert_eq!(again.as_ref(), Ok(&ty), "type {ty} does not round-trip");
    }
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let types = fuzz_types();
    let ty = &types[pick as usize % types.len()];
    type Decode = fn(&[u8], &Type) -> Result<Value, CodecError>;
    type Encode = fn(&Value, &Type) -> Result<Vec<u8>, CodecError>;
    let codecs: [(&str, Decode, Encode); 2] = [
        ("msgpack", decode_msgpack, encode_msgpack),
        ("JSON", decode_json, encode_json),
    ];
    for (form, decode, encode) in codecs {
        let Ok(v) = decode(rest, ty) else { continue };
        let bytes = encode(&v, ty)
            .unwrap_or_else(|e| panic!("decoded {v:?} as {ty} ({form}) but cannot encode it: {e}"));
        let again = decode(&bytes, ty);
        assert_eq!(
            again.as_ref(),
            Ok(&v),
            "{form} value of {ty} does not round-trip"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num(s: &str) -> Value {
        Value::Number(Number::parse(s).unwrap())
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn map(pairs: &[(&str, Value)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn dynv(ty: Type, v: Value) -> Value {
        Value::Dynamic(ty, Box::new(v))
    }

    fn ty(json: &str) -> Type {
        Type::from_json_bytes(json.as_bytes()).unwrap()
    }

    fn round_trip(v: &Value, t: &Type) -> Value {
        let bytes = encode_msgpack(v, t).unwrap();
        decode_msgpack(&bytes, t).unwrap()
    }

    // Tiny msgpack writer helpers for hand-made wire input.
    fn mp_str(out: &mut Vec<u8>, s: &str) {
        rmp::encode::write_str(out, s).unwrap();
    }

    // ---- types ----

    #[test]
    fn type_json_every_kind() {
        let cases = [
            (r#""string""#, Type::String),
            (r#""number""#, Type::Number),
            (r#""bool""#, Type::Bool),
            (r#""dynamic""#, Type::Dynamic),
            (r#"["list","string"]"#, Type::list(Type::String)),
            (r#"["set","number"]"#, Type::set(Type::Number)),
            (r#"["map","bool"]"#, Type::map(Type::Bool)),
            (
                r#"["object",{"a":"string","b":["list","dynamic"]}]"#,
                Type::object([("a", Type::String), ("b", Type::list(Type::Dynamic))]),
            ),
            (
                r#"["tuple",["string","number"]]"#,
                Type::Tuple(vec![Type::String, Type::Number]),
            ),
            (r#"["tuple",[]]"#, Type::Tuple(vec![])),
            (r#"["object",{}]"#, Type::Object(BTreeMap::new())),
        ];
        for (json, want) in cases {
            assert_eq!(ty(json), want, "{json}");
            assert_eq!(String::from_utf8(want.to_json_bytes()).unwrap(), json);
        }
    }

    #[test]
    fn type_json_object_optional_attrs_ignored() {
        let t = ty(r#"["object",{"a":"string","b":"number"},["b"]]"#);
        assert_eq!(t, Type::object([("a", Type::String), ("b", Type::Number)]));
    }

    #[test]
    fn type_json_rejects_garbage() {
        for bad in [
            r#""int""#,
            r#"["list"]"#,
            r#"["list","string","x"]"#,
            r#"["object",["a"]]"#,
            r#"["object",{"a":"string"},"b"]"#,
            r#"["tuple","string"]"#,
            r#"["vector","string"]"#,
            r#"42"#,
            r#"not json"#,
        ] {
            assert!(Type::from_json_bytes(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    // ---- numbers ----

    #[test]
    fn number_parse_canonicalises() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("+5", "5"),
            ("007", "7"),
            ("1.50", "1.5"),
            ("-0.000", "0"),
            (".5", "0.5"),
            ("5.", "5"),
            ("1e3", "1000"),
            ("1E+3", "1000"),
            ("1.5e-3", "0.0015"),
            ("12345e-2", "123.45"),
            ("0.1", "0.1"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("18446744073709551615", "18446744073709551615"),
        ];
        for (input, want) in cases {
            assert_eq!(Number::parse(input).unwrap().as_str(), want, "{input}");
        }
        let big = Number::parse("-1.5e300").unwrap();
        assert_eq!(big.as_str(), format!("-15{}", "0".repeat(299)));
    }

    #[test]
    fn number_parse_rejects_non_decimals() {
        for bad in [
            "",
            "-",
            "+",
            ".",
            "1e",
            "1e+",
            "abc",
            "1.2.3",
            "inf",
            "-Inf",
            "NaN",
            " 1",
            "1 ",
            "0x10",
            "1_000",
            "1e999999999",
        ] {
            assert!(Number::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn number_from_f64_matches_cty_equality() {
        assert_eq!(Number::from_f64(0.1).unwrap().as_str(), "0.1");
        assert_eq!(Number::from_f64(-1.5).unwrap().as_str(), "-1.5");
        assert_eq!(Number::from_f64(-0.0).unwrap().as_str(), "0");
        assert_eq!(Number::from_f64(3.0).unwrap().as_str(), "3");
        // Integral floats get their exact digits.
        assert_eq!(
            Number::from_f64(1e23).unwrap().as_str(),
            "99999999999999991611392"
        );
        assert_eq!(
            Number::from_f64(2f64.powi(64)).unwrap().as_str(),
            "18446744073709551616"
        );
        assert_eq!(Number::from_f64(1e-7).unwrap().as_str(), "0.0000001");
        let max = Number::from_f64(f64::MAX).unwrap();
        assert_eq!(max.as_str().len(), 309);
        assert!(max.as_str().starts_with("17976931348623157"));
        assert!(Number::from_f64(f64::NAN).is_err());
        assert!(Number::from_f64(f64::INFINITY).is_err());
    }

    #[test]
    fn number_accessors() {
        let n = Number::parse("42").unwrap();
        assert_eq!(n.as_i64(), Some(42));
        assert_eq!(n.as_u64(), Some(42));
        assert_eq!(n.as_f64(), Some(42.0));
        let n = Number::from_u64(u64::MAX);
        assert_eq!(n.as_i64(), None);
        assert_eq!(n.as_u64(), Some(u64::MAX));
        let n = Number::parse("-2.5").unwrap();
        assert_eq!(n.as_i64(), None);
        assert_eq!(n.as_u64(), None);
        assert_eq!(n.as_f64(), Some(-2.5));
        assert!(!n.is_integer());
        assert_eq!(Number::parse("1e400").unwrap().as_f64(), None);
        assert_eq!(Number::from_i64(i64::MIN).as_i64(), Some(i64::MIN));
        assert_eq!("7".parse::<Number>().unwrap(), Number::from_i64(7));
    }

    // ---- msgpack: primitives ----

    #[test]
    fn msgpack_primitives_round_trip_and_wire_form() {
        assert_eq!(
            encode_msgpack(&Value::Bool(true), &Type::Bool).unwrap(),
            [0xc3]
        );
        assert_eq!(
            encode_msgpack(&s("hi"), &Type::String).unwrap(),
            [0xa2, b'h', b'i']
        );
        assert_eq!(encode_msgpack(&num("5"), &Type::Number).unwrap(), [0x05]);
        assert_eq!(encode_msgpack(&num("-1"), &Type::Number).unwrap(), [0xff]);
        for (v, t) in [
            (Value::Bool(false), Type::Bool),
            (s(""), Type::String),
            (s("ünïcødé ✓"), Type::String),
            (num("0"), Type::Number),
            (Value::Number(Number::from_i64(i64::MIN)), Type::Number),
            (Value::Number(Number::from_i64(i64::MAX)), Type::Number),
        ] {
            assert_eq!(round_trip(&v, &t), v);
        }
    }

    #[test]
    fn msgpack_numbers_keep_precision() {
        // u64::MAX goes out as uint64.
        let v = Value::Number(Number::from_u64(u64::MAX));
        let bytes = encode_msgpack(&v, &Type::Number).unwrap();
        assert_eq!(bytes[0], 0xcf);
        assert_eq!(decode_msgpack(&bytes, &Type::Number).unwrap(), v);

        // 0.1 is exactly representable as "the float nearest 0.1": float64.
        let v = num("0.1");
        let bytes = encode_msgpack(&v, &Type::Number).unwrap();
        assert_eq!(bytes[0], 0xcb);
        assert_eq!(
            f64::from_bits(u64::from_be_bytes(bytes[1..9].try_into().unwrap())),
            0.1
        );
        assert_eq!(decode_msgpack(&bytes, &Type::Number).unwrap(), v);

        // Beyond 64 bits, or more digits than a float keeps: decimal text.
        for text in [
            "123456789012345678901234567890",
            "-1.5e300",
            "0.1000000000000000000000000001",
            "18446744073709551616",
        ] {
            let v = num(text);
            let bytes = encode_msgpack(&v, &Type::Number).unwrap();
            assert!(matches!(bytes[0], 0xa0..=0xbf | 0xd9..=0xdb), "{text}");
            assert_eq!(decode_msgpack(&bytes, &Type::Number).unwrap(), v, "{text}");
        }
    }

    #[test]
    fn msgpack_decodes_every_number_encoding() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x7f], "127"),
            (vec![0xe0], "-32"),
            (vec![0xcc, 0xff], "255"),
            (vec![0xcd, 0x01, 0x00], "256"),
            (vec![0xce, 0xff, 0xff, 0xff, 0xff], "4294967295"),
            (
                vec![0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                "18446744073709551615",
            ),
            (vec![0xd0, 0x80], "-128"),
            (vec![0xd1, 0xff, 0xfe], "-2"),
            (vec![0xd2, 0x80, 0, 0, 0], "-2147483648"),
            (
                vec![0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
                "-9223372036854775808",
            ),
            (
                [vec![0xca], 1.5f32.to_bits().to_be_bytes().to_vec()].concat(),
                "1.5",
            ),
            // float32 0.1 widened exactly, as cty does.
            (
                [vec![0xca], 0.1f32.to_bits().to_be_bytes().to_vec()].concat(),
                "0.10000000149011612",
            ),
            (
                [vec![0xcb], (-1.5e300f64).to_bits().to_be_bytes().to_vec()].concat(),
                "",
            ),
        ];
        for (bytes, want) in cases {
            let got = decode_msgpack(&bytes, &Type::Number).unwrap();
            if want.is_empty() {
                // The float -1.5e300 is an integer: exact digits of the double.
                let n = got.as_number().unwrap();
                assert!(n.is_integer());
                assert_eq!(n.as_f64(), Some(-1.5e300));
                assert_eq!(n.as_str().len(), 302);
            } else {
                assert_eq!(got, num(want), "{bytes:x?}");
            }
        }
        let mut text = Vec::new();
        mp_str(&mut text, "123456789012345678901234567890");
        assert_eq!(
            decode_msgpack(&text, &Type::Number).unwrap(),
            num("123456789012345678901234567890")
        );
        let mut bad = Vec::new();
        mp_str(&mut bad, "twelve");
        let err = decode_msgpack(&bad, &Type::Number).unwrap_err();
        assert!(err.to_string().contains("twelve"), "{err}");
        let nan = [vec![0xcb], f64::NAN.to_bits().to_be_bytes().to_vec()].concat();
        assert!(decode_msgpack(&nan, &Type::Number).is_err());
    }

    // ---- msgpack: null and unknown ----

    #[test]
    fn msgpack_null_and_unknown_at_every_type() {
        let types = [
            Type::Bool,
            Type::Number,
            Type::String,
            Type::Dynamic,
            Type::list(Type::String),
            Type::set(Type::Number),
            Type::map(Type::Bool),
            Type::object([("a", Type::String)]),
            Type::Tuple(vec![Type::String]),
        ];
        for t in &types {
            assert_eq!(decode_msgpack(&[0xc0], t).unwrap(), Value::Null, "{t}");
            assert_eq!(
                decode_msgpack(&[0xd4, 0, 0], t).unwrap(),
                Value::Unknown,
                "{t}"
            );
            assert_eq!(encode_msgpack(&Value::Null, t).unwrap(), [0xc0]);
            assert_eq!(encode_msgpack(&Value::Unknown, t).unwrap(), [0xd4, 0, 0]);
        }
    }

    #[test]
    fn msgpack_refined_unknown_ext12_is_unknown() {
        // Refinements: {1: false (not null), 2: "ab" (string prefix)}.
        let payload = [0x82, 0x01, 0xc2, 0x02, 0xa2, b'a', b'b'];
        let mut bytes = vec![0xc7, payload.len() as u8, 0x0c];
        bytes.extend_from_slice(&payload);
        assert_eq!(
            decode_msgpack(&bytes, &Type::String).unwrap(),
            Value::Unknown
        );

        // Number bounds {3: [0, true], 4: [10, false]} (ext8), inside an
        // object so that the bytes after it must still line up.
        let payload = [0x82, 0x03, 0x92, 0x00, 0xc3, 0x04, 0x92, 0x0a, 0xc2];
        let mut bytes = vec![0x82];
        mp_str(&mut bytes, "a");
        bytes.extend_from_slice(&[0xc7, payload.len() as u8, 0x0c]);
        bytes.extend_from_slice(&payload);
        mp_str(&mut bytes, "b");
        mp_str(&mut bytes, "after");
        let t = Type::object([("a", Type::Number), ("b", Type::String)]);
        assert_eq!(
            decode_msgpack(&bytes, &t).unwrap(),
            obj(&[("a", Value::Unknown), ("b", s("after"))])
        );

        // Any other extension code and form is unknown too.
        for ext in [
            vec![0xd5, 0x05, 1, 2],
            vec![0xd6, 0x7f, 1, 2, 3, 4],
            vec![0xd7, 0x01, 0, 0, 0, 0, 0, 0, 0, 0],
            [vec![0xd8, 0x0c], vec![0; 16]].concat(),
            vec![0xc8, 0x00, 0x01, 0x0c, 0x80],
            vec![0xc9, 0, 0, 0, 0, 0x00],
        ] {
            assert_eq!(
                decode_msgpack(&ext, &Type::list(Type::String)).unwrap(),
                Value::Unknown
            );
        }
    }

    // ---- msgpack: collections ----

    #[test]
    fn msgpack_collections_round_trip() {
        let cases = [
            (
                Value::List(vec![s("a"), Value::Null, Value::Unknown]),
                Type::list(Type::String),
            ),
            (Value::List(vec![]), Type::list(Type::String)),
            (
                Value::Set(vec![num("1"), num("2.5")]),
                Type::set(Type::Number),
            ),
            (
                map(&[("x", Value::Bool(true)), ("y", Value::Null)]),
                Type::map(Type::Bool),
            ),
            (map(&[]), Type::map(Type::Bool)),
            (
                Value::Tuple(vec![s("a"), num("1"), Value::Unknown]),
                Type::Tuple(vec![Type::String, Type::Number, Type::Bool]),
            ),
            (Value::Tuple(vec![]), Type::Tuple(vec![])),
        ];
        for (v, t) in cases {
            assert_eq!(round_trip(&v, &t), v, "{t}");
        }
    }

    #[test]
    fn msgpack_object_keys_sorted_and_complete() {
        let t = Type::object([
            ("zeta", Type::String),
            ("alpha", Type::Number),
            ("mid", Type::Bool),
        ]);
        // "mid" missing from the value: written as nil.
        let v = obj(&[("zeta", s("z")), ("alpha", num("1"))]);
        let bytes = encode_msgpack(&v, &t).unwrap();
        let mut want = vec![0x83];
        mp_str(&mut want, "alpha");
        want.push(0x01);
        mp_str(&mut want, "mid");
        want.push(0xc0);
        mp_str(&mut want, "zeta");
        mp_str(&mut want, "z");
        assert_eq!(bytes, want);
        assert_eq!(
            decode_msgpack(&bytes, &t).unwrap(),
            obj(&[("zeta", s("z")), ("alpha", num("1")), ("mid", Value::Null)])
        );
    }

    #[test]
    fn msgpack_object_missing_attribute_decodes_null() {
        let t = Type::object([("a", Type::String), ("b", Type::Number)]);
        let mut bytes = vec![0x81];
        mp_str(&mut bytes, "a");
        mp_str(&mut bytes, "x");
        assert_eq!(
            decode_msgpack(&bytes, &t).unwrap(),
            obj(&[("a", s("x")), ("b", Value::Null)])
        );
    }

    #[test]
    fn msgpack_object_unknown_attribute_is_error_naming_it() {
        let t = Type::object([("a", Type::String)]);
        let mut bytes = vec![0x81];
        mp_str(&mut bytes, "bogus");
        mp_str(&mut bytes, "x");
        let err = decode_msgpack(&bytes, &t).unwrap_err();
        assert!(err.to_string().contains("\"bogus\""), "{err}");

        let v = obj(&[("a", s("x")), ("bogus", s("y"))]);
        let err = encode_msgpack(&v, &t).unwrap_err();
        assert!(err.to_string().contains("\"bogus\""), "{err}");
    }

    #[test]
    fn msgpack_nested_objects() {
        let t = ty(r#"["object",{
            "name":"string",
            "spec":["object",{"replicas":"number","labels":["map","string"],
                "ports":["list",["object",{"port":"number","proto":"string"}]]}],
            "tags":["set","string"]}]"#);
        let v = obj(&[
            ("name", s("web")),
            (
                "spec",
                obj(&[
                    ("replicas", num("3")),
                    (
                        "labels",
                        map(&[("app", s("web")), ("tier", Value::Unknown)]),
                    ),
                    (
                        "ports",
                        Value::List(vec![
                            obj(&[("port", num("80")), ("proto", s("tcp"))]),
                            obj(&[("port", Value::Unknown), ("proto", Value::Null)]),
                        ]),
                    ),
                ]),
            ),
            ("tags", Value::Set(vec![s("a"), s("b")])),
        ]);
        assert_eq!(round_trip(&v, &t), v);
        assert!(!v.is_fully_known());
        assert_eq!(
            v.attr("spec")
                .and_then(|s| s.attr("replicas"))
                .and_then(Value::as_number),
            Some(&Number::from_i64(3))
        );
    }

    #[test]
    fn msgpack_type_mismatch_reports_path() {
        let t = Type::object([("tags", Type::map(Type::Bool))]);
        let mut bytes = vec![0x81];
        mp_str(&mut bytes, "tags");
        bytes.push(0x81);
        mp_str(&mut bytes, "a");
        mp_str(&mut bytes, "not a bool");
        let err = decode_msgpack(&bytes, &t).unwrap_err();
        assert_eq!(err.path, r#".tags["a"]"#);
        assert!(err.to_string().contains(r#".tags["a"]"#), "{err}");
        assert!(
            err.to_string().contains("expected a bool, found a string"),
            "{err}"
        );

        let v = obj(&[("tags", map(&[("a", s("x"))]))]);
        let err = encode_msgpack(&v, &t).unwrap_err();
        assert_eq!(err.path, r#".tags["a"]"#);

        let t = Type::object([("rules", Type::list(Type::object([("port", Type::Number)])))]);
        let v = obj(&[(
            "rules",
            Value::List(vec![
                obj(&[("port", num("1"))]),
                obj(&[("port", s("http"))]),
            ]),
        )]);
        let err = encode_msgpack(&v, &t).unwrap_err();
        assert_eq!(
            err.to_string(),
            "at .rules[1].port: expected a number, found a string"
        );

        // A list is not a set.
        let err = encode_msgpack(&Value::List(vec![]), &Type::set(Type::String)).unwrap_err();
        assert!(err.to_string().contains("expected a set"), "{err}");
        // Tuple arity.
        assert!(decode_msgpack(&[0x91, 0xc0], &Type::Tuple(vec![Type::Bool, Type::Bool])).is_err());
    }

    #[test]
    fn msgpack_malformed_input() {
        assert!(decode_msgpack(&[], &Type::String).is_err());
        assert!(decode_msgpack(&[0xa5, b'a'], &Type::String).is_err());
        assert!(decode_msgpack(&[0xc3, 0xc3], &Type::Bool).is_err());
        assert!(decode_msgpack(&[0xa2, 0xff, 0xfe], &Type::String).is_err());
        assert!(decode_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff], &Type::list(Type::Bool)).is_err());
        assert!(decode_msgpack(&[0xc1], &Type::Bool).is_err());
    }

    // ---- msgpack: dynamic ----

    #[test]
    fn msgpack_dynamic_values() {
        // [bin("\"string\""), "hi"] as cty writes it.
        let mut bytes = vec![0x92];
        rmp::encode::write_bin(&mut bytes, br#""string""#).unwrap();
        mp_str(&mut bytes, "hi");
        let want = dynv(Type::String, s("hi"));
        assert_eq!(decode_msgpack(&bytes, &Type::Dynamic).unwrap(), want);
        assert_eq!(encode_msgpack(&want, &Type::Dynamic).unwrap(), bytes);

        // Type JSON as a str is accepted too.
        let mut bytes = vec![0x92];
        mp_str(&mut bytes, r#"["list","number"]"#);
        bytes.extend_from_slice(&[0x92, 0x01, 0x02]);
        assert_eq!(
            decode_msgpack(&bytes, &Type::Dynamic).unwrap(),
            dynv(
                Type::list(Type::Number),
                Value::List(vec![num("1"), num("2")])
            )
        );

        // Typed null and typed unknown inside the wrapper.
        for inner in [Value::Null, Value::Unknown] {
            let v = dynv(Type::map(Type::String), inner);
            assert_eq!(round_trip(&v, &Type::Dynamic), v);
        }

        // Inside an object, nested dynamic in a dynamic's type.
        let t = Type::object([("any", Type::Dynamic), ("n", Type::Number)]);
        let v = obj(&[
            (
                "any",
                dynv(
                    Type::object([("x", Type::Dynamic)]),
                    obj(&[("x", dynv(Type::Bool, Value::Bool(true)))]),
                ),
            ),
            ("n", num("1")),
        ]);
        assert_eq!(round_trip(&v, &t), v);

        // A plain value in a dynamic slot has no type to send.
        let err = encode_msgpack(&s("x"), &Type::Dynamic).unwrap_err();
        assert!(err.to_string().contains("Value::Dynamic"), "{err}");

        // Wrong shapes.
        assert!(decode_msgpack(&[0x93, 0xc0, 0xc0, 0xc0], &Type::Dynamic).is_err());
        let mut bad_type = vec![0x92];
        mp_str(&mut bad_type, r#"["list"]"#);
        bad_type.push(0xc0);
        assert!(decode_msgpack(&bad_type, &Type::Dynamic).is_err());

        // A wrapper whose type matches a static slot is unwrapped.
        assert_eq!(
            encode_msgpack(&dynv(Type::String, s("hi")), &Type::String).unwrap(),
            [0xa2, b'h', b'i']
        );
        assert!(encode_msgpack(&dynv(Type::Bool, Value::Bool(true)), &Type::String).is_err());
    }

    // ---- value helpers ----

    #[test]
    fn value_helpers() {
        assert!(Value::Null.is_null());
        assert!(dynv(Type::String, Value::Null).is_null());
        assert!(!s("x").is_null());
        assert!(Value::Unknown.is_unknown());
        assert!(dynv(Type::String, Value::Unknown).is_unknown());
        assert!(!Value::List(vec![Value::Unknown]).is_unknown());
        assert!(!Value::List(vec![Value::Unknown]).is_fully_known());
        assert!(!map(&[("a", dynv(Type::Bool, Value::Unknown))]).is_fully_known());
        assert!(obj(&[("a", Value::Null)]).is_fully_known());
        assert_eq!(s("x").as_str(), Some("x"));
        assert_eq!(dynv(Type::String, s("x")).as_str(), Some("x"));
        assert_eq!(Value::Bool(true).as_bool(), Some(true));
        assert_eq!(num("2").as_number(), Some(&Number::from_i64(2)));
        assert_eq!(obj(&[("a", s("x"))]).attr("a"), Some(&s("x")));
        assert_eq!(obj(&[("a", s("x"))]).attr("b"), None);
        assert_eq!(map(&[("a", s("x"))]).attr("a"), None);
    }

    // ---- JSON ----

    #[test]
    fn json_decode_state_like_object() {
        let t = ty(r#"["object",{
            "id":"string","count":"number","big":"number","ratio":"number",
            "enabled":"bool","tags":["map","string"],"extra":"dynamic",
            "ports":["list","number"],"pair":["tuple",["string","bool"]],"gone":"string"}]"#);
        let json = br#"{
            "id": "abc",
            "count": 3,
            "big": 123456789012345678901234567890,
            "ratio": 1.50e-1,
            "enabled": true,
            "tags": {"env": "prod"},
            "extra": {"value": ["a", 1], "type": ["tuple", ["string", "number"]]},
            "ports": [80, 443],
            "pair": ["x", false]
        }"#;
        let v = decode_json(json, &t).unwrap();
        assert_eq!(v.attr("id"), Some(&s("abc")));
        assert_eq!(v.attr("count"), Some(&num("3")));
        assert_eq!(v.attr("big"), Some(&num("123456789012345678901234567890")));
        assert_eq!(v.attr("ratio"), Some(&num("0.15")));
        assert_eq!(v.attr("enabled"), Some(&Value::Bool(true)));
        assert_eq!(v.attr("tags"), Some(&map(&[("env", s("prod"))])));
        assert_eq!(
            v.attr("extra"),
            Some(&dynv(
                Type::Tuple(vec![Type::String, Type::Number]),
                Value::Tuple(vec![s("a"), num("1")])
            ))
        );
        assert_eq!(v.attr("gone"), Some(&Value::Null));

        // And back: canonical text, dynamic as {"value","type"}.
        let out = String::from_utf8(encode_json(&v, &t).unwrap()).unwrap();
        assert!(
            out.contains(r#""big":123456789012345678901234567890"#),
            "{out}"
        );
        assert!(out.contains(r#""ratio":0.15"#), "{out}");
        assert!(
            out.contains(r#""extra":{"value":["a",1],"type":["tuple",["string","number"]]}"#),
            "{out}"
        );
        assert!(out.contains(r#""gone":null"#), "{out}");
        assert_eq!(decode_json(out.as_bytes(), &t).unwrap(), v);
    }

    #[test]
    fn json_decode_leniencies_and_errors() {
        assert_eq!(decode_json(br#""12.0""#, &Type::Number).unwrap(), num("12"));
        assert_eq!(
            decode_json(br#""true""#, &Type::Bool).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            decode_json(br#""0""#, &Type::Bool).unwrap(),
            Value::Bool(false)
        );
        assert_eq!(decode_json(b"1.50", &Type::String).unwrap(), s("1.50"));
        assert_eq!(decode_json(b"false", &Type::String).unwrap(), s("false"));
        assert_eq!(decode_json(b"null", &Type::Dynamic).unwrap(), Value::Null);
        assert_eq!(
            decode_json(br#"{"value":null,"type":"string"}"#, &Type::Dynamic).unwrap(),
            dynv(Type::String, Value::Null)
        );

        let t = Type::object([("tags", Type::map(Type::Bool))]);
        let err = decode_json(br#"{"tags":{"a":"yes"}}"#, &t).unwrap_err();
        assert_eq!(err.path, r#".tags["a"]"#);
        let err = decode_json(br#"{"tags":{},"bogus":1}"#, &t).unwrap_err();
        assert!(err.to_string().contains("\"bogus\""), "{err}");
        assert!(decode_json(br#"{"value":1}"#, &Type::Dynamic).is_err());
        assert!(decode_json(br#"{"value":1,"type":"number","x":1}"#, &Type::Dynamic).is_err());
        assert!(decode_json(b"[1,2]", &Type::Tuple(vec![Type::Number])).is_err());
        assert!(decode_json(b"{", &Type::Bool).is_err());
    }

    #[test]
    fn json_encode_rejects_unknown() {
        let t = Type::object([("a", Type::list(Type::String))]);
        let v = obj(&[("a", Value::List(vec![Value::Unknown]))]);
        let err = encode_json(&v, &t).unwrap_err();
        assert_eq!(err.path, ".a[0]");
        assert!(err.message.contains("unknown"));
    }

    // ---- property tests ----

    fn arb_name() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_]{0,6}"
    }

    /// Random types up to `depth` levels of nesting.
    fn arb_type(depth: u32) -> BoxedStrategy<Type> {
        let leaf = prop_oneof![
            Just(Type::Bool),
            Just(Type::Number),
            Just(Type::String),
            Just(Type::Dynamic),
        ];
        leaf.prop_recursive(depth, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(Type::list),
                inner.clone().prop_map(Type::set),
                inner.clone().prop_map(Type::map),
                prop::collection::btree_map(arb_name(), inner.clone(), 0..4).prop_map(Type::Object),
                prop::collection::vec(inner, 0..4).prop_map(Type::Tuple),
            ]
        })
        .boxed()
    }

    fn arb_number() -> impl Strategy<Value = Number> {
        prop_oneof![
            any::<i64>().prop_map(Number::from_i64),
            any::<u64>().prop_map(Number::from_u64),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| Number::from_f64(f).unwrap()),
            // Arbitrary decimals, often beyond float precision.
            ("-?[0-9]{1,40}", "[0-9]{0,40}", -60i32..60).prop_map(|(int, frac, exp)| {
                Number::parse(&format!("{int}.{frac}0e{exp}")).unwrap()
            }),
        ]
    }

    /// Random values of `ty`; `budget` bounds how deep dynamic values may
    /// introduce new types.
    fn arb_value(ty: &Type, unknowns: bool, budget: u32) -> BoxedStrategy<Value> {
        let concrete: BoxedStrategy<Value> = match ty {
            Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            Type::Number => arb_number().prop_map(Value::Number).boxed(),
            Type::String => any::<String>().prop_map(Value::String).boxed(),
            Type::Dynamic => {
                if budget == 0 {
                    Just(Value::Null).boxed()
                } else {
                    arb_type(2)
                        .prop_filter("a dynamic value's type is concrete", |t| {
                            *t != Type::Dynamic
                        })
                        .prop_flat_map(move |t| {
                            arb_value(&t, unknowns, budget - 1)
                                .prop_map(move |v| Value::Dynamic(t.clone(), Box::new(v)))
                        })
                        .boxed()
                }
            }
            Type::List(e) => prop::collection::vec(arb_value(e, unknowns, budget), 0..4)
                .prop_map(Value::List)
                .boxed(),
            Type::Set(e) => prop::collection::vec(arb_value(e, unknowns, budget), 0..4)
                .prop_map(Value::Set)
                .boxed(),
            Type::Map(e) => {
                prop::collection::btree_map(any::<String>(), arb_value(e, unknowns, budget), 0..4)
                    .prop_map(Value::Map)
                    .boxed()
            }
            Type::Object(attrs) => {
                let fields: Vec<BoxedStrategy<(String, Value)>> = attrs
                    .iter()
                    .map(|(k, t)| {
                        let k = k.clone();
                        arb_value(t, unknowns, budget)
                            .prop_map(move |v| (k.clone(), v))
                            .boxed()
                    })
                    .collect();
                fields
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
                    .boxed()
            }
            Type::Tuple(elems) => {
                let items: Vec<BoxedStrategy<Value>> = elems
                    .iter()
                    .map(|t| arb_value(t, unknowns, budget))
                    .collect();
                items.prop_map(Value::Tuple).boxed()
            }
        };
        if unknowns {
            prop_oneof![
                1 => Just(Value::Null),
                1 => Just(Value::Unknown),
                6 => concrete,
            ]
            .boxed()
        } else {
            prop_oneof![1 => Just(Value::Null), 7 => concrete].boxed()
        }
    }

    fn arb_typed_value(unknowns: bool) -> impl Strategy<Value = (Type, Value)> {
        arb_type(4).prop_flat_map(move |t| {
            let t2 = t.clone();
            arb_value(&t, unknowns, 2).prop_map(move |v| (t2.clone(), v))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_msgpack_round_trip((t, v) in arb_typed_value(true)) {
            let bytes = encode_msgpack(&v, &t).unwrap();
            prop_assert_eq!(decode_msgpack(&bytes, &t).unwrap(), v);
        }

        #[test]
        fn prop_json_round_trip_known((t, v) in arb_typed_value(false)) {
            prop_assert!(v.is_fully_known());
            let bytes = encode_json(&v, &t).unwrap();
            prop_assert_eq!(decode_json(&bytes, &t).unwrap(), v);
        }

        #[test]
        fn prop_type_json_round_trip(t in arb_type(4)) {
            prop_assert_eq!(Type::from_json_bytes(&t.to_json_bytes()).unwrap(), t);
        }

        #[test]
        fn prop_number_canonical_is_fixed_point(n in arb_number()) {
            prop_assert_eq!(Number::parse(n.as_str()).unwrap(), n.clone());
            // Encoding never loses anything either.
            let bytes = encode_msgpack(&Value::Number(n.clone()), &Type::Number).unwrap();
            prop_assert_eq!(decode_msgpack(&bytes, &Type::Number).unwrap(), Value::Number(n));
        }

        #[test]
        fn prop_f64_text_reads_back(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let n = Number::from_f64(f).unwrap();
            prop_assert_eq!(n.as_f64(), Some(if f == 0.0 { 0.0 } else { f }));
        }
    }
}
