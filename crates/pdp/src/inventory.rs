//! The target inventory (`inventory.toml`): what exists, where it is, and how sensitive it is.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use agentsafe_core::Sensitivity;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{PdpError, Source};

/// Attributes each built-in target type must carry (and the only ones it may carry).
///
/// Types not listed here are custom types for executors written by integrators:
/// they may carry any attributes.
pub const TARGET_TYPES: &[(&str, &[&str])] = &[
    ("k8s-cluster", &["cluster"]),
    ("k8s-namespace", &["cluster", "namespace"]),
    ("k8s-deployment", &["cluster", "namespace", "name"]),
    ("k8s-hpa", &["cluster", "namespace", "name"]),
    ("k8s-node", &["cluster", "node"]),
    ("aws-ec2-instance", &["account", "region", "instance_id"]),
    (
        "aws-ecs-service",
        &["account", "region", "cluster", "service"],
    ),
    ("aws-ecs-cluster", &["account", "region", "cluster"]),
    (
        "aws-lambda-function",
        &["account", "region", "function_name"],
    ),
    ("aws-s3-bucket", &["account", "region", "bucket"]),
    ("aws-iam-role", &["account", "region", "role_name"]),
];

/// The attributes a built-in target type requires, or `None` for a custom type.
pub fn type_attributes(target_type: &str) -> Option<&'static [&'static str]> {
    TARGET_TYPES
        .iter()
        .find(|(t, _)| *t == target_type)
        .map(|(_, attrs)| *attrs)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    targets: Vec<TargetToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetToml {
    id: Spanned<String>,
    #[serde(rename = "type")]
    target_type: Spanned<String>,
    environment: String,
    sensitivity: Sensitivity,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    attributes: Option<Spanned<BTreeMap<String, String>>>,
}

/// One target: an object an action can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    id: String,
    #[serde(rename = "type")]
    target_type: Arc<str>,
    environment: Arc<str>,
    sensitivity: Sensitivity,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    labels: BTreeMap<String, String>,
    attributes: BTreeMap<String, String>,
    /// By registry position: whether every attribute an action binds is a valid value for
    /// its param, checked once by `Pdp::new` so decisions need not re-check bound values.
    #[serde(skip)]
    pub(crate) bound_ok: Vec<bool>,
}

impl Target {
    /// The target id, such as `prod/payments`.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The target type, such as `k8s-deployment`.
    pub fn target_type(&self) -> &str {
        &self.target_type
    }
    /// The environment, such as `prod`.
    pub fn environment(&self) -> &str {
        &self.environment
    }
    /// How sensitive the target is.
    pub fn sensitivity(&self) -> Sensitivity {
        self.sensitivity
    }
    /// The owning team, if given.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
    /// Free-form labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    /// The attributes that locate the target (namespace, name, region, ...).
    pub fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }
    /// One attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
    pub(crate) fn environment_interned(&self) -> &Arc<str> {
        &self.environment
    }
    pub(crate) fn type_interned(&self) -> &Arc<str> {
        &self.target_type
    }
    pub(crate) fn type_arc(&self) -> Arc<str> {
        Arc::clone(&self.target_type)
    }
    pub(crate) fn environment_arc(&self) -> Arc<str> {
        Arc::clone(&self.environment)
    }
}

/// Shares one allocation per distinct name, so interned names compare by pointer.
#[derive(Debug, Default)]
pub(crate) struct Interner(HashMap<Arc<str>, (), foldhash::fast::RandomState>);

impl Interner {
    /// The shared allocation for `name`, created on first sight.
    pub(crate) fn get(&mut self, name: &Arc<str>) -> Arc<str> {
        if let Some((known, ())) = self.0.get_key_value(name) {
            return Arc::clone(known);
        }
        self.0.insert(Arc::clone(name), ());
        Arc::clone(name)
    }
}

