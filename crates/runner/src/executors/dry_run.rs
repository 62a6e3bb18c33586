//! The dry-run executor: a simulated world in a JSON file, real enough that runs change it,
//! state capture reads it through the catalogue's state paths, and rollback restores it.
//!
//! # Semantics
//! * The world is `<state dir>/dry-run-world.json`: `{"objects": {TARGET_ID: OBJECT}}`, and
//!   optionally `"failing_prechecks": {TARGET_ID: {CHECK: "why"}}` to simulate a failing
//!   check. It is created on the first execution.
//! * An object missing from the file is seeded from the inventory target (kind, name,
//!   namespace or region from its type and attributes); every state path the action
//!   declares is then filled with a plausible value (`replicas` 3, an `image`, `state`
//!   `running`, ...), following the path's keys, indexes and `[field=value]` selectors with
//!   the params substituted. Seeding is deterministic, so reading never needs to write.
//! * `capture_state` and `precheck` only read. A check named in `failing_prechecks` fails;
//!   any other passes with a detail that says it was simulated, except `*_exists`, which
//!   fails for a target the inventory does not know.
//! * `execute` (at most once per ticket) applies the action and writes the file back
//!   atomically (temporary file, then rename):
//!   - a param with the name of one of the action's state fields sets that field
//!     (`scale-deployment` `replicas` → `spec.replicas`, `update-image` `image`, ...), and
//!     the replica counters that follow a desired count (`ready_replicas`,
//!     `available_replicas`, `updated_replicas`, `running_count`) take the new value;
//!   - a few actions have their own effect: cordon, drain and uncordon set
//!     `unschedulable`; EC2 start, stop, reboot and terminate set `state`; namespace
//!     create and delete set `phase`; ECS stop-task sets its statuses; IAM attach and
//!     detach edit `attached_policies`; restart, update-image and rollout-undo bump
//!     `generation`;
//!   - every action not tagged `read-only` bumps `resource_version` when it declares one.
//! * Read-only actions change nothing and report which state they read. Secret values
//!   are never simulated: `get-secret` reports key names only.
//! * Concurrent runs in several processes may race on the file (last writer wins): this is
//!   a simulator, the ticket store still guarantees each ticket executes once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentsafe_core::executor::async_trait;
use agentsafe_core::{
    ActionContext, ActionSupport, Cancel, CoreError, Credentials, ExecutionReport, Executor,
    Params, PrecheckResult,
};
use agentsafe_registry::{ActionDef, PathSegment, Registry, StateField};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The executor name.
pub const NAME: &str = "dry-run";

/// The file name of the simulated world inside the state folder.
pub const WORLD_FILE: &str = "dry-run-world.json";

/// The simulated world as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// Objects keyed by target id.
    #[serde(default)]
    pub objects: BTreeMap<String, Value>,
    /// Checks that fail, keyed by target id then check name, with the reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failing_prechecks: BTreeMap<String, BTreeMap<String, String>>,
}

/// The dry-run executor. See the module documentation for its semantics.
#[derive(Debug, Clone)]
pub struct DryRunExecutor {
    path: PathBuf,
    registry: Arc<Registry>,
}

impl DryRunExecutor {
    /// An executor whose world lives in `state_dir`, for the actions of `registry`.
    pub fn new(state_dir: &Path, registry: Arc<Registry>) -> DryRunExecutor {
        DryRunExecutor {
            path: state_dir.join(WORLD_FILE),
            registry,
        }
    }

