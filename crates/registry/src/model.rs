//! The checked action definitions: what a loaded `actions/*.toml` file becomes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::Risk;
use crate::path::{StatePath, Template};

/// One action of the registry, checked at load time. Only [`crate::Registry`] builds them.
#[derive(Debug, Clone, Serialize)]
pub struct ActionDef {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) risk: Risk,
    pub(crate) target_types: Vec<String>,
    pub(crate) reversible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rollback_action: Option<String>,
    pub(crate) required_privileges: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) params: Vec<ParamDef>,
    #[serde(serialize_with = "rollback_params_as_map")]
    pub(crate) rollback_params: Vec<RollbackParam>,
    pub(crate) state_fields: Vec<StateField>,
    pub(crate) prechecks: Vec<Precheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) credentials: Option<CredentialsDef>,
}

impl ActionDef {
    /// The unique action name, such as `scale-deployment`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The definition's version, `MAJOR.MINOR.PATCH`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A one-line human description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The risk of the action in itself, before looking at its target.
    pub fn risk(&self) -> Risk {
        self.risk
    }

    /// The inventory target types the action may act on.
    pub fn target_types(&self) -> &[String] {
        &self.target_types
    }

    /// The declared params, in file order.
    pub fn params(&self) -> &[ParamDef] {
        &self.params
    }

    /// The declared param called `name`.
    pub fn param(&self, name: &str) -> Option<&ParamDef> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Whether a rollback action undoes this action.
    pub fn reversible(&self) -> bool {
        self.reversible
    }

    /// The action that undoes this one; always present when [`Self::reversible`] is true.
    pub fn rollback_action(&self) -> Option<&str> {
        self.rollback_action.as_deref()
    }

    /// How the params of the rollback action are filled, sorted by rollback param name.
    pub fn rollback_params(&self) -> &[RollbackParam] {
        &self.rollback_params
    }

    /// The state executors capture before and after running the action.
    pub fn state_fields(&self) -> &[StateField] {
        &self.state_fields
    }

    /// The checks an executor runs before acting.
    pub fn prechecks(&self) -> &[Precheck] {
        &self.prechecks
    }

    /// The short-lived credentials the action runs with.
    pub fn credentials(&self) -> Option<&CredentialsDef> {
        self.credentials.as_ref()
    }

    /// The backend permissions the action uses.
    pub fn required_privileges(&self) -> &[String] {
        &self.required_privileges
    }

    /// Free-form labels such as `kubernetes` or `read-only`.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether the action may act on targets of `target_type`.
    pub fn supports_target_type(&self, target_type: &str) -> bool {
        self.target_types.iter().any(|t| t == target_type)
    }

    /// The names of the params whose values are redacted in logs and audit records.
    pub fn sensitive_params(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .filter(|p| p.sensitive)
            .map(|p| p.name.as_str())
    }

    /// The params bound to an attribute of the inventory target, as `(param, attribute)`.
    pub fn target_bindings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.target_attr.as_deref()?)))
    }

    /// The definition as JSON, with the field names of the action file.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn rollback_params_as_map<S: Serializer>(
    params: &[RollbackParam],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(params.len()))?;
    for p in params {
        map.serialize_entry(&p.name, &p.source)?;
    }
    map.end()
}

/// The JSON type of a param.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    /// A JSON string.
    String,
    /// A JSON integer (a float such as `3.0` is refused).
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON array whose items all have the given type.
    Array(ItemType),
    /// A JSON object.
    Object,
}

