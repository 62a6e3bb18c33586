//! The execution pipeline: the runner is the enforcement point between a ticket and a
//! backend.
//!
//! In order: verify the ticket → ask the admission (the gate: is the ticket's root caller
//! paused, is its breaker open?) → redeem it exactly once → resolve credentials → run the
//! prechecks → capture the before-state (an absent object is all nulls) → the backend's
//! own dry run where it offers one (`server_dry_run`) → execute → capture the after-state → diff →
//! write the execution record (linked to the decision and ticket) → revoke the
//! credentials → commit the receipt.
//!
//! Every failure is a recorded outcome. A refusal before redemption (bad ticket, replay,
//! pending, unsupported action, a paused caller) is recorded and leaves the ticket untouched. After
//! redemption the credentials are revoked on every path, including a panicking or
//! timed-out executor, and the receipt is committed; a crash of the process leaves the
//! ticket PENDING (`agentsafe ticket reconcile`), never executable again.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentsafe_audit::{AuditEvent, AuditLog, EventType, Redactor};
use agentsafe_core::{
    ActionContext, Cancel, CoreError, Credentials, Executor, Params, PrecheckResult, Timestamp,
};
use agentsafe_pdp::Inventory;
use agentsafe_registry::{ActionDef, Registry};
use agentsafe_tickets::{
    Outcome, Redemption, TicketState, TicketStore, TicketVerifier, VerifiedTicket,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::RunnerError;
use crate::credentials::{CredentialProvider, request_for};
use crate::record::{
    Change, ExecutionRecord, PrecheckEntry, PrecheckStatus, RecordKind, RunCode, StateDiff,
};

/// How long each executor call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Each precheck.
    pub precheck: Duration,
    /// Each state capture.
    pub capture: Duration,
    /// The execution. When it fires the executor is cancelled, then dropped after a grace period.
    pub execute: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            precheck: Duration::from_secs(30),
            capture: Duration::from_secs(30),
            execute: Duration::from_secs(300),
        }
    }
}

/// Whether a run executes an action or a compensating (rollback) action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RunKind {
    /// An ordinary execution (audit event `execution`).
    #[default]
    Execution,
    /// A rollback of the execution allowed by this decision (audit event `rollback`).
    Rollback {
        /// The decision whose execution is compensated.
        of_decision: String,
    },
    /// A preview (audit event `preview`): prechecks, the before-state and the backend's dry
    /// run, then stop. The ticket is checked but not redeemed, so it can still run once.
    Preview,
}