    /// The world file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn backend(&self, message: impl Into<String>) -> CoreError {
        CoreError::ExecutorBackend {
            executor: NAME.into(),
            message: message.into(),
        }
    }

    /// Reads the world (empty when the file does not exist yet).
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn load(&self) -> Result<World, CoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                self.backend(format!("invalid world file `{}`: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(World::default()),
            Err(e) => Err(self.backend(format!("cannot read `{}`: {e}", self.path.display()))),
        }
    }

    /// Writes the world atomically.
    ///
    /// # Errors
    /// When the folder or file cannot be written.
    pub fn save(&self, world: &World) -> Result<(), CoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| self.backend(format!("cannot create `{}`: {e}", dir.display())))?;
        let bytes = serde_json::to_vec_pretty(world).map_err(|e| self.backend(e.to_string()))?;
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| self.backend(format!("cannot write `{}`: {e}", self.path.display())))
    }

    fn action(&self, ctx: &ActionContext) -> Result<&ActionDef, CoreError> {
        self.registry
            .get(&ctx.action)
            .ok_or_else(|| CoreError::ExecutorUnsupported {
                executor: NAME.into(),
                action: ctx.action.clone(),
            })
    }

    /// The target's object as stored, or seeded, with every state path of the action filled.
    fn object(&self, world: &World, def: &ActionDef, ctx: &ActionContext) -> Value {
        let mut obj = world
            .objects
            .get(&ctx.target)
            .cloned()
            .unwrap_or_else(|| seed(ctx));
        for field in def.state_fields() {
            if let Some(slot) = slot(&mut obj, field.path().segments(), &ctx.params)
                && slot.is_null()
            {
                *slot = plausible(field.name(), ctx);
            }
        }
        obj
    }
}

#[async_trait]
impl Executor for DryRunExecutor {
    fn name(&self) -> &str {
        NAME
    }

    fn supported_actions(&self) -> ActionSupport {
        ActionSupport::All
    }

    async fn precheck(
        &self,
        ctx: &ActionContext,
        check: &str,
        _credentials: &Credentials,
    ) -> Result<PrecheckResult, CoreError> {
        let world = self.load()?;
        if let Some(why) = world
            .failing_prechecks
            .get(&ctx.target)
            .and_then(|m| m.get(check))
        {
            return Ok(PrecheckResult::Failed(format!("simulated failure: {why}")));
        }
        if check.ends_with("_exists") && !check.ends_with("_does_not_exist") {
            return Ok(if ctx.target_type.is_some() {
                PrecheckResult::Passed(format!(
                    "simulated: `{}` exists in the dry-run world",
                    ctx.target
                ))
            } else {
                PrecheckResult::Failed(format!(
                    "`{}` is not in the inventory, so the dry-run world has no such object",
                    ctx.target
                ))
            });
        }
        Ok(PrecheckResult::Passed(
            "simulated: the dry-run world has no such constraint".into(),
        ))
    }

    async fn capture_state(
        &self,
        ctx: &ActionContext,
        _credentials: &Credentials,
    ) -> Result<Value, CoreError> {
        let def = self.action(ctx)?;
        let world = self.load()?;
        Ok(self.object(&world, def, ctx))
    }

    async fn execute(
        &self,
        ctx: &ActionContext,
        _credentials: &Credentials,
        cancel: &Cancel,
    ) -> Result<ExecutionReport, CoreError> {
        if cancel.is_cancelled() {
            return Err(CoreError::ExecutorCancelled);
        }
        let def = self.action(ctx)?;
        let mut world = self.load()?;
        let mut obj = self.object(&world, def, ctx);
        let changes = apply(def, ctx, &mut obj);
        if def.tags().iter().any(|t| t == "read-only") {
            let read: Vec<&str> = def.state_fields().iter().map(StateField::name).collect();
            return Ok(ExecutionReport {
                summary: format!(
                    "dry-run: read {} on {} (nothing changed)",
                    def.name(),
                    ctx.target
                ),
                output: json!({ "read_state_fields": read }),
            });
        }
        world.objects.insert(ctx.target.clone(), obj);
        self.save(&world)?;
        let described: Vec<String> = changes
            .iter()
            .map(|(k, (b, a))| format!("{k} {b} → {a}"))
            .collect();
        Ok(ExecutionReport {
            summary: if described.is_empty() {
                format!("dry-run: {} on {}", def.name(), ctx.target)
            } else {
                format!(
                    "dry-run: {} on {}: {}",
                    def.name(),
                    ctx.target,
                    described.join(", ")
                )
            },
            output: json!({
                "world": self.path.display().to_string(),
                "changed": changes
                    .iter()
                    .map(|(k, (b, a))| (k.clone(), json!({"before": b, "after": a})))
                    .collect::<Map<String, Value>>(),
            }),
        })
    }

