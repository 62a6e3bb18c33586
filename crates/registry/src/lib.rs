//! Action definitions loaded from `actions/*.toml`, and parameter validation.
//!
//! An *action* is one operation an agent may ask to run on one inventory target, such as
//! `scale-deployment` on a Kubernetes Deployment. The registry is the closed list of
//! actions agentsafe knows: a request for anything else is denied. Each action is defined
//! in its own TOML file; [`Registry::load`] reads a directory of them, checks every file
//! and every reference between files, and either returns definitions that are known to be
//! consistent or every problem it found, each with its file, line, column and key.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agentsafe_registry::{Params, Registry};
//!
//! let registry = Registry::load(std::path::Path::new("actions"))?;
//! let action = registry.get("scale-deployment").ok_or("unknown action")?;
//! let params: Params = serde_json::from_str(r#"{"namespace": "shop", "name": "web", "replicas": 3}"#)?;
//! let checked = action.validate_params(&params).map_err(|errors| format!("{errors:?}"))?;
//! # let _ = checked; Ok(()) }
//! ```
//!
//! # The file format
//!
//! One action per file, `actions/<name>.toml`. Only `*.toml` files directly in the
//! directory are read (not recursively), in file-name order. Unknown keys are errors
//! everywhere.
//!
//! ```toml
//! name = "scale-deployment"
//! version = "1.0.0"
//! description = "Set the replica count of a Deployment through its scale subresource"
//! risk = "medium"
//! target_types = ["k8s-deployment"]
//! reversible = true
//! rollback_action = "scale-deployment"
//! required_privileges = ["apps/deployments:get", "apps/deployments/scale:patch"]
//! tags = ["kubernetes", "scaling"]
//!
//! [[params]]
//! name = "namespace"
//! type = "string"
//! target_attr = "namespace"
//! description = "Namespace of the Deployment"
//! constraints = { pattern = '[a-z0-9]([-a-z0-9]*[a-z0-9])?', max_length = 63 }
//!
//! [[params]]
//! name = "name"
//! type = "string"
//! target_attr = "name"
//! constraints = { pattern = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*', max_length = 253 }
//!
//! [[params]]
//! name = "replicas"
//! type = "integer"
//! constraints = { min = 0, max = 500 }
//!
//! [rollback_params]
//! namespace = "params.namespace"
//! name = "params.name"
//! replicas = "state.replicas"
//!
//! [[state_fields]]
//! name = "replicas"
//! path = "spec.replicas"
//!
//! [[prechecks]]
//! name = "deployment_exists"
//! description = "The Deployment exists"
//!
//! [credentials]
//! type = "kubernetes"
//! ttl = "15m"
//! [credentials.fields]
//! namespace = "{{ params.namespace }}"
//! verbs = "get,patch"
//! ```
//!
//! ## Top-level keys
//!
//! | key | type | required | meaning |
//! |---|---|---|---|
//! | `name` | string | yes | Unique action name: lowercase letters, digits and `-`, at most 63 characters, not starting or ending with `-`. |
//! | `version` | string | yes | Version of the definition, `MAJOR.MINOR.PATCH`. |
//! | `description` | string | yes | One line for humans. |
//! | `risk` | string | yes | `low`, `medium`, `high` or `critical`: the risk of the action in itself ([`Risk`]). |
//! | `target_types` | array of strings | yes, not empty | Inventory target types the action may act on (`k8s-deployment`, `aws-ec2-instance`, ...). |
//! | `reversible` | boolean | yes | Whether a rollback action undoes the action. `true` requires `rollback_action`, and `rollback_action` requires `true`. |
//! | `rollback_action` | string | when reversible | The action that undoes this one; it must exist in the registry (any file, also this one). |
//! | `required_privileges` | array of strings | no | Backend permissions the action uses (`ec2:StopInstances`, `apps/deployments/scale:patch`). |
//! | `tags` | array of strings | no | Lowercase labels (`kubernetes`, `aws`, `read-only`, `scaling`, ...). |
//! | `params` | array of tables | no | The params, see below. A request may carry nothing else. |
//! | `rollback_params` | table | no | How to fill the params of the rollback action, see below. |
//! | `state_fields` | array of tables | no | What executors capture before and after running, see below. |
//! | `prechecks` | array of tables | no | What executors verify before acting, see below. |
//! | `credentials` | table | no | The short-lived credentials the action runs with, see below. |
//!
//! ## `[[params]]`
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `name` | string | required | snake_case: a lowercase letter, then lowercase letters, digits and `_`. Unique in the action. |
//! | `type` | string | required | `string`, `integer`, `number`, `boolean`, `array` or `object`. `integer` accepts JSON integers only (`3.0` and `"3"` are refused); `number` accepts any JSON number. |
//! | `items` | string | required for arrays | The type of every item of an array: `string`, `integer`, `number`, `boolean` or `object`. Not allowed for other types. |
//! | `required` | boolean | `true` | Whether a request must carry the param. A param with a default never has to. |
//! | `default` | any | none | Applied when the param is omitted. It must satisfy the param's own type and constraints. |
//! | `description` | string | none | For humans. |
//! | `sensitive` | boolean | `false` | The value is redacted (keyed HMAC) in logs and audit records, and never shown in error messages. |
//! | `target_attr` | string | none | Binding: the value must equal this attribute of the inventory target (the decision point fills it from the target when omitted). |
//! | `constraints` | table | none | Checks on the value, see below. |
//!
//! ### `constraints`
//!
//! | key | applies to | meaning |
//! |---|---|---|
//! | `min`, `max` | `integer`, `number`; arrays of them (each item) | Inclusive bounds. Must be integers for integer params. |
//! | `min_length`, `max_length` | `string` (characters); `array` (number of items) | Inclusive length bounds. |
//! | `pattern` | `string`; arrays of strings (each item) | A regular expression ([`regex`] syntax) that must match the **whole** value: it is compiled as `^(?:PATTERN)$`. `\d` and `\w` are Unicode-aware: write `[0-9]` when you mean ASCII digits. Use a TOML literal string (`'...'`) to avoid doubling backslashes. |
//! | `enum` | `string`, `integer`, `number`, `boolean`; arrays of them (each item) | The allowed values, of the param's (item) type; each must also pass the other constraints. |
//!
//! A constraint that does not apply to the param's type (a `pattern` on an integer, a
//! `min` on a string) is a load error, not silently ignored. `object` params take no
//! constraints: the executor must validate their content (declare a precheck for it).
//!
//! ## `[rollback_params]`
//!
//! Each key is a param of the rollback action; each value says where its value comes from:
//!
//! - `"params.NAME"`: the value of param `NAME` of this action (the types must agree);
//! - `"state.FIELD"` or `"state.FIELD.more.path"`: the captured before-state field `FIELD`
//!   of this action, optionally followed by a state path into it.
//!
//! Every required param of the rollback action without a default must be filled.
//!
//! ## `[[state_fields]]`
//!
//! `name` (snake_case, unique) and `path`: where the value lives in the object the
//! backend returns. **Convention:** for Kubernetes the path is relative to the object as
//! the API server returns it (`kubectl get -o json`), such as `spec.replicas`; for AWS it is
//! relative to the response of the describe/get call of the resource, with the field
//! names of the AWS API as the AWS CLI prints them with `--output json`, such as
//! `Reservations[0].Instances[0].State.Name` (`DescribeInstances`) or
//! `services[0].desiredCount` (ECS `DescribeServices`). Every shipped action file names
//! the call it reads in its header comment.
//!
//! Path syntax ([`StatePath`]): dot-separated keys (`[A-Za-z0-9_-]+`), each optionally
//! followed by `[N]` (array index from 0) and `[field=value]` (the first array element whose
//! `field` equals `value`). A key or a selector value may be a template
//! `{{ params.NAME }}` naming a declared param, as in
//! `spec.template.spec.containers[name={{ params.container }}].image` or
//! `data.{{ params.key }}`; the param's value is used as one key and never parsed as path
//! syntax. Empty segments and undeclared params are load errors.
//!
//! ## `[[prechecks]]`
//!
//! `name` (snake_case, unique), `description` (required) and `advisory` (default `false`):
//! an advisory precheck that fails only warns; any other failing precheck stops the run.
//!
//! ## `[credentials]`
//!
//! `type` (the credential provider, free-form: `kubernetes`, `aws`), `ttl` (an integer and
//! a unit `s`, `m` or `h`, such as `90s`, `15m` or `1h`; longer than zero and at most `24h`)
//! and `[credentials.fields]`: provider-specific scope fields whose values are
//! [`Template`]s that may only reference declared params (`"{{ params.namespace }}"`).
//!
//! # Errors
//!
//! Loading collects every problem of every file before failing. Each is a
//! [`Diagnostic`] displayed as `FILE:LINE:COL: KEY: MESSAGE`, for example
//! `actions/foo.toml:12:11: params[1].constraints.pattern: invalid regex `[a-`: unclosed character class`.
//! Keys are dotted paths with array indexes from 0. Reported problems include unknown
//! keys, wrong types, missing required keys, duplicate action names (at the second file,
//! naming the first), unresolvable rollbacks, invalid regexes, defaults and enum values
//! that break their param, constraints that do not fit their type, bad templates, state
//! paths and durations, and inconsistent `reversible`/`rollback_action`.
//!
//! # Content hash
//!
//! [`Registry::content_hash`] is the SHA-256 (hex) of the domain tag
//! `agentsafe/registry/v1` followed by a zero byte and then, for the text of every
//! definition file in byte order of the texts, its length as 8 big-endian bytes and the
//! text. It does not depend on file names or file order, and it is part of the policy-set
//! hash. It hashes the files as written (a comment change changes it) because hashing
//! the canonical JSON of every definition cost most of a short-lived process's load time.

