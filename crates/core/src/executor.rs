//! The executor contract: the trait every backend (dry-run, Kubernetes, AWS, yours)
//! implements, the values that cross it, and a runtime-free cancellation handle.
//!
//! The runner owns the pipeline around an executor (ticket verification, redemption,
//! credentials, audit); an executor only talks to its backend. This module does no I/O and
//! needs no async runtime: the trait is `async` through `async_trait`, and [`Cancel`] is a
//! plain `std` future, so an executor crate can use whatever client it likes.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{CoreError, Params, Timestamp};

pub use async_trait::async_trait;

/// What one execution is about: the action, the target and the exact params the ticket
/// signed. Built by the runner from a verified ticket; executors only read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionContext {
    /// The action name, such as `scale-deployment`.
    pub action: String,
    /// The target id, as in the inventory.
    pub target: String,
    /// The target type (`k8s-deployment`, ...), when the inventory knows the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// The target's locating attributes from the inventory (`namespace`, `region`, ...).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The params, after target binding and defaults: exactly what the ticket signed.
    pub params: Params,
    /// The decision that allowed the execution.
    pub decision_id: String,
    /// The nonce of the ticket being redeemed.
    pub ticket_nonce: String,
}

/// Which actions an executor can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSupport {
    /// Every action of the registry (a simulator, for example).
    All,
    /// Only these action names.
    Only(Vec<String>),
}

impl ActionSupport {
    /// Whether `action` is supported.
    pub fn supports(&self, action: &str) -> bool {
        match self {
            ActionSupport::All => true,
            ActionSupport::Only(names) => names.iter().any(|n| n == action),
        }
    }
}

/// The result of one precheck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum PrecheckResult {
    /// The check passed.
    Passed(String),
    /// The check failed: the run stops unless the action marks the check advisory.
    Failed(String),
    /// The executor does not know this check. Treated as a failure (fail closed) unless
    /// the check is advisory.
    Unsupported,
}

impl PrecheckResult {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        matches!(self, PrecheckResult::Passed(_))
    }
}

/// What an execution reports back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionReport {
    /// One human line: what was done.
    pub summary: String,
    /// Backend output (a response body, a read value). The runner redacts keys that look
    /// secret before recording it and never prints it beyond the summary unless asked.
    #[serde(default)]
    pub output: Value,
}

/// Short-lived credentials the runner obtained for one execution.
///
/// # Security
/// The secret never prints: `Debug` shows `[redacted]` and the type is not `Serialize`.
/// Only an executor reads it, through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The provider type the action asked for (`kubernetes`, `aws`, ...).
    pub kind: String,
    /// The scope the credential is limited to, rendered from the action's credentials
    /// block (`namespace`, `resource_name`, `verbs`, ...).
    pub scope: BTreeMap<String, String>,
    /// When the credential stops being valid.
    pub expires_at: Timestamp,
    /// An id for revocation (not a secret).
    pub lease_id: String,
    /// The secret material.
    pub secret: Secret,
}

