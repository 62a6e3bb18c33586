//! A mock executor: an in-memory object per target, configurable prechecks and execution
//! behaviour (succeed, fail, panic, hang), an optional location it acts in, and call
//! counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use agentsafe_core::executor::async_trait;
use agentsafe_core::{
    ActionContext, ActionSupport, Cancel, CoreError, Credentials, ExecutionReport, Executor,
    PrecheckResult,
};
use serde_json::{Map, Value, json};

/// What [`MockExecutor::execute`](Executor::execute) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecuteBehaviour {
    /// Copies every param into the target's object (`params.x` → `x`) and succeeds.
    #[default]
    Succeed,
    /// Returns a backend error without changing anything.
    Fail,
    /// Panics (to test that the runner survives it).
    Panic,
    /// Never finishes until cancelled, then returns `ExecutorCancelled`.
    Hang,
}

/// What [`MockExecutor::dry_run`](Executor::dry_run) answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DryRunBehaviour {
    /// The backend offers no dry run (`Ok(None)`).
    #[default]
    Unoffered,
    /// The backend accepts the change.
    Accept,
    /// The backend refuses the change with this message.
    Refuse(String),
}

/// A configurable in-memory executor for tests.
#[derive(Debug, Default)]
pub struct MockExecutor {
    objects: Mutex<BTreeMap<String, Value>>,
    failing: BTreeMap<String, String>,
    unsupported_checks: Vec<String>,
    behaviour: ExecuteBehaviour,
    only: Option<Vec<String>>,
    dry_run: DryRunBehaviour,
    missing_is_not_found: bool,
    location: Option<(String, String)>,
    executions: AtomicUsize,
    prechecks: AtomicUsize,
    dry_runs: AtomicUsize,
}

impl MockExecutor {
    /// A mock that supports every action, passes every check and succeeds.
    pub fn new() -> MockExecutor {
        MockExecutor::default()
    }

    /// Makes the precheck `name` fail with `why`.
    #[must_use]
    pub fn failing_precheck(mut self, name: &str, why: &str) -> Self {
        self.failing.insert(name.to_owned(), why.to_owned());
        self
    }

    /// Makes the precheck `name` unknown to the executor.
    #[must_use]
    pub fn unsupported_precheck(mut self, name: &str) -> Self {
        self.unsupported_checks.push(name.to_owned());
        self
    }