    async fn dry_run(
        &self,
        ctx: &ActionContext,
        _credentials: &Credentials,
    ) -> Result<Option<Value>, CoreError> {
        let def = self.action(ctx)?;
        let world = self.load()?;
        let mut obj = self.object(&world, def, ctx);
        let changes = apply(def, ctx, &mut obj);
        Ok(Some(json!({
            "would_change": changes
                .into_iter()
                .map(|(k, (b, a))| (k, json!({"before": b, "after": a})))
                .collect::<Map<String, Value>>(),
        })))
    }
}

/// The object a target starts as, from its inventory type and attributes.
fn seed(ctx: &ActionContext) -> Value {
    let attr = |k: &str| ctx.attributes.get(k).cloned().map(Value::String);
    let ty = ctx.target_type.as_deref().unwrap_or("unknown");
    if let Some(kind) = ty.strip_prefix("k8s-") {
        let mut metadata = Map::new();
        for k in ["name", "namespace"] {
            if let Some(v) = attr(k) {
                metadata.insert(k.into(), v);
            }
        }
        if kind == "namespace"
            && let Some(v) = attr("namespace")
        {
            metadata.insert("name".into(), v);
        }
        json!({ "kind": kind, "metadata": metadata })
    } else {
        let mut m = Map::new();
        for (k, v) in &ctx.attributes {
            m.insert(format!("_{k}"), Value::String(v.clone()));
        }
        Value::Object(m)
    }
}

/// A believable starting value for a state field, by its name.
fn plausible(name: &str, ctx: &ActionContext) -> Value {
    let ty = ctx.target_type.as_deref().unwrap_or("");
    match name {
        "min_replicas" => json!(2),
        "max_replicas" => json!(10),
        n if n.contains("replicas") || n.ends_with("_count") => json!(3),
        "image" => json!("registry.example.com/app:1.0.0"),
        "generation" | "observed_generation" => json!(1),
        "resource_version" => json!("1"),
        "phase" if ty == "k8s-namespace" => json!("Active"),
        "phase" => json!("Running"),
        "state" if ty == "aws-lambda-function" => json!("Active"),
        "state" => json!("running"),
        "unschedulable" => json!(false),
        "ready" => json!("True"),
        "memory_size" => json!(128),
        "timeout" => json!(30),
        "policy" => json!(r#"{"Version":"2012-10-17","Statement":[]}"#),
        "value" => json!("simulated-value"),
        "task_definition" => json!("arn:aws:ecs:eu-west-1:123456789012:task-definition/app:1"),
        "type" => json!("Opaque"),
        "uid" => json!("00000000-0000-4000-8000-000000000001"),
        "launch_time" | "last_modified" => json!("2026-01-01T00:00:00Z"),
        "instance_type" => json!("t3.medium"),
        "private_ip_address" => json!("10.0.0.10"),
        "pod_ip" => json!("10.1.0.10"),
        "node_name" => json!("node-1"),
        "etag" => json!("\"0123456789abcdef\""),
        "content_length" => json!(1024),
        "version_id" => json!("v1"),
        "version" => json!("$LATEST"),
        "last_update_status" => json!("Successful"),
        "last_status" | "desired_status" => json!("RUNNING"),
        "group" => json!("service:app"),
        "labels" | "tags" | "spec" => json!({}),
        "taints"
        | "conditions"
        | "containers"
        | "container_statuses"
        | "deployments"
        | "block_device_mappings"
        | "owner_references"
        | "attached_policies" => json!([]),
        _ => json!("simulated"),
    }
}

/// The value at `segments` inside `obj`, creating objects and arrays on the way.
/// `None` when an existing value has the wrong shape (it is never overwritten).
fn slot<'v>(
    obj: &'v mut Value,
    segments: &[PathSegment],
    params: &Params,
) -> Option<&'v mut Value> {
    let mut current = obj;
    for segment in segments {
        match segment {
            PathSegment::Key(key) => {
                if current.is_null() {
                    *current = Value::Object(Map::new());
                }
                let key = key.resolve(params)?.into_owned();
                current = current.as_object_mut()?.entry(key).or_insert(Value::Null);
            }
            PathSegment::Index(i) => {
                if current.is_null() {
                    *current = Value::Array(Vec::new());
                }
                let items = current.as_array_mut()?;
                while items.len() <= *i {
                    items.push(Value::Object(Map::new()));
                }
                current = items.get_mut(*i)?;
            }
            PathSegment::Select { field, value } => {
                if current.is_null() {
                    *current = Value::Array(Vec::new());
                }
                let wanted = value.resolve(params)?.into_owned();
                let items = current.as_array_mut()?;
                let pos = items.iter().position(|item| match item.get(field) {
                    Some(Value::String(s)) => *s == wanted,
                    Some(other) => {
                        // The registry compares non-string values by their JSON text too.
                        let text = other.to_string();
                        text == wanted
                    }
                    None => false,
                });
                let pos = match pos {
                    Some(p) => p,
                    None => {
                        items.push(json!({ field.clone(): wanted }));
                        items.len().saturating_sub(1)
                    }
                };
                current = items.get_mut(pos)?;
            }
        }
    }
    Some(current)
}