impl RunKind {
    fn record_kind(&self) -> RecordKind {
        match self {
            RunKind::Execution => RecordKind::Execution,
            RunKind::Rollback { .. } => RecordKind::Rollback,
            RunKind::Preview => RecordKind::Preview,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// The action ran and succeeded.
    Succeeded,
    /// The run stopped (credentials, a precheck, state capture) or the action failed.
    Failed,
    /// The executor panicked or timed out mid-execution: the backend state is unknown.
    Unknown,
    /// Nothing was redeemed: a bad ticket, a replay, a pending ticket, an unsupported action.
    Refused,
}

impl RunOutcome {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Unknown => "unknown",
            RunOutcome::Refused => "refused",
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run did, as printed by `agentsafe run` and returned to library callers.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// How it ended.
    pub outcome: RunOutcome,
    /// The stable code ([`RunCode`]).
    pub reason_code: RunCode,
    /// A human explanation.
    pub message: String,
    /// The executor's one-line summary, when it executed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The execution record as written to the audit log (secrets redacted).
    pub record: ExecutionRecord,
    /// What the executor returned, unredacted, for the caller only: never recorded. This is
    /// how a read the ticket allowed (a configmap value, a secret value with
    /// `reveal_values`) reaches the agent while the audit log holds only its HMAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The audit position of the record, when it was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
    /// Problems after the fact (audit write, revocation, receipt commit).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RunReport {
    /// Whether the action ran and succeeded, and everything around it was recorded.
    pub fn is_success(&self) -> bool {
        self.outcome == RunOutcome::Succeeded && self.warnings.is_empty()
    }
}

/// Why an executor call produced no answer.
enum Trouble {
    Panicked,
    TimedOut,
}

/// Runs `fut` on its own task so a panic is caught, with a time limit.
async fn guarded<T: Send + 'static>(
    limit: Duration,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, Trouble> {
    let mut handle = tokio::spawn(fut);
    match tokio::time::timeout(limit, &mut handle).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(Trouble::Panicked),
        Err(_) => {
            handle.abort();
            Err(Trouble::TimedOut)
        }
    }
}

/// As [`guarded`], but signals `cancel` when the limit fires and waits a grace period
/// for the executor to stop before dropping it.
async fn guarded_cancel<T: Send + 'static>(
    limit: Duration,
    cancel: &Cancel,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, Trouble> {
    let mut handle = tokio::spawn(fut);
    match tokio::time::timeout(limit, &mut handle).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(Trouble::Panicked),
        Err(_) => {
            cancel.cancel();
            let grace = (limit / 10).clamp(Duration::from_millis(50), Duration::from_secs(5));
            if tokio::time::timeout(grace, &mut handle).await.is_err() {
                handle.abort();
            }
            Err(Trouble::TimedOut)
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a state field or output key name suggests a secret.
pub fn secret_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "secret",
        "password",
        "passwd",
        "token",
        "credential",
        "private",
        "api_key",
        "apikey",
        "access_key",
        "session_key",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// Replaces the values of keys that look secret, at any depth.
fn redact_output(value: &Value, redactor: &Redactor) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if secret_like(k) {
                        redactor.redact(v)
                    } else {
                        redact_output(v, redactor)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_output(v, redactor)).collect())
        }
        other => other.clone(),
    }
}

/// The precheck entry the backend's dry run is recorded under.
pub const SERVER_DRY_RUN: &str = "server_dry_run";

/// Why a state capture returned no object.
#[derive(Debug)]
enum Captured {
    /// The backend says the object does not exist.
    Absent,
    /// The executor refused the ticket's location (the message).
    WrongLocation(String),
    /// Anything else: the message.
    Failed(String),
}

/// The execution record being assembled.
#[derive(Debug)]
struct Record {
    outcome: RunOutcome,
    reason_code: RunCode,
    message: String,
    executed: bool,
    prechecks: Vec<PrecheckEntry>,
    before: Option<Map<String, Value>>,
    after: Option<Map<String, Value>>,
    summary: Option<String>,
    output: Option<Value>,
    timings: std::collections::BTreeMap<String, u64>,
}

impl Record {
    fn fail(&mut self, outcome: RunOutcome, code: RunCode, message: String) {
        self.outcome = outcome;
        self.reason_code = code;
        self.message = message;
    }

    /// The executor refused the ticket's location during `step`: nothing was sent to the
    /// backend, and the run stops there.
    fn wrong_location(&mut self, step: &str, why: &str) {
        self.fail(
            RunOutcome::Failed,
            RunCode::WrongLocation,
            format!(
                "the executor refused the ticket's location at {step}, so nothing was executed: {why}"
            ),
        );
    }
}

/// Asked by the runner before it redeems a ticket: may the ticket's caller act now? The
/// enforcement point answers (an operator's pause or an open breaker of the root caller
/// stops a ticket issued before it), so a pause takes effect on tickets already out.
pub trait Admission: Send + Sync {
    /// `Ok` to go on; otherwise the run code and the reason, and nothing is redeemed.
    ///
    /// # Errors
    /// When the caller may not act now.
    fn admit(&self, ticket: &VerifiedTicket) -> Result<(), (RunCode, String)>;
}

