//! Terraform values (cty) and their wire encodings (DynamicValue: msgpack, JSON).
//!
//! Terraform sends every configuration, plan and state value as a
//! `DynamicValue`: msgpack bytes (or, in older paths, JSON) that can only be
//! decoded with the schema type in hand, because msgpack cannot tell a list
//! from a set, an object from a map, nor carry "unknown".

use std::collections::BTreeMap;

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
/// (e.g. "42", "-0.5", "1e+400"), so nothing is lost between Terraform and us.
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