/// Applies the action to `obj`; returns the changed state fields as `(before, after)`.
fn apply(
    def: &ActionDef,
    ctx: &ActionContext,
    obj: &mut Value,
) -> BTreeMap<String, (Value, Value)> {
    let mut wanted: BTreeMap<String, Value> = BTreeMap::new();
    let fields = def.state_fields();
    let has = |n: &str| fields.iter().any(|f| f.name() == n);
    let current = |obj: &Value, n: &str| -> Value {
        fields
            .iter()
            .find(|f| f.name() == n)
            .and_then(|f| f.path().resolve(obj, &ctx.params))
            .cloned()
            .unwrap_or(Value::Null)
    };
    if def.tags().iter().any(|t| t == "read-only") {
        return BTreeMap::new();
    }
    for f in fields {
        if let Some(v) = ctx.params.get(f.name()).filter(|v| !v.is_null()) {
            wanted.insert(f.name().to_owned(), v.clone());
        }
    }
    for (lead, followers) in [
        (
            "replicas",
            &["ready_replicas", "available_replicas", "updated_replicas"][..],
        ),
        ("desired_count", &["running_count"][..]),
    ] {
        if let Some(v) = wanted.get(lead).cloned() {
            for f in followers.iter().filter(|f| has(f)) {
                wanted.insert((*f).to_owned(), v.clone());
            }
        }
    }
    let mut set = |k: &str, v: Value| {
        if has(k) {
            wanted.insert(k.to_owned(), v);
        }
    };
    match def.name() {
        "cordon-node" | "drain-node" => set("unschedulable", json!(true)),
        "uncordon-node" => set("unschedulable", json!(false)),
        "ec2-start-instance" | "ec2-reboot-instance" => set("state", json!("running")),
        "ec2-stop-instance" => set("state", json!("stopped")),
        "ec2-terminate-instance" => set("state", json!("terminated")),
        "create-namespace" => set("phase", json!("Active")),
        "delete-namespace" => set("phase", json!("Terminating")),
        "delete-pod" => set("phase", json!("Terminating")),
        "ecs-stop-task" => {
            set("desired_status", json!("STOPPED"));
            set("last_status", json!("STOPPED"));
        }
        "iam-attach-role-policy" | "iam-detach-role-policy" => {
            let arn = ctx.params.get("policy_arn").cloned().unwrap_or(Value::Null);
            let mut list = current(obj, "attached_policies")
                .as_array()
                .cloned()
                .unwrap_or_default();
            list.retain(|p| p.get("PolicyArn") != Some(&arn) && *p != arn);
            if def.name() == "iam-attach-role-policy" {
                list.push(json!({ "PolicyArn": arn }));
            }
            set("attached_policies", Value::Array(list));
        }
        _ => {}
    }
    if matches!(
        def.name(),
        "restart-deployment" | "update-image" | "rollout-undo"
    ) && let Some(g) = current(obj, "generation").as_i64()
    {
        set("generation", json!(g.saturating_add(1)));
    }
    if let Some(rv) = current(obj, "resource_version")
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
    {
        set("resource_version", json!(rv.saturating_add(1).to_string()));
    }
    let mut changes = BTreeMap::new();
    for (name, value) in wanted {
        let Some(field) = fields.iter().find(|f| f.name() == name) else {
            continue;
        };
        let before = current(obj, &name);
        if before == value {
            continue;
        }
        if let Some(s) = slot(obj, field.path().segments(), &ctx.params) {
            *s = value.clone();
            changes.insert(name, (before, value));
        }
    }
    changes
}