impl ParamType {
    /// The name used for `type` in action files.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Array(_) => "array",
            ParamType::Object => "object",
        }
    }

    /// The item type of an array param.
    pub fn items(self) -> Option<ItemType> {
        match self {
            ParamType::Array(item) => Some(item),
            _ => None,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamType::Array(item) => write!(f, "array of {item}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// The type of the items of an array param.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemType {
    /// A JSON string.
    String,
    /// A JSON integer.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON object.
    Object,
}

impl ItemType {
    /// The name used for `items` in action files.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::String => "string",
            ItemType::Integer => "integer",
            ItemType::Number => "number",
            ItemType::Boolean => "boolean",
            ItemType::Object => "object",
        }
    }

    /// The same type as a [`ParamType`].
    pub fn as_param_type(self) -> ParamType {
        match self {
            ItemType::String => ParamType::String,
            ItemType::Integer => ParamType::Integer,
            ItemType::Number => ParamType::Number,
            ItemType::Boolean => ParamType::Boolean,
            ItemType::Object => ParamType::Object,
        }
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A declared param of an action.
#[derive(Debug, Clone)]
pub struct ParamDef {
    pub(crate) name: String,
    pub(crate) param_type: ParamType,
    pub(crate) required: bool,
    pub(crate) default: Option<Value>,
    pub(crate) description: Option<String>,
    pub(crate) constraints: Constraints,
    pub(crate) sensitive: bool,
    pub(crate) target_attr: Option<String>,
}

impl ParamDef {
    /// The param name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared type.
    pub fn param_type(&self) -> ParamType {
        self.param_type
    }

    /// Whether a request must carry it (a param with a default never needs to).
    pub fn required(&self) -> bool {
        self.required
    }

    /// The value applied when the param is omitted; it satisfies the param's type and constraints.
    pub fn default(&self) -> Option<&Value> {
        self.default.as_ref()
    }

    /// A human description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The checks a value must pass.
    pub fn constraints(&self) -> &Constraints {
        &self.constraints
    }

    /// Whether the value is redacted (keyed HMAC) in logs and audit records.
    pub fn sensitive(&self) -> bool {
        self.sensitive
    }

    /// The inventory target attribute the value must equal.
    pub fn target_attr(&self) -> Option<&str> {
        self.target_attr.as_deref()
    }
}

impl Serialize for ParamDef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            name: &'a str,
            #[serde(rename = "type")]
            param_type: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            items: Option<ItemType>,
            required: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            default: Option<&'a Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            sensitive: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            target_attr: Option<&'a str>,
            #[serde(skip_serializing_if = "Constraints::is_empty")]
            constraints: &'a Constraints,
        }
        Json {
            name: &self.name,
            param_type: self.param_type.as_str(),
            items: self.param_type.items(),
            required: self.required,
            default: self.default.as_ref(),
            description: self.description.as_deref(),
            sensitive: self.sensitive,
            target_attr: self.target_attr.as_deref(),
            constraints: &self.constraints,
        }
        .serialize(serializer)
    }
}

/// A numeric bound of `min` or `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// A bound of an integer param.
    Integer(i64),
    /// A bound of a number param.
    Number(f64),
}

impl Bound {
    /// The bound as a float.
    #[expect(
        clippy::cast_precision_loss,
        reason = "bounds beyond 2^53 are not meaningful for floats"
    )]
    pub fn as_f64(self) -> f64 {
        match self {
            Bound::Integer(i) => i as f64,
            Bound::Number(f) => f,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Integer(i) => write!(f, "{i}"),
            Bound::Number(x) => write!(f, "{x}"),
        }
    }
}

impl Serialize for Bound {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Bound::Integer(i) => serializer.serialize_i64(*i),
            Bound::Number(f) => serializer.serialize_f64(*f),
        }
    }
}

/// A regular expression that must match a whole value.
///
/// Its syntax is checked when the registry loads; it is compiled on first use and the
/// compiled form is shared by every param with the same pattern. Compiling all of the
/// catalogue's patterns up front would cost a short-lived `agentsafe check` process
/// several milliseconds for patterns it never uses.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub(crate) source: String,
    compiled: std::sync::Arc<std::sync::OnceLock<Option<Regex>>>,
}

impl Pattern {
    /// Checks the syntax of `source`; the error is the one-line cause.
    pub(crate) fn new(source: &str) -> Result<Pattern, String> {
        // Parse what the user wrote, so the message refers to it; when it parses, so
        // does the anchored form compiled later.
        regex_syntax::parse(source).map_err(|e| one_line(&e.to_string()))?;
        Ok(Pattern {
            source: source.to_owned(),
            compiled: std::sync::Arc::default(),
        })
    }

    /// Whether `value` matches as a whole. A pattern that parses but cannot be compiled
    /// (over the size limit) matches nothing: validation fails closed.
    pub(crate) fn is_match(&self, value: &str) -> bool {
        self.compiled
            .get_or_init(|| Regex::new(&format!("^(?:{})$", self.source)).ok())
            .as_ref()
            .is_some_and(|r| r.is_match(value))
    }
}

/// The one-line cause of a regex error (the crate's own message spans several lines).
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.lines().next().unwrap_or_default().to_owned(),
            str::to_owned,
        )
}