/// Every known target, by id.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    targets: HashMap<String, Target, foldhash::fast::RandomState>,
}

impl Inventory {
    /// Reads an inventory file.
    ///
    /// # Errors
    /// When the file cannot be read or is invalid; every problem is listed with file, line and key.
    pub fn load(path: &Path) -> Result<Inventory, PdpError> {
        let text = std::fs::read_to_string(path).map_err(|source| PdpError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Inventory::parse(&path.display().to_string(), &text)
    }

    /// Parses inventory text; `file` names it in errors.
    ///
    /// # Errors
    /// When the text is invalid; every problem is listed.
    pub fn parse(file: &str, text: &str) -> Result<Inventory, PdpError> {
        let src = Source::new(file, text);
        let parsed: InventoryFile =
            toml::from_str(text).map_err(|e| PdpError::Invalid(vec![src.toml_problem(&e)]))?;
        let mut problems = Vec::new();
        let mut targets: HashMap<String, Target, foldhash::fast::RandomState> = HashMap::default();
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        for (i, t) in parsed.targets.into_iter().enumerate() {
            let key = |k: &str| format!("targets[{i}].{k}");
            let id = t.id.get_ref().clone();
            if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push(src.problem(
                    Some(t.id.span()),
                    key("id"),
                    format!("target id `{id}` must be non-empty without white space"),
                ));
            }
            if let Some(first) = first_seen.get(&id) {
                problems.push(src.problem(
                    Some(t.id.span()),
                    key("id"),
                    format!("duplicate target id `{id}` (first defined in targets[{first}])"),
                ));
                continue;
            }
            first_seen.insert(id.clone(), i);
            let ty = t.target_type.get_ref();
            let attrs_span = t
                .attributes
                .as_ref()
                .map_or_else(|| t.id.span(), Spanned::span);
            let attributes = t.attributes.map(Spanned::into_inner).unwrap_or_default();
            if let Some(required) = type_attributes(ty) {
                let attrs = &attributes;
                for name in required {
                    if !attrs.contains_key(*name) {
                        problems.push(src.problem(
                            Some(t.target_type.span()),
                            key("attributes"),
                            format!("a `{ty}` target needs the attribute `{name}`"),
                        ));
                    }
                }
                for name in attrs.keys() {
                    if !required.contains(&name.as_str()) {
                        problems.push(src.problem(
                            Some(attrs_span.clone()),
                            key(&format!("attributes.{name}")),
                            format!(
                                "unknown attribute `{name}` for a `{ty}` target, expected one of {}",
                                required.join(", ")
                            ),
                        ));
                    }
                }
            }
            for (name, value) in &attributes {
                if value.is_empty() {
                    problems.push(src.problem(
                        Some(attrs_span.clone()),
                        key(&format!("attributes.{name}")),
                        "attribute values must not be empty",
                    ));
                }
            }
            targets.insert(
                id.clone(),
                Target {
                    id,
                    target_type: Arc::from(ty.as_str()),
                    environment: Arc::from(t.environment.as_str()),
                    sensitivity: t.sensitivity,
                    owner: t.owner,
                    description: t.description,
                    labels: t.labels,
                    attributes,
                    bound_ok: Vec::new(),
                },
            );
        }
        if problems.is_empty() {
            Ok(Inventory { targets })
        } else {
            Err(PdpError::Invalid(problems))
        }
    }

    /// Builds an inventory from targets already in memory (for generated configs and tests).
    pub fn from_targets(targets: impl IntoIterator<Item = Target>) -> Inventory {
        Inventory {
            targets: targets.into_iter().map(|t| (t.id.clone(), t)).collect(),
        }
    }

    /// Every target, mutably (for `Pdp::new`'s precomputation).
    pub(crate) fn targets_mut(&mut self) -> impl Iterator<Item = &mut Target> {
        self.targets.values_mut()
    }

