//! The [`TicketStore`] conformance suite: the ISSUED → PENDING → COMMITTED invariants as
//! checks every backend runs.
//!
//! A new backend (PostgreSQL, ...) proves itself from its own tests with one call, handing
//! the suite a function that returns a fresh, empty store with the given options each time
//! it is called:
//!
//! ```
//! use agentsafe_tickets::store::conformance;
//! use agentsafe_tickets::{MemoryTicketStore, TicketStore};
//!
//! conformance::run_all(&|options| {
//!     Box::new(MemoryTicketStore::with_options(options)) as Box<dyn TicketStore>
//! })?;
//! # Ok::<(), String>(())
//! ```
//!
//! Every check is also a public function ([`CHECKS`], [`RACES`]), so a backend's tests can
//! run them one by one. A check never panics: it returns `Err` with what broke, in words.
//! The race takes several handles on one backend (one store shared by threads, or one
//! connection per thread), so a shared backend can show that separate connections have
//! exactly one winner too.
//!
//! # Security
//! The checks redeem tickets signed by a fixed test key, which no deployment trusts, in the
//! stores they are given: hand them stores of their own, never one in use.

use std::sync::Barrier;

use agentsafe_core::Timestamp;
use serde_json::json;

use crate::bench::sample_decision;
use crate::config::TicketConfig;
use crate::duration::HumanDuration;
use crate::error::StoreError;
use crate::keys::{KeySet, Signer};
use crate::store::{
    Outcome, PendingGuard, Receipt, Redemption, StoreOptions, TicketState, TicketStore,
};
use crate::ticket::{SignedTicket, TicketIssuer, TicketVerifier, VerifiedTicket};

/// Makes a fresh, empty store with the given options.
pub type MakeStore<'a> = dyn Fn(&StoreOptions) -> Box<dyn TicketStore> + 'a;

/// One check of the suite: `Ok` when stores from `make` keep the invariant.
pub type Check = fn(&MakeStore<'_>) -> Result<(), String>;

/// One concurrency check: `Ok` when threads racing on `handles` (one thread per handle, all
/// handles on one backend) keep the invariant.
pub type RaceCheck = fn(&[&dyn TicketStore]) -> Result<(), String>;

/// Every single-store check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[(&str, Check)] = &[
    (
        "fresh_ticket_executes_exactly_once",
        fresh_ticket_executes_exactly_once,
    ),
    ("issued_then_redeemed", issued_then_redeemed),
    (
        "crash_leaves_it_blocked_until_reconciled",
        crash_leaves_it_blocked_until_reconciled,
    ),
    (
        "reconcile_only_moves_pending_tickets",
        reconcile_only_moves_pending_tickets,
    ),
    (
        "prune_removes_only_long_expired_settled_rows",
        prune_removes_only_long_expired_settled_rows,
    ),
    (
        "begin_refuses_tickets_older_than_the_retention",
        begin_refuses_tickets_older_than_the_retention,
    ),
];

/// Every concurrency check, by name, in the order [`run_all`] runs them.
pub const RACES: &[(&str, RaceCheck)] = &[(
    "concurrent_redeemers_have_one_winner",
    concurrent_redeemers_have_one_winner,
)];

/// How many threads [`run_all`] races against one store.
pub const THREADS: usize = 32;