/// The checks of a param: numeric bounds, lengths, a pattern and allowed values.
///
/// For arrays, `min_length`/`max_length` bound the number of items and the other
/// checks apply to each item.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Constraints {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min: Option<Bound>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max: Option<Bound>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min_length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_length: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "pattern_source"
    )]
    pub(crate) pattern: Option<Pattern>,
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    pub(crate) enum_values: Option<Vec<Value>>,
}

fn pattern_source<S: Serializer>(
    pattern: &Option<Pattern>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match pattern {
        Some(p) => serializer.serialize_str(&p.source),
        None => serializer.serialize_none(),
    }
}

impl Constraints {
    /// The smallest allowed value (each item, for arrays).
    pub fn min(&self) -> Option<Bound> {
        self.min
    }

    /// The largest allowed value (each item, for arrays).
    pub fn max(&self) -> Option<Bound> {
        self.max
    }

    /// The least number of characters of a string, or of items of an array.
    pub fn min_length(&self) -> Option<u64> {
        self.min_length
    }

    /// The largest number of characters of a string, or of items of an array.
    pub fn max_length(&self) -> Option<u64> {
        self.max_length
    }

    /// The regular expression that must match the whole value (each string item, for arrays),
    /// as written in the action file.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_ref().map(|p| p.source.as_str())
    }

    /// The allowed values (for each item, for arrays).
    pub fn enum_values(&self) -> Option<&[Value]> {
        self.enum_values.as_deref()
    }

    /// Whether no constraint is set.
    pub fn is_empty(&self) -> bool {
        self.min.is_none()
            && self.max.is_none()
            && self.min_length.is_none()
            && self.max_length.is_none()
            && self.pattern.is_none()
            && self.enum_values.is_none()
    }
}

/// Where a param of the rollback action comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackSource {
    /// `params.NAME`: a param of this action.
    Param(String),
    /// `state.FIELD[.more.path]`: a captured before-state field, optionally followed by a
    /// path into it. The path's first segment is the state field name.
    State(StatePath),
}

impl RollbackSource {
    /// The state field a `state.` source reads.
    pub fn state_field(&self) -> Option<&str> {
        match self {
            RollbackSource::State(path) => match path.segments().first() {
                Some(crate::path::PathSegment::Key(crate::path::PathKey::Literal(name))) => {
                    Some(name)
                }
                _ => None,
            },
            RollbackSource::Param(_) => None,
        }
    }

    /// Resolves the source against this action's params and its captured before-state
    /// (an object keyed by state field name).
    pub fn resolve<'a>(
        &self,
        params: &'a crate::Params,
        before_state: &'a crate::Params,
    ) -> Option<&'a Value> {
        match self {
            RollbackSource::Param(name) => params.get(name),
            RollbackSource::State(path) => {
                let field = before_state.get(self.state_field()?)?;
                path.resolve_from(1, field, params)
            }
        }
    }
}

impl fmt::Display for RollbackSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackSource::Param(name) => write!(f, "params.{name}"),
            RollbackSource::State(path) => write!(f, "state.{path}"),
        }
    }
}

impl Serialize for RollbackSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One param of the rollback action and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackParam {
    pub(crate) name: String,
    pub(crate) source: RollbackSource,
}

impl RollbackParam {
    /// The param name of the rollback action.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its value comes from.
    pub fn source(&self) -> &RollbackSource {
        &self.source
    }
}

/// A piece of backend state captured before and after the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateField {
    pub(crate) name: String,
    pub(crate) path: StatePath,
}

impl StateField {
    /// The field name, used by `state.NAME` rollback sources.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the value lives in the backend object.
    pub fn path(&self) -> &StatePath {
        &self.path
    }
}

/// A check the executor runs before acting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Precheck {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) advisory: bool,
}

impl Precheck {
    /// The snake_case check name, such as `deployment_exists`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the check verifies.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether a failure only warns instead of stopping the run.
    pub fn advisory(&self) -> bool {
        self.advisory
    }
}

/// The short-lived credentials an action runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialsDef {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(rename = "ttl")]
    pub(crate) ttl_source: String,
    #[serde(skip)]
    pub(crate) ttl: Duration,
    pub(crate) fields: BTreeMap<String, Template>,
}

impl CredentialsDef {
    /// The provider type, such as `kubernetes` or `aws`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// How long the credentials live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Provider-specific scope fields, as templates over the action's params.
    pub fn fields(&self) -> &BTreeMap<String, Template> {
        &self.fields
    }
}
