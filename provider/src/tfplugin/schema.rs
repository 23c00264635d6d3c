//! Declarative schemas: what a resource's attributes are and how they plan.
//!
//! A resource declares each attribute once — its type, whether it is
//! required, optional or computed, sensitive or write-only, its default,
//! validators and plan behaviour (requires-replace, use-state-for-unknown).
//! The framework derives from that declaration the protocol schema, the
//! cty type used to decode values, validation and the planned state.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::diag::{AttrPath, Diagnostics};
use super::value::{Type, Value};

/// Checks a known, non-null attribute value; reports into `diags` at `path`.
pub type Validator = Arc<dyn Fn(&Value, &AttrPath, &mut Diagnostics) + Send + Sync>;

/// How a change to an attribute is planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanModifier {
    /// A change to this attribute destroys and recreates the object.
    RequiresReplace,
    /// A computed value that never changes once set: plan the prior state's
    /// value instead of "known after apply".
    UseStateForUnknown,
}

/// Where an attribute's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Required,
    Optional,
    /// Optional in configuration; when omitted, the provider decides.
    OptionalComputed,
    Computed,
}

#[derive(Clone)]
pub struct Attribute {
    pub name: String,
    pub ty: Type,
    pub presence: Presence,
    pub description: String,
    pub sensitive: bool,
    pub write_only: bool,
    pub deprecated: bool,
    pub default: Option<Value>,
    pub modifiers: Vec<PlanModifier>,
    pub validators: Vec<Validator>,
}

impl std::fmt::Debug for Attribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attribute")
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("presence", &self.presence)
            .finish()
    }
}

impl Attribute {
    pub fn new(name: &str, ty: Type) -> Self {
        Attribute {
            name: name.to_string(),
            ty,
            presence: Presence::Optional,
            description: String::new(),
            sensitive: false,
            write_only: false,
            deprecated: false,
            default: None,
            modifiers: Vec::new(),
            validators: Vec::new(),
        }
    }
    pub fn string(name: &str) -> Self {
        Self::new(name, Type::String)
    }
    pub fn number(name: &str) -> Self {
        Self::new(name, Type::Number)
    }
    pub fn bool(name: &str) -> Self {
        Self::new(name, Type::Bool)
    }
    pub fn string_map(name: &str) -> Self {
        Self::new(name, Type::Map(Box::new(Type::String)))
    }
    pub fn string_list(name: &str) -> Self {
        Self::new(name, Type::List(Box::new(Type::String)))
    }
    pub fn string_set(name: &str) -> Self {
        Self::new(name, Type::Set(Box::new(Type::String)))
    }
    pub fn required(mut self) -> Self {
        self.presence = Presence::Required;
        self
    }
    pub fn optional(mut self) -> Self {
        self.presence = Presence::Optional;
        self
    }
    pub fn optional_computed(mut self) -> Self {
        self.presence = Presence::OptionalComputed;
        self
    }
    pub fn computed(mut self) -> Self {
        self.presence = Presence::Computed;
        self
    }
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    /// Write-only (Terraform ≥ 1.11): sent in configuration, never planned
    /// or stored in state.
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }
    /// The value planned when configuration omits the attribute; makes the
    /// attribute optional+computed.
    pub fn default(mut self, v: impl Into<Value>) -> Self {
        self.default = Some(v.into());
        self.presence = Presence::OptionalComputed;
        self
    }
    pub fn requires_replace(mut self) -> Self {
        self.modifiers.push(PlanModifier::RequiresReplace);
        self
    }
    pub fn use_state_for_unknown(mut self) -> Self {
        self.modifiers.push(PlanModifier::UseStateForUnknown);
        self
    }
    pub fn validate(mut self, v: Validator) -> Self {
        self.validators.push(v);
        self
    }
    pub fn is_computed(&self) -> bool {
        matches!(
            self.presence,
            Presence::Computed | Presence::OptionalComputed
        )
    }
    pub fn has(&self, m: PlanModifier) -> bool {
        self.modifiers.contains(&m)
    }
}

/// How a nested block repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
}

#[derive(Clone, Debug)]
pub struct NestedBlock {
    pub type_name: String,
    pub nesting: Nesting,
    pub block: Block,
    pub min_items: i64,
    pub max_items: i64,
    pub requires_replace: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Block {
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    pub description: String,
}

impl Block {
    pub fn new(description: &str) -> Self {
        Block {
            description: description.to_string(),
            ..Default::default()
        }
    }
    pub fn attr(mut self, a: Attribute) -> Self {
        self.attributes.push(a);
        self
    }
    pub fn block(mut self, b: NestedBlock) -> Self {
        self.blocks.push(b);
        self
    }
    /// The cty object type of this block's values.
    pub fn object_type(&self) -> Type {
        let mut attrs: BTreeMap<String, Type> = self
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.ty.clone()))
            .collect();
        for b in &self.blocks {
            let inner = b.block.object_type();
            let ty = match b.nesting {
                Nesting::Single => inner,
                Nesting::List => Type::List(Box::new(inner)),
                Nesting::Set => Type::Set(Box::new(inner)),
            };
            attrs.insert(b.type_name.clone(), ty);
        }
        Type::Object(attrs)
    }
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

impl NestedBlock {
    pub fn list(name: &str, block: Block) -> Self {
        NestedBlock {
            type_name: name.to_string(),
            nesting: Nesting::List,
            block,
            min_items: 0,
            max_items: 0,
            requires_replace: false,
        }
    }
    pub fn single(name: &str, block: Block) -> Self {
        NestedBlock {
            nesting: Nesting::Single,
            ..Self::list(name, block)
        }
    }
    pub fn items(mut self, min: i64, max: i64) -> Self {
        self.min_items = min;
        self.max_items = max;
        self
    }
    pub fn requires_replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }
}

/// A versioned schema: bump `version` and implement the resource's
/// `upgrade_state` when stored state must be migrated.
#[derive(Clone, Debug)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
}

impl Schema {
    pub fn new(version: i64, block: Block) -> Self {
        Schema { version, block }
    }
    pub fn object_type(&self) -> Type {
        self.block.object_type()
    }
}