/// Runs every check with `make`, and the races with [`THREADS`] threads sharing one store
/// from `make` (default options).
///
/// # Errors
/// Every broken check, one per line, each as `CHECK: WHAT BROKE`.
pub fn run_all(make: &MakeStore<'_>) -> Result<(), String> {
    let mut problems = Vec::new();
    for (name, check) in CHECKS {
        if let Err(e) = check(make) {
            problems.push(format!("{name}: {e}"));
        }
    }
    for (name, check) in RACES {
        let store = make(&StoreOptions::default());
        let handles = vec![store.as_ref(); THREADS];
        if let Err(e) = check(&handles) {
            problems.push(format!("{name}: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Fails the check with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Fails the check unless `got == want`, showing both.
macro_rules! ensure_eq {
    ($got:expr, $want:expr, $($msg:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            return Err(format!("{}: got {got:?}, expected {want:?}", format!($($msg)+)));
        }
    }};
}

/// Names the call that failed.
trait Call<T> {
    fn call(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Call<T> for Result<T, E> {
    fn call(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("`{what}` failed: {e}"))
    }
}

/// The guard of a redemption that must be [`Redemption::Execute`].
fn execute(r: Redemption, what: &str) -> Result<PendingGuard, String> {
    match r {
        Redemption::Execute(guard) => Ok(guard),
        other => Err(format!("{what}: expected `Execute`, got {other:?}")),
    }
}

/// The receipt of a redemption that must be [`Redemption::AlreadyCommitted`].
fn committed(r: Redemption, what: &str) -> Result<Receipt, String> {
    match r {
        Redemption::AlreadyCommitted(receipt) => Ok(receipt),
        other => Err(format!(
            "{what}: expected `AlreadyCommitted`, got {other:?}"
        )),
    }
}

/// Checks a redemption is [`Redemption::Blocked`] on a PENDING ticket.
fn blocked(r: Redemption, what: &str) -> Result<(), String> {
    match r {
        Redemption::Blocked {
            state: TicketState::Pending,
        } => Ok(()),
        other => Err(format!(
            "{what}: expected `Blocked` (pending), got {other:?}"
        )),
    }
}

/// The retention of the checks that prune and refuse old tickets.
const RETENTION: u64 = 3600;

/// How long the suite's tickets live.
const TTL: u64 = 300;

/// Signs and verifies the suite's tickets, with a fixed test key.
struct Mint {
    issuer: TicketIssuer,
    verifier: TicketVerifier,
}

impl Mint {
    fn new() -> Result<Self, String> {
        let signer = Signer::from_seed(&[5; 32]);
        let keys = KeySet::from_keys([signer.verifying_key()]).call("KeySet::from_keys")?;
        let config = TicketConfig {
            ttl: HumanDuration::from_secs(TTL),
            ..TicketConfig::default()
        };
        Ok(Mint {
            issuer: TicketIssuer::new(signer, &config).call("TicketIssuer::new")?,
            verifier: TicketVerifier::new(keys, &config),
        })
    }

    /// Ticket number `i`, issued at `iat` (Unix seconds) and verified at the same instant.
    fn at(&self, i: u64, iat: i64) -> Result<(SignedTicket, VerifiedTicket), String> {
        let at = Timestamp::from_second(iat).call("timestamp")?;
        let signed = self.issuer.issue(&sample_decision(i), at).call("issue")?;
        let verified = self.verifier.verify(signed.token(), at).call("verify")?;
        Ok((signed, verified))
    }

    /// Ticket number `i`, issued now.
    fn now(&self, i: u64) -> Result<(SignedTicket, VerifiedTicket), String> {
        self.at(i, Timestamp::now().as_second())
    }
}

/// A fresh ticket executes exactly once: the first `begin` is `Execute` and moves it to
/// PENDING; while it runs every other `begin` is `Blocked`; after `commit` every `begin`
/// returns the stored receipt (replay executes nothing); `get` shows the ticket's facts,
/// and knows nothing of a ticket it never saw.
///
/// # Errors
/// What broke.
pub fn fresh_ticket_executes_exactly_once(make: &MakeStore<'_>) -> Result<(), String> {
    let store = make(&StoreOptions::default());
    let mint = Mint::new()?;
    let (_, t) = mint.now(1)?;
    let guard = execute(store.begin(&t).call("begin")?, "a fresh ticket")?;
    ensure_eq!(guard.nonce(), t.nonce(), "the guard's nonce");
    blocked(store.begin(&t).call("begin")?, "a ticket being executed")?;
    let Some(pending) = store.get(t.nonce()).call("get")? else {
        return Err("a pending ticket is unknown to `get`".into());
    };
    ensure_eq!(pending.state, TicketState::Pending, "state while executing");
    let receipt = guard
        .commit(Outcome::Succeeded, json!({"replicas": 3}))
        .call("commit")?;
    ensure_eq!(receipt.outcome, Outcome::Succeeded, "committed outcome");
    ensure!(
        !receipt.reconciled,
        "a committed receipt says it was reconciled"
    );
    for replay in 1..=2 {
        let r = committed(store.begin(&t).call("begin")?, "a replay")?;
        ensure_eq!(r, receipt, "receipt of replay {replay}");
    }
    let Some(record) = store.get(t.nonce()).call("get")? else {
        return Err("a committed ticket is unknown to `get`".into());
    };
    ensure_eq!(record.state, TicketState::Committed, "state after commit");
    ensure_eq!(record.action, t.action(), "recorded action");
    ensure_eq!(record.target, t.target(), "recorded target");
    ensure_eq!(record.decision_id, t.decision_id(), "recorded decision id");
    ensure_eq!(record.expires_at, t.expires_at(), "recorded expiry");
    ensure!(record.pending_at.is_some(), "no `pending_at` after commit");
    ensure_eq!(record.receipt, Some(receipt), "recorded receipt");
    let (_, unseen) = mint.now(2)?;
    ensure!(
        store.get(unseen.nonce()).call("get")?.is_none(),
        "`get` knows a ticket the store never saw"
    );
    Ok(())
}

/// A ticket recorded as ISSUED is redeemable once; recording it again (while PENDING or
/// after COMMITTED) changes nothing; a replay gets the stored failure receipt.
///
/// # Errors
/// What broke.
pub fn issued_then_redeemed(make: &MakeStore<'_>) -> Result<(), String> {
    let store = make(&StoreOptions::default());
    let (signed, t) = Mint::new()?.now(3)?;
    store.record_issued(&signed).call("record_issued")?;
    let Some(record) = store.get(t.nonce()).call("get")? else {
        return Err("an issued ticket is unknown to `get`".into());
    };
    ensure_eq!(
        record.state,
        TicketState::Issued,
        "state after `record_issued`"
    );
    ensure!(
        record.issued_at.is_some(),
        "no `issued_at` after `record_issued`"
    );
    let guard = execute(store.begin(&t).call("begin")?, "an issued ticket")?;
    store.record_issued(&signed).call("record_issued")?;
    let state = store.get(t.nonce()).call("get")?.map(|r| r.state);
    ensure_eq!(
        state,
        Some(TicketState::Pending),
        "state after recording a pending ticket as issued again"
    );
    guard
        .commit(Outcome::Failed, json!({"error": "boom"}))
        .call("commit")?;
    store.record_issued(&signed).call("record_issued")?;
    let r = committed(
        store.begin(&t).call("begin")?,
        "a replay after recording the committed ticket as issued again",
    )?;
    ensure_eq!(r.outcome, Outcome::Failed, "replayed outcome");
    ensure_eq!(r.receipt, json!({"error": "boom"}), "replayed receipt");
    Ok(())
}

/// A ticket whose executor crashed (its guard dropped without commit) stays PENDING and
/// blocked, never executable again; `reconcile` moves it to COMMITTED with the operator's
/// outcome and note, and a replay then gets that receipt.
///
/// # Errors
/// What broke.
pub fn crash_leaves_it_blocked_until_reconciled(make: &MakeStore<'_>) -> Result<(), String> {
    let store = make(&StoreOptions::default());
    let (_, t) = Mint::new()?.now(4)?;
    // The executor "crashes": the guard is dropped without commit.
    drop(execute(store.begin(&t).call("begin")?, "a fresh ticket")?);
    for attempt in 1..=3 {
        blocked(
            store.begin(&t).call("begin")?,
            &format!("attempt {attempt} after a crash"),
        )?;
    }
    let receipt = store
        .reconcile(t.nonce(), Outcome::Unknown, Some("node died mid-rollout"))
        .call("reconcile")?;
    ensure!(receipt.reconciled, "a reconciled receipt does not say so");
    ensure_eq!(
        receipt.note.as_deref(),
        Some("node died mid-rollout"),
        "reconciled note"
    );
    ensure_eq!(
        receipt.receipt,
        serde_json::Value::Null,
        "reconciled receipt body"
    );
    let r = committed(store.begin(&t).call("begin")?, "a reconciled ticket")?;
    ensure_eq!(r, receipt, "receipt of a reconciled ticket");
    Ok(())
}

/// `reconcile` only moves PENDING tickets: an unknown ticket is `NotFound`, an ISSUED or
/// COMMITTED one `NotPending`; an executor committing after the operator reconciled is
/// refused (`NotPending`) and the operator's outcome stands.
///
/// # Errors
/// What broke.
pub fn reconcile_only_moves_pending_tickets(make: &MakeStore<'_>) -> Result<(), String> {
    let store = make(&StoreOptions::default());
    let (signed, t) = Mint::new()?.now(5)?;
    match store.reconcile(t.nonce(), Outcome::Failed, None) {
        Err(StoreError::NotFound(_)) => {}
        other => return Err(format!("reconciling an unknown ticket: {other:?}")),
    }
    store.record_issued(&signed).call("record_issued")?;
    match store.reconcile(t.nonce(), Outcome::Failed, None) {
        Err(StoreError::NotPending {
            state: TicketState::Issued,
            ..
        }) => {}
        other => return Err(format!("reconciling an issued ticket: {other:?}")),
    }
    let guard = execute(store.begin(&t).call("begin")?, "an issued ticket")?;
    store
        .reconcile(t.nonce(), Outcome::Failed, None)
        .call("reconcile")?;
    match guard.commit(Outcome::Succeeded, json!({})) {
        Err(StoreError::NotPending {
            state: TicketState::Committed,
            ..
        }) => {}
        other => return Err(format!("committing a reconciled ticket: {other:?}")),
    }
    match store.reconcile(t.nonce(), Outcome::Succeeded, None) {
        Err(StoreError::NotPending { .. }) => {}
        other => return Err(format!("reconciling a committed ticket: {other:?}")),
    }
    let outcome = store
        .get(t.nonce())
        .call("get")?
        .and_then(|r| r.receipt)
        .map(|r| r.outcome);
    ensure_eq!(
        outcome,
        Some(Outcome::Failed),
        "outcome after the executor's late commit"
    );
    Ok(())
}

/// With a retention of an hour, `prune` removes nothing within the retention and, past it,
/// exactly the ISSUED and COMMITTED rows whose ticket expired more than the retention ago;
/// PENDING rows wait for reconciliation and recent rows stay.
///
/// # Errors
/// What broke.
pub fn prune_removes_only_long_expired_settled_rows(make: &MakeStore<'_>) -> Result<(), String> {
    let store = make(&StoreOptions {
        retention: HumanDuration::from_secs(RETENTION),
        ..StoreOptions::default()
    });
    let mint = Mint::new()?;
    let t0 = Timestamp::now().as_second().saturating_sub(100);
    let (old_issued, _) = mint.at(10, t0)?;
    store.record_issued(&old_issued).call("record_issued")?;
    let (_, old_committed) = mint.at(11, t0)?;
    execute(store.begin(&old_committed).call("begin")?, "an old ticket")?
        .commit(Outcome::Succeeded, json!(null))
        .call("commit")?;
    let (_, old_pending) = mint.at(12, t0)?;
    drop(execute(
        store.begin(&old_pending).call("begin")?,
        "an old ticket",
    )?);
    let (recent, _) = mint.at(13, t0.saturating_add(3000))?;
    store.record_issued(&recent).call("record_issued")?;

    let expired = old_issued.expires_at().as_second();
    let retention = i64::try_from(RETENTION).map_err(|e| e.to_string())?;
    let at = |secs: i64| Timestamp::from_second(secs).call("timestamp");
    ensure_eq!(
        store
            .prune(at(expired.saturating_add(retention))?)
            .call("prune")?,
        0,
        "rows pruned at the end of the retention"
    );
    ensure_eq!(
        store
            .prune(at(expired.saturating_add(retention + 1))?)
            .call("prune")?,
        2,
        "rows pruned past the retention (one issued, one committed)"
    );
    ensure!(
        store.get(old_issued.nonce()).call("get")?.is_none(),
        "an old issued row survived `prune`"
    );
    ensure!(
        store.get(old_committed.nonce()).call("get")?.is_none(),
        "an old committed row survived `prune`"
    );
    ensure_eq!(
        store.get(old_pending.nonce()).call("get")?.map(|r| r.state),
        Some(TicketState::Pending),
        "an old pending row after `prune`"
    );
    ensure!(
        store.get(recent.nonce()).call("get")?.is_some(),
        "a recent row was pruned"
    );
    Ok(())
}

/// With a retention of an hour, `begin` refuses (`TooOld`, recording nothing) a ticket that
/// expired more than the retention ago, since its record may be pruned; a ticket that
/// expired within the retention is still answered (verification refuses expired tickets).
///
/// # Errors
/// What broke.
pub fn begin_refuses_tickets_older_than_the_retention(make: &MakeStore<'_>) -> Result<(), String> {
    let store = make(&StoreOptions {
        retention: HumanDuration::from_secs(RETENTION),
        ..StoreOptions::default()
    });
    let mint = Mint::new()?;
    let now = Timestamp::now().as_second();
    let ttl = i64::try_from(TTL).map_err(|e| e.to_string())?;
    let retention = i64::try_from(RETENTION).map_err(|e| e.to_string())?;
    // Expired the retention and a margin ago.
    let (_, stale) = mint.at(40, now - ttl - retention - 100)?;
    match store.begin(&stale) {
        Err(StoreError::TooOld(_)) => {}
        other => return Err(format!("beginning a ticket past the retention: {other:?}")),
    }
    ensure!(
        store.get(stale.nonce()).call("get")?.is_none(),
        "a refused old ticket was recorded"
    );
    let (_, recent) = mint.at(41, now - ttl - 60)?;
    drop(execute(
        store.begin(&recent).call("begin")?,
        "a ticket expired within the retention",
    )?);
    Ok(())
}

/// Threads racing to redeem one ticket, one thread per handle (one store shared, or one
/// connection each), all released at once: exactly one gets `Execute`; every other gets
/// the receipt or `Blocked`; afterwards the ticket is COMMITTED with the winner's receipt.
///
/// # Errors
/// What broke; fewer than two handles.
pub fn concurrent_redeemers_have_one_winner(handles: &[&dyn TicketStore]) -> Result<(), String> {
    ensure!(handles.len() >= 2, "a race needs two handles at least");
    let (_, t) = Mint::new()?.now(20)?;
    let barrier = Barrier::new(handles.len());
    let results: Vec<Result<bool, String>> = std::thread::scope(|scope| {
        let joins: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (barrier, t) = (&barrier, &t);
                scope.spawn(move || -> Result<bool, String> {
                    barrier.wait();
                    match store.begin(t).call("begin")? {
                        Redemption::Execute(guard) => {
                            guard
                                .commit(Outcome::Succeeded, json!({"winner": i}))
                                .call("commit")?;
                            Ok(true)
                        }
                        Redemption::AlreadyCommitted(_) | Redemption::Blocked { .. } => Ok(false),
                    }
                })
            })
            .collect();
        // Every thread is joined, so a panicking backend is reported, not propagated.
        joins
            .into_iter()
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| Err("a racing thread panicked".into()))
            })
            .collect()
    });
    let won: Vec<bool> = results.into_iter().collect::<Result<_, _>>()?;
    let winners = won.iter().filter(|w| **w).count();
    ensure_eq!(
        winners,
        1,
        "threads that executed, of {} racing handles",
        handles.len()
    );
    let Some(first) = handles.first() else {
        return Err("no handles".into());
    };
    let Some(record) = first.get(t.nonce()).call("get")? else {
        return Err("the raced ticket is unknown to `get`".into());
    };
    ensure_eq!(record.state, TicketState::Committed, "state after the race");
    let winner = won.iter().position(|w| *w);
    ensure_eq!(
        record.receipt.map(|r| r.receipt),
        winner.map(|i| json!({ "winner": i })),
        "the stored receipt (the winner's)"
    );
    Ok(())
}