    /// Interns every target's environment and type name (see [`Interner`]).
    pub(crate) fn intern(&mut self, interner: &mut Interner) {
        for t in self.targets.values_mut() {
            t.environment = interner.get(&t.environment);
            t.target_type = interner.get(&t.target_type);
        }
    }

    /// The target with this id.
    pub fn get(&self, id: &str) -> Option<&Target> {
        self.targets.get(id)
    }

    /// Every target, sorted by id.
    pub fn targets(&self) -> Vec<&Target> {
        let mut all: Vec<&Target> = self.targets.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

impl Target {
    /// Builds a target in memory. Attributes are not checked against the type here;
    /// [`Inventory::parse`] checks them for files.
    pub fn new(
        id: impl Into<String>,
        target_type: &str,
        environment: &str,
        sensitivity: Sensitivity,
        labels: BTreeMap<String, String>,
        attributes: BTreeMap<String, String>,
    ) -> Target {
        Target {
            id: id.into(),
            target_type: Arc::from(target_type),
            environment: Arc::from(environment),
            sensitivity,
            owner: None,
            description: None,
            labels,
            attributes,
            bound_ok: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match Inventory::parse("inventory.toml", text) {
            Ok(_) => String::from("ok"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_a_target() {
        let inv = Inventory::parse(
            "inventory.toml",
            r#"
[[targets]]
id = "prod/api"
type = "k8s-deployment"
environment = "prod"
sensitivity = "critical"
labels = { tier = "web" }
attributes = { cluster = "c1", namespace = "prod", name = "api" }
"#,
        )
        .unwrap();
        let t = inv.get("prod/api").unwrap();
        assert_eq!(t.attribute("namespace"), Some("prod"));
        assert_eq!(t.sensitivity(), Sensitivity::Critical);
    }

    /// Every built-in type carries the attributes that say where it is: the executors
    /// refuse a ticket whose location is not where they are connected.
    #[test]
    fn every_built_in_type_carries_its_location() {
        for (target_type, attrs) in TARGET_TYPES {
            let location: &[&str] = if target_type.starts_with("k8s-") {
                &["cluster"]
            } else {
                assert!(target_type.starts_with("aws-"), "{target_type}");
                &["account", "region"]
            };
            for attr in location {
                assert!(attrs.contains(attr), "{target_type} lacks `{attr}`");
            }
        }
        let e = err(
            "[[targets]]\nid = \"a\"\ntype = \"k8s-namespace\"\nenvironment = \"p\"\nsensitivity = \"public\"\nattributes = { namespace = \"n\" }\n",
        );
        assert!(e.contains("needs the attribute `cluster`"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err(
            "[[targets]]\nid = \"a\"\ntype = \"x\"\nenvironment = \"p\"\nsensitivity = \"public\"\nenviroment = \"q\"\n",
        );
        assert!(e.starts_with("inventory.toml:6:1:"), "{e}");
        assert!(e.contains("unknown field `enviroment`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e =
            err("[[targets]]\nid = \"a\"\ntype = \"x\"\nenvironment = \"p\"\nsensitivity = 3\n");
        assert!(e.starts_with("inventory.toml:5:15: sensitivity:"), "{e}");
    }

    #[test]
    fn missing_and_unknown_attributes_and_duplicates() {
        let e = err(r#"
[[targets]]
id = "a"
type = "k8s-deployment"
environment = "p"
sensitivity = "public"
attributes = { cluster = "c", namespace = "n", nmae = "x" }

[[targets]]
id = "a"
type = "k8s-node"
environment = "p"
sensitivity = "public"
attributes = { cluster = "c", node = "n" }
"#);
        assert!(e.contains("needs the attribute `name`"), "{e}");
        assert!(
            e.contains("targets[0].attributes.nmae: unknown attribute `nmae`"),
            "{e}"
        );
        assert!(
            e.contains(":10:6: targets[1].id: duplicate target id `a`"),
            "{e}"
        );
    }
}