impl Credentials {
    /// Credentials for an action that declares none: no scope, no secret.
    pub fn none(now: Timestamp) -> Credentials {
        Credentials {
            kind: "none".into(),
            scope: BTreeMap::new(),
            expires_at: now,
            lease_id: String::new(),
            secret: Secret::new(""),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("kind", &self.kind)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .field("lease_id", &self.lease_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Secret bytes that never print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<Arc<str>>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself. Call it only where the secret is handed to the backend.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether there is no secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A backend that performs actions: the extension point of agentsafe. Dyn-compatible.
///
/// # Contract
/// * [`precheck`](Executor::precheck), [`capture_state`](Executor::capture_state) and
///   [`dry_run`](Executor::dry_run) never mutate anything in the backend. They may be
///   called any number of times.
/// * [`execute`](Executor::execute) is called at most once per ticket: the runner redeems
///   the ticket in a store shared by every process before calling it, and never retries.
///   An executor must not retry a mutating call on its own either.
/// * `execute` watches its [`Cancel`] handle: when the runner's timeout fires it cancels
///   and then drops the future, so a long call should await [`Cancel::cancelled`] (or poll
///   [`Cancel::is_cancelled`]) and stop cleanly.
/// * `capture_state` returns the backend object as its API returns it (for Kubernetes the
///   object as `kubectl get -o json` prints it, for AWS the describe call's response); the
///   runner extracts the action's declared `state_fields` from it and redacts secrets.
/// * Errors are [`CoreError`] values (`ExecutorUnsupported`, `ExecutorNotFound`,
///   `ExecutorBackend`, `ExecutorCancelled`); messages never contain credentials.
/// * Credentials are valid only for the duration of one run; the runner revokes them
///   afterwards on every path, so an executor must not keep them.
///
/// The conformance suite in `agentsafe-testkit` checks these rules; run it against your
/// executor.
#[async_trait]
pub trait Executor: Send + Sync + fmt::Debug {
    /// The backend name, as given to `agentsafe run --executor NAME`.
    fn name(&self) -> &str;

    /// The actions this executor can run.
    fn supported_actions(&self) -> ActionSupport;

    /// Runs the named precheck of the action. Never mutates.
    ///
    /// # Errors
    /// When the backend cannot be asked (the runner records the check as failed).
    async fn precheck(
        &self,
        ctx: &ActionContext,
        check: &str,
        credentials: &Credentials,
    ) -> Result<PrecheckResult, CoreError>;

    /// Reads the backend object the action's state fields point into. Never mutates.
    ///
    /// # Errors
    /// `ExecutorNotFound` when the object does not exist, or a backend error.
    async fn capture_state(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<Value, CoreError>;

    /// Performs the action. Called at most once per ticket.
    ///
    /// # Errors
    /// When the action failed, or `ExecutorCancelled` when it stopped on `cancel`.
    async fn execute(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
        cancel: &Cancel,
    ) -> Result<ExecutionReport, CoreError>;

    /// Asks the backend to validate the action without applying it (Kubernetes
    /// `dryRun=All`, AWS `DryRun`). `Ok(None)` when the backend offers no such mode.
    /// Never mutates.
    ///
    /// # Errors
    /// When the backend refuses the action.
    async fn dry_run(
        &self,
        _ctx: &ActionContext,
        _credentials: &Credentials,
    ) -> Result<Option<Value>, CoreError> {
        Ok(None)
    }
}

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

/// A cancellation signal shared between the runner and an executor, with no async runtime.
///
/// Clones share the signal. [`Cancel::cancel`] sets it and wakes every task awaiting
/// [`Cancel::cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

impl Cancel {
    /// A fresh, not cancelled handle.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Signals cancellation and wakes every waiter. Idempotent.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(
            &mut *self
                .inner
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for w in wakers {
            w.wake();
        }
    }

    /// Whether cancellation was signalled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// A future that completes once cancellation is signalled.
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled { cancel: self }
    }
}

/// The future of [`Cancel::cancelled`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Cancelled<'a> {
    cancel: &'a Cancel,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.cancel.is_cancelled() {
            return Poll::Ready(());
        }
        let mut wakers = self
            .cancel
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Check again under the lock: `cancel` may have drained the wakers in between.
        if self.cancel.is_cancelled() {
            return Poll::Ready(());
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn cancelled_future_wakes_and_completes() {
        let cancel = Cancel::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(cancel.cancelled());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
        let other = cancel.clone();
        other.cancel();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one waker, woken once");
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(()));
        assert!(cancel.is_cancelled());
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials {
            kind: "kubernetes".into(),
            scope: BTreeMap::new(),
            expires_at: Timestamp::UNIX_EPOCH,
            lease_id: "l1".into(),
            secret: Secret::new("hunter2"),
        };
        let text = format!("{c:?} {:?}", c.secret);
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(c.secret.expose(), "hunter2");
    }

    #[test]
    fn action_support() {
        assert!(ActionSupport::All.supports("x"));
        let only = ActionSupport::Only(vec!["a".into()]);
        assert!(only.supports("a"));
        assert!(!only.supports("b"));
    }
}