/// The execution pipeline around one executor call. Borrowing its parts, it is cheap to
/// build per run.
pub struct Runner<'a> {
    registry: &'a Registry,
    inventory: &'a Inventory,
    admission: Option<&'a dyn Admission>,
    verifier: &'a TicketVerifier,
    store: &'a dyn TicketStore,
    audit: &'a AuditLog,
    credentials: &'a dyn CredentialProvider,
    timeouts: Timeouts,
}

impl fmt::Debug for Runner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("actions", &self.registry.len())
            .field("targets", &self.inventory.len())
            .field("admission", &self.admission.is_some())
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl<'a> Runner<'a> {
    /// A runner over these parts, with default timeouts. The inventory tells executors
    /// the target's type and locating attributes; it is the one the tickets were decided
    /// against (`Pdp::inventory`).
    pub fn new(
        registry: &'a Registry,
        inventory: &'a Inventory,
        verifier: &'a TicketVerifier,
        store: &'a dyn TicketStore,
        audit: &'a AuditLog,
        credentials: &'a dyn CredentialProvider,
    ) -> Runner<'a> {
        Runner {
            registry,
            inventory,
            admission: None,
            verifier,
            store,
            audit,
            credentials,
            timeouts: Timeouts::default(),
        }
    }

    /// Asks `admission` before redeeming each ticket (the gate: pause and breaker).
    #[must_use]
    pub fn with_admission(mut self, admission: &'a dyn Admission) -> Self {
        self.admission = Some(admission);
        self
    }

    /// Sets the executor time limits.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// [`Runner::run`] on a fresh single-threaded runtime, for synchronous callers.
    ///
    /// # Errors
    /// Only when the runtime cannot start; every other problem is in the report.
    pub fn run_blocking(
        &self,
        token: &str,
        executor: Arc<dyn Executor>,
        kind: &RunKind,
    ) -> Result<RunReport, RunnerError> {
        // I/O too: the Kubernetes and AWS executors talk HTTP on this runtime.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RunnerError::Runtime)?;
        Ok(rt.block_on(self.run(token, executor, kind)))
    }

    /// Runs the action a ticket allows through `executor`. See the module documentation
    /// for the steps; every outcome, including refusals, is in the report and the audit log.
    pub async fn run(&self, token: &str, executor: Arc<dyn Executor>, kind: &RunKind) -> RunReport {
        let name = executor.name().to_owned();
        let verified = match self.verifier.verify(token, Timestamp::now()) {
            Ok(v) => v,
            Err(e) => {
                return self.refuse(
                    &name,
                    None,
                    kind,
                    RunCode::InvalidTicket,
                    format!("ticket refused ({}): {e}", e.code()),
                );
            }
        };
        let Some(def) = self.registry.get(verified.action()) else {
            return self.refuse(
                &name,
                Some(&verified),
                kind,
                RunCode::UnknownAction,
                format!("action `{}` is not in the registry", verified.action()),
            );
        };
        if !executor.supported_actions().supports(verified.action()) {
            return self.refuse(
                &name,
                Some(&verified),
                kind,
                RunCode::UnsupportedAction,
                format!(
                    "executor `{name}` does not support action `{}`; the ticket was not redeemed",
                    verified.action()
                ),
            );
        }
        if *kind == RunKind::Preview
            && let Some((code, message)) = self.unpreviewable(&verified)
        {
            return self.refuse(&name, Some(&verified), kind, code, message);
        }
        if let Some(admission) = self.admission
            && let Err((code, message)) = admission.admit(&verified)
        {
            return self.refuse(&name, Some(&verified), kind, code, message);
        }
        let guard = match self.begin(&verified, kind) {
            Ok(None) => None,
            Ok(Some(Redemption::Execute(guard))) => Some(guard),
            Ok(Some(Redemption::AlreadyCommitted(receipt))) => {
                return self.refuse(
                    &name,
                    Some(&verified),
                    kind,
                    RunCode::Replayed,
                    format!(
                        "ticket {} was already redeemed ({} at {}): nothing runs twice",
                        verified.nonce(),
                        receipt.outcome,
                        receipt.committed_at
                    ),
                );
            }
            Ok(Some(Redemption::Blocked { .. })) => {
                return self.refuse(
                    &name,
                    Some(&verified),
                    kind,
                    RunCode::Pending,
                    format!(
                        "ticket {} is PENDING: another runner is executing it, or one crashed; \
                         check the backend, then `agentsafe ticket reconcile {}`",
                        verified.nonce(),
                        verified.nonce()
                    ),
                );
            }
            Err(e) => {
                return self.refuse(
                    &name,
                    Some(&verified),
                    kind,
                    RunCode::StoreUnavailable,
                    format!("cannot redeem the ticket: {e}"),
                );
            }
        };

        let ctx = Arc::new(self.context(&verified));
        let total = Instant::now();
        let started_at = Timestamp::now();
        let mut rec = Record {
            outcome: RunOutcome::Succeeded,
            reason_code: RunCode::Executed,
            message: String::new(),
            executed: false,
            prechecks: Vec::new(),
            before: None,
            after: None,
            summary: None,
            output: None,
            timings: std::collections::BTreeMap::new(),
        };
        let credentials = match def.credentials() {
            None => Ok(None),
            Some(cdef) => request_for(cdef, &ctx.params)
                .and_then(|req| self.credentials.issue(&req))
                .map(Some),
        };
        let credentials = match credentials {
            Ok(c) => c,
            Err(e) => {
                rec.fail(
                    RunOutcome::Failed,
                    RunCode::CredentialsFailed,
                    e.to_string(),
                );
                None
            }
        };
        if rec.reason_code != RunCode::CredentialsFailed {
            let creds = credentials
                .clone()
                .unwrap_or_else(|| Credentials::none(Timestamp::now()));
            self.steps(&mut rec, &executor, &ctx, def, &creds, kind)
                .await;
        }
        rec.timings.insert("total_ms".into(), ms(total.elapsed()));
        if rec.outcome == RunOutcome::Succeeded && rec.message.is_empty() {
            rec.message = rec.summary.clone().unwrap_or_else(|| "executed".into());
        }

        let body = self.body(
            &name,
            def,
            &verified,
            kind,
            &rec,
            started_at,
            credentials.as_ref(),
        );
        let mut warnings = Vec::new();
        let audit_seq = match self.audit.append(
            event(kind, body.to_body())
                .with_decision_id(verified.decision_id())
                .with_ticket_nonce(verified.nonce().to_string()),
        ) {
            Ok(a) => Some(a.seq),
            Err(e) => {
                warnings.push(format!("the execution record was not written: {e}"));
                None
            }
        };
        if let Some(c) = &credentials
            && let Err(e) = self.credentials.revoke(c)
        {
            warnings.push(format!("credential revocation failed: {e}"));
        }
        let ticket_outcome = match rec.outcome {
            RunOutcome::Succeeded => Outcome::Succeeded,
            RunOutcome::Failed | RunOutcome::Refused => Outcome::Failed,
            RunOutcome::Unknown => Outcome::Unknown,
        };
        let receipt = json!({
            "executor": name,
            "outcome": rec.outcome,
            "reason_code": rec.reason_code,
            "executed": rec.executed,
            "audit_seq": audit_seq,
            "diff": body.diff,
        });
        if let Some(guard) = guard
            && let Err(e) = guard.commit(ticket_outcome, receipt)
        {
            warnings.push(format!(
                "the receipt was not committed, the ticket stays PENDING: {e}"
            ));
        }
        RunReport {
            outcome: rec.outcome,
            reason_code: rec.reason_code,
            message: rec.message,
            summary: rec.summary,
            output: rec.output,
            record: body,
            audit_seq,
            warnings,
        }
    }

    /// Redeems the ticket, except for a preview (which never redeems).
    fn begin(
        &self,
        t: &VerifiedTicket,
        kind: &RunKind,
    ) -> Result<Option<Redemption>, agentsafe_tickets::StoreError> {
        if *kind == RunKind::Preview {
            return Ok(None);
        }
        self.store.begin(t).map(Some)
    }

    /// Why a ticket cannot be previewed: it was redeemed already (or is being redeemed).
    fn unpreviewable(&self, t: &VerifiedTicket) -> Option<(RunCode, String)> {
        match self.store.get(t.nonce()).map(|r| r.map(|r| r.state)) {
            Ok(None | Some(TicketState::Issued)) => None,
            Ok(Some(TicketState::Committed)) => Some((
                RunCode::Replayed,
                format!(
                    "ticket {} was already redeemed: there is nothing left to preview",
                    t.nonce()
                ),
            )),
            Ok(Some(TicketState::Pending)) => Some((
                RunCode::Pending,
                format!(
                    "ticket {} is PENDING: another runner is executing it, or one crashed",
                    t.nonce()
                ),
            )),
            Err(e) => Some((
                RunCode::StoreUnavailable,
                format!("cannot read the ticket's state: {e}"),
            )),
        }
    }

    fn context(&self, t: &VerifiedTicket) -> ActionContext {
        let target = self.inventory.get(t.target());
        ActionContext {
            action: t.action().to_owned(),
            target: t.target().to_owned(),
            target_type: target.map(|x| x.target_type().to_owned()),
            attributes: target.map(|x| x.attributes().clone()).unwrap_or_default(),
            params: t.params().clone(),
            decision_id: t.decision_id().to_string(),
            ticket_nonce: t.nonce().to_string(),
        }
    }

    /// Prechecks, before-state, execution, after-state.
    async fn steps(
        &self,
        rec: &mut Record,
        executor: &Arc<dyn Executor>,
        ctx: &Arc<ActionContext>,
        def: &ActionDef,
        creds: &Credentials,
        kind: &RunKind,
    ) {
        let started = Instant::now();
        let mut blocking: Option<String> = None;
        for check in def.prechecks() {
            let (exec, c, cr, n) = (
                Arc::clone(executor),
                Arc::clone(ctx),
                creds.clone(),
                check.name().to_owned(),
            );
            let result = match guarded(self.timeouts.precheck, async move {
                exec.precheck(&c, &n, &cr).await
            })
            .await
            {
                Ok(Ok(r)) => r,
                // Every other check would be refused the same way: stop at the first.
                Ok(Err(e @ CoreError::ExecutorWrongLocation { .. })) => {
                    let why = e.to_string();
                    rec.prechecks.push(PrecheckEntry {
                        name: check.name().to_owned(),
                        advisory: check.advisory(),
                        result: PrecheckStatus::Failed,
                        detail: format!("error: {why}"),
                    });
                    rec.timings
                        .insert("prechecks_ms".into(), ms(started.elapsed()));
                    rec.wrong_location(&format!("precheck `{}`", check.name()), &why);
                    return;
                }
                Ok(Err(e)) => PrecheckResult::Failed(format!("error: {e}")),
                Err(Trouble::Panicked) => PrecheckResult::Failed("the executor panicked".into()),
                Err(Trouble::TimedOut) => PrecheckResult::Failed(format!(
                    "timed out after {} ms",
                    ms(self.timeouts.precheck)
                )),
            };
            let (status, label, detail) = match &result {
                PrecheckResult::Passed(d) => (PrecheckStatus::Passed, "passed", d.clone()),
                PrecheckResult::Failed(d) => (PrecheckStatus::Failed, "failed", d.clone()),
                PrecheckResult::Unsupported => (
                    PrecheckStatus::Unsupported,
                    "unsupported",
                    format!("executor `{}` cannot evaluate this check", executor.name()),
                ),
            };
            if !result.passed() && !check.advisory() && blocking.is_none() {
                blocking = Some(format!("precheck `{}` {label}: {detail}", check.name()));
            }
            rec.prechecks.push(PrecheckEntry {
                name: check.name().to_owned(),
                advisory: check.advisory(),
                result: status,
                detail,
            });
        }
        rec.timings
            .insert("prechecks_ms".into(), ms(started.elapsed()));
        if let Some(why) = blocking {
            rec.fail(RunOutcome::Failed, RunCode::PrecheckFailed, why);
            return;
        }

        let started = Instant::now();
        match self.capture(executor, ctx, creds).await {
            Ok(state) => rec.before = Some(extract(def, &state, &ctx.params)),
            // Nothing there yet (a namespace about to be created): every field is null.
            Err(Captured::Absent) => rec.before = Some(extract(def, &Value::Null, &ctx.params)),
            Err(Captured::WrongLocation(why)) => {
                rec.wrong_location("the before-state capture", &why);
                return;
            }
            Err(Captured::Failed(why)) => {
                rec.fail(
                    RunOutcome::Failed,
                    RunCode::StateCaptureFailed,
                    format!("cannot capture the before-state, so nothing was executed: {why}"),
                );
                return;
            }
        }
        rec.timings
            .insert("capture_before_ms".into(), ms(started.elapsed()));

        // The backend's own validation of the change (Kubernetes `dryRun=All`, EC2
        // `DryRun`), where it offers one: a refusal stops the run before anything changes.
        let started = Instant::now();
        let (exec, c, cr) = (Arc::clone(executor), Arc::clone(ctx), creds.clone());
        let dry = guarded(self.timeouts.precheck, async move {
            exec.dry_run(&c, &cr).await
        })
        .await;
        let mut would = None;
        let refusal = match dry {
            Ok(Ok(None)) => None,
            Ok(Err(e @ CoreError::ExecutorWrongLocation { .. })) => {
                rec.timings
                    .insert("dry_run_ms".into(), ms(started.elapsed()));
                rec.wrong_location("the dry run", &e.to_string());
                return;
            }
            Ok(Ok(Some(v))) => {
                would = Some(v);
                rec.prechecks.push(PrecheckEntry {
                    name: SERVER_DRY_RUN.to_owned(),
                    advisory: false,
                    result: PrecheckStatus::Passed,
                    detail: "the backend accepted the change in a dry run".to_owned(),
                });
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(Trouble::Panicked) => Some("the executor panicked".into()),
            Err(Trouble::TimedOut) => {
                Some(format!("timed out after {} ms", ms(self.timeouts.precheck)))
            }
        };
        rec.timings
            .insert("dry_run_ms".into(), ms(started.elapsed()));
        if let Some(why) = refusal {
            rec.prechecks.push(PrecheckEntry {
                name: SERVER_DRY_RUN.to_owned(),
                advisory: false,
                result: PrecheckStatus::Failed,
                detail: why.clone(),
            });
            rec.fail(
                RunOutcome::Failed,
                RunCode::DryRunRefused,
                format!(
                    "the backend refused the change in a dry run, so nothing was executed: {why}"
                ),
            );
            return;
        }
        if *kind == RunKind::Preview {
            rec.reason_code = RunCode::Previewed;
            rec.message = if would.is_some() {
                "preview: the prechecks and the backend's dry run passed; nothing was executed and the ticket can still run once".into()
            } else {
                "preview: the prechecks passed (the backend offers no dry run); nothing was executed and the ticket can still run once".into()
            };
            rec.output = would;
            return;
        }

        let started = Instant::now();
        rec.executed = true;
        let cancel = Cancel::new();
        let (exec, c, cr, cn) = (
            Arc::clone(executor),
            Arc::clone(ctx),
            creds.clone(),
            cancel.clone(),
        );
        let result = guarded_cancel(self.timeouts.execute, &cancel, async move {
            exec.execute(&c, &cr, &cn).await
        })
        .await;
        rec.timings
            .insert("execute_ms".into(), ms(started.elapsed()));
        match result {
            Ok(Ok(report)) => {
                rec.summary = Some(report.summary);
                rec.output = Some(report.output);
            }
            // Refused before any request: nothing happened, so nothing is to roll back.
            Ok(Err(e @ CoreError::ExecutorWrongLocation { .. })) => {
                rec.executed = false;
                rec.wrong_location("execute", &e.to_string());
                return;
            }
            Ok(Err(CoreError::ExecutorCancelled)) | Err(Trouble::TimedOut) => rec.fail(
                RunOutcome::Unknown,
                RunCode::TimedOut,
                format!(
                    "the executor did not finish within {} ms and was cancelled; the backend state is unknown",
                    ms(self.timeouts.execute)
                ),
            ),
            Ok(Err(e)) => rec.fail(
                RunOutcome::Failed,
                RunCode::ExecutionFailed,
                format!("the action failed: {e}"),
            ),
            Err(Trouble::Panicked) => rec.fail(
                RunOutcome::Unknown,
                RunCode::ExecutorPanicked,
                "the executor panicked mid-execution; the backend state is unknown".into(),
            ),
        }

        let started = Instant::now();
        match self.capture(executor, ctx, creds).await {
            Ok(state) => rec.after = Some(extract(def, &state, &ctx.params)),
            // Gone (a deleted pod or namespace): every field is null.
            Err(Captured::Absent) => rec.after = Some(extract(def, &Value::Null, &ctx.params)),
            Err(Captured::Failed(why) | Captured::WrongLocation(why)) => {
                let note = format!("cannot capture the after-state: {why}");
                if rec.message.is_empty() {
                    rec.message = note;
                } else {
                    rec.message = format!("{}; {note}", rec.message);
                }
            }
        }
        rec.timings
            .insert("capture_after_ms".into(), ms(started.elapsed()));
    }

    async fn capture(
        &self,
        executor: &Arc<dyn Executor>,
        ctx: &Arc<ActionContext>,
        creds: &Credentials,
    ) -> Result<Value, Captured> {
        let (exec, c, cr) = (Arc::clone(executor), Arc::clone(ctx), creds.clone());
        match guarded(self.timeouts.capture, async move {
            exec.capture_state(&c, &cr).await
        })
        .await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(CoreError::ExecutorNotFound(_))) => Err(Captured::Absent),
            Ok(Err(e @ CoreError::ExecutorWrongLocation { .. })) => {
                Err(Captured::WrongLocation(e.to_string()))
            }
            Ok(Err(e)) => Err(Captured::Failed(e.to_string())),
            Err(Trouble::Panicked) => Err(Captured::Failed("the executor panicked".into())),
            Err(Trouble::TimedOut) => Err(Captured::Failed(format!(
                "timed out after {} ms",
                ms(self.timeouts.capture)
            ))),
        }
    }

    /// The audit body of an execution record, secrets redacted, credentials absent.
    #[expect(clippy::too_many_arguments, reason = "one private assembly step")]
    fn body(
        &self,
        executor: &str,
        def: &ActionDef,
        t: &VerifiedTicket,
        kind: &RunKind,
        rec: &Record,
        started_at: Timestamp,
        credentials: Option<&Credentials>,
    ) -> ExecutionRecord {
        let redactor = self.audit.redactor();
        let sensitive: BTreeSet<&str> = def.sensitive_params().collect();
        let mut params = t.params().clone();
        let mut redacted_params = Vec::new();
        for (k, v) in &mut params {
            if sensitive.contains(k.as_str()) {
                *v = redactor.redact(v);
                redacted_params.push(k.clone());
            }
        }
        let secret_field = |name: &str| {
            secret_like(name)
                || sensitive.contains(name)
                || def.tags().iter().any(|t| t == "secrets") && name == "data"
        };
        let mut redacted_state = BTreeSet::new();
        let redact_state =
            |m: &Map<String, Value>, redacted: &mut BTreeSet<String>| -> Map<String, Value> {
                m.iter()
                    .map(|(k, v)| {
                        if secret_field(k) {
                            redacted.insert(k.clone());
                            (k.clone(), redactor.redact(v))
                        } else {
                            (k.clone(), v.clone())
                        }
                    })
                    .collect()
            };
        let before = rec
            .before
            .as_ref()
            .map(|m| redact_state(m, &mut redacted_state));
        let after = rec
            .after
            .as_ref()
            .map(|m| redact_state(m, &mut redacted_state));
        let diff = match (&before, &after) {
            (Some(b), Some(a)) => {
                let mut d = StateDiff::new();
                for (k, av) in a {
                    let bv = b.get(k).unwrap_or(&Value::Null);
                    if bv != av {
                        d.insert(
                            k.clone(),
                            Change {
                                before: bv.clone(),
                                after: av.clone(),
                            },
                        );
                    }
                }
                Some(d)
            }
            _ => None,
        };
        let output = rec.output.as_ref().map(|o| {
            if def.tags().iter().any(|t| t == "secrets") {
                redactor.redact(o)
            } else {
                redact_output(o, redactor)
            }
        });
        ExecutionRecord {
            kind: kind.record_kind(),
            action: Some(t.action().to_owned()),
            target: Some(t.target().to_owned()),
            caller: Some(t.caller().id.clone()),
            executor: executor.to_owned(),
            outcome: rec.outcome,
            reason_code: rec.reason_code,
            message: rec.message.clone(),
            executed: rec.executed,
            params: Some(params),
            prechecks: rec.prechecks.clone(),
            before,
            after,
            diff,
            started_at: Some(started_at),
            timings: rec.timings.clone(),
            credentials_kind: credentials.map(|c| c.kind.clone()),
            summary: rec.summary.clone(),
            output,
            redacted_params,
            redacted_state: redacted_state.into_iter().collect(),
            rolls_back: match kind {
                RunKind::Rollback { of_decision } => Some(of_decision.clone()),
                _ => None,
            },
        }
    }

    /// Records a refusal (nothing redeemed, nothing executed) and reports it.
    fn refuse(
        &self,
        executor: &str,
        t: Option<&VerifiedTicket>,
        kind: &RunKind,
        code: RunCode,
        message: String,
    ) -> RunReport {
        let mut record =
            ExecutionRecord::refusal(kind.record_kind(), executor, code, message.clone());
        if let Some(t) = t {
            record.action = Some(t.action().to_owned());
            record.target = Some(t.target().to_owned());
        }
        let mut ev = event(kind, record.to_body());
        if let Some(t) = t {
            ev = ev
                .with_decision_id(t.decision_id())
                .with_ticket_nonce(t.nonce().to_string());
        }
        let mut warnings = Vec::new();
        let audit_seq = match self.audit.append(ev) {
            Ok(a) => Some(a.seq),
            Err(e) => {
                warnings.push(format!("the refusal was not recorded: {e}"));
                None
            }
        };
        RunReport {
            outcome: RunOutcome::Refused,
            reason_code: code,
            message,
            summary: None,
            output: None,
            record,
            audit_seq,
            warnings,
        }
    }
}

fn event(kind: &RunKind, body: Value) -> AuditEvent {
    let ty = match kind {
        RunKind::Execution => EventType::Execution,
        RunKind::Rollback { .. } => EventType::Rollback,
        RunKind::Preview => EventType::Preview,
    };
    AuditEvent::custom(ty, body)
}

/// The action's declared state fields, read from the backend object by path (`null`
/// where a path does not resolve).
pub fn extract(def: &ActionDef, object: &Value, params: &Params) -> Map<String, Value> {
    def.state_fields()
        .iter()
        .map(|f| {
            (
                f.name().to_owned(),
                f.path()
                    .resolve(object, params)
                    .cloned()
                    .unwrap_or(Value::Null),
            )
        })
        .collect()
}