mod error;
mod load;
mod model;
mod path;
mod validate;

use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use agentsafe_core::{Params, Risk};
pub use error::{Diagnostic, RegistryError};
pub use model::{
    ActionDef, Bound, Constraints, CredentialsDef, ItemType, ParamDef, ParamType, Precheck,
    RollbackParam, RollbackSource, StateField,
};
pub use path::{PathKey, PathSegment, StatePath, Template, TemplatePart};
pub use validate::ParamError;

/// The domain tag of [`Registry::content_hash`].
const HASH_DOMAIN: &[u8] = b"agentsafe/registry/v1\0";

/// Every known action, checked and cross-referenced. Only built by loading.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Sorted by name.
    actions: Vec<ActionDef>,
    content_hash: String,
}

impl Registry {
    /// Loads every `*.toml` file directly in `dir`, in file-name order.
    ///
    /// # Errors
    /// [`RegistryError::Io`] when the directory or a file cannot be read;
    /// [`RegistryError::Invalid`] with every problem of every file otherwise.
    pub fn load(dir: &Path) -> Result<Registry, RegistryError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::Io { path, source }
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            sources.push((path.display().to_string(), text));
        }
        Registry::from_sources(&sources)
    }

    /// Loads definitions from `(file name, contents)` pairs with the same checks as
    /// [`Registry::load`]: used for a catalogue embedded in a binary, and for tests.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] with every problem of every source.
    pub fn from_sources<N: AsRef<str>, C: AsRef<str>>(
        sources: &[(N, C)],
    ) -> Result<Registry, RegistryError> {
        let sources: Vec<(String, &str)> = sources
            .iter()
            .map(|(n, c)| (n.as_ref().to_owned(), c.as_ref()))
            .collect();
        let content_hash = content_hash(&sources);
        let actions = load::load_sources(sources).map_err(RegistryError::Invalid)?;
        Ok(Registry {
            actions,
            content_hash,
        })
    }

    /// The action called `name`.
    pub fn get(&self, name: &str) -> Option<&ActionDef> {
        self.actions
            .binary_search_by(|a| a.name().cmp(name))
            .ok()
            .and_then(|i| self.actions.get(i))
    }

    /// Every action, sorted by name.
    pub fn actions(&self) -> impl Iterator<Item = &ActionDef> {
        self.actions.iter()
    }

    /// How many actions there are.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether there is no action at all.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// SHA-256 (hex) over the canonical JSON of every definition, independent of file
    /// names and order: part of the policy-set hash. See the crate docs for the exact input.
    pub fn content_hash(&self) -> String {
        self.content_hash.clone()
    }
}

fn content_hash(sources: &[(String, &str)]) -> String {
    let mut texts: Vec<&str> = sources.iter().map(|(_, text)| *text).collect();
    texts.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(HASH_DOMAIN);
    for text in texts {
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}