    /// Sets what `execute` does.
    #[must_use]
    pub fn behaviour(mut self, behaviour: ExecuteBehaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Sets what `dry_run` answers.
    #[must_use]
    pub fn dry_run(mut self, behaviour: DryRunBehaviour) -> Self {
        self.dry_run = behaviour;
        self
    }

    /// `capture_state` of a target with no object is `ExecutorNotFound` (instead of `{}`),
    /// as a real backend answers for an object that does not exist (yet, or any more).
    #[must_use]
    pub fn missing_is_not_found(mut self) -> Self {
        self.missing_is_not_found = true;
        self
    }

    /// Acts only where the param `param` is `value` (as a Kubernetes executor acts only in
    /// its mapped clusters): every call for another place, or none, is refused with
    /// `ExecutorWrongLocation` before anything is read or changed.
    #[must_use]
    pub fn located(mut self, param: &str, value: &str) -> Self {
        self.location = Some((param.to_owned(), value.to_owned()));
        self
    }

    /// The refusal of a call whose params are not for this mock's location.
    fn elsewhere(&self, ctx: &ActionContext) -> Result<(), CoreError> {
        let Some((param, value)) = &self.location else {
            return Ok(());
        };
        match ctx.params.get(param).and_then(Value::as_str) {
            Some(v) if v == value => Ok(()),
            other => Err(CoreError::ExecutorWrongLocation {
                executor: "mock".into(),
                message: format!(
                    "the ticket is for {param} `{}`, but this mock acts in {param} `{value}`",
                    other.unwrap_or("<none>")
                ),
            }),
        }
    }

    /// How many times `dry_run` was called.
    pub fn dry_runs(&self) -> usize {
        self.dry_runs.load(Ordering::SeqCst)
    }

    /// Supports only these actions.
    #[must_use]
    pub fn only(mut self, actions: &[&str]) -> Self {
        self.only = Some(actions.iter().map(|a| (*a).to_owned()).collect());
        self
    }

    /// Sets the object of `target`.
    #[must_use]
    pub fn with_object(self, target: &str, object: Value) -> Self {
        self.lock().insert(target.to_owned(), object);
        self
    }

    /// How many times `execute` was called.
    pub fn executions(&self) -> usize {
        self.executions.load(Ordering::SeqCst)
    }

    /// How many prechecks ran.
    pub fn prechecks_run(&self) -> usize {
        self.prechecks.load(Ordering::SeqCst)
    }

    /// The current object of `target`.
    pub fn object(&self, target: &str) -> Value {
        self.lock()
            .get(target)
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Executor for MockExecutor {
    fn name(&self) -> &str {
        "mock"
    }

    fn supported_actions(&self) -> ActionSupport {
        match &self.only {
            Some(list) => ActionSupport::Only(list.clone()),
            None => ActionSupport::All,
        }
    }

    async fn precheck(
        &self,
        ctx: &ActionContext,
        check: &str,
        _credentials: &Credentials,
    ) -> Result<PrecheckResult, CoreError> {
        self.prechecks.fetch_add(1, Ordering::SeqCst);
        self.elsewhere(ctx)?;
        if self.unsupported_checks.iter().any(|c| c == check) {
            return Ok(PrecheckResult::Unsupported);
        }
        Ok(match self.failing.get(check) {
            Some(why) => PrecheckResult::Failed(why.clone()),
            None => PrecheckResult::Passed("mock: passed".into()),
        })
    }

    async fn capture_state(
        &self,
        ctx: &ActionContext,
        _credentials: &Credentials,
    ) -> Result<Value, CoreError> {
        self.elsewhere(ctx)?;
        match self.lock().get(&ctx.target) {
            Some(obj) => Ok(obj.clone()),
            None if self.missing_is_not_found => Err(CoreError::ExecutorNotFound(format!(
                "mock: no object for {}",
                ctx.target
            ))),
            None => Ok(json!({})),
        }
    }

    async fn dry_run(
        &self,
        ctx: &ActionContext,
        _credentials: &Credentials,
    ) -> Result<Option<Value>, CoreError> {
        self.dry_runs.fetch_add(1, Ordering::SeqCst);
        self.elsewhere(ctx)?;
        match &self.dry_run {
            DryRunBehaviour::Unoffered => Ok(None),
            DryRunBehaviour::Accept => Ok(Some(json!({"would_apply": ctx.params}))),
            DryRunBehaviour::Refuse(why) => Err(CoreError::ExecutorBackend {
                executor: "mock".into(),
                message: why.clone(),
            }),
        }
    }

    async fn execute(
        &self,
        ctx: &ActionContext,
        _credentials: &Credentials,
        cancel: &Cancel,
    ) -> Result<ExecutionReport, CoreError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        if cancel.is_cancelled() {
            return Err(CoreError::ExecutorCancelled);
        }
        self.elsewhere(ctx)?;
        if !self.supported_actions().supports(&ctx.action) {
            return Err(CoreError::ExecutorUnsupported {
                executor: "mock".into(),
                action: ctx.action.clone(),
            });
        }
        match self.behaviour {
            ExecuteBehaviour::Succeed => {
                let mut objects = self.lock();
                let obj = objects
                    .entry(ctx.target.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !obj.is_object() {
                    *obj = Value::Object(Map::new());
                }
                if let Some(map) = obj.as_object_mut() {
                    for (k, v) in &ctx.params {
                        map.insert(k.clone(), v.clone());
                    }
                }
                Ok(ExecutionReport {
                    summary: format!("mock: {} on {}", ctx.action, ctx.target),
                    output: json!({"applied": ctx.params}),
                })
            }
            ExecuteBehaviour::Fail => Err(CoreError::ExecutorBackend {
                executor: "mock".into(),
                message: "simulated backend failure".into(),
            }),
            ExecuteBehaviour::Panic => {
                #[expect(clippy::panic, reason = "the mock panics on purpose when asked to")]
                {
                    panic!("mock executor panicked on purpose")
                }
            }
            ExecuteBehaviour::Hang => {
                cancel.cancelled().await;
                Err(CoreError::ExecutorCancelled)
            }
        }
    }
}
