//! The [`StateStore`] conformance suite: the trait's invariants as checks every backend runs.
//!
//! A new backend (PostgreSQL, ...) proves itself from its own tests with one call, handing
//! the suite a function that returns a fresh, empty store each time it is called:
//!
//! ```
//! use agentsafe_state::{MemoryStateStore, StateStore, conformance};
//!
//! conformance::run_all(&|| Box::new(MemoryStateStore::new()) as Box<dyn StateStore>)?;
//! # Ok::<(), String>(())
//! ```
//!
//! Every check is also a public function, so a backend's tests can run them one by one
//! (one `#[test]` each, as this crate does in `tests/conformance.rs`). A check never
//! panics: it returns `Err` with what broke, in words. The concurrency checks take several
//! handles on one backend (one store shared by threads, or one connection per thread), so
//! a shared backend can show that separate connections keep the invariants too.
//!
//! The checks use fixed timestamps around 2023-11-14 and keys of their own (`a`, `b`,
//! `root`, ...); a store given to one check directly should be empty.

use std::sync::Barrier;
use std::time::Duration;

use agentsafe_core::{Caller, Request};
use jiff::Timestamp;

use crate::{ApprovalRecord, ApprovalState, Pause, StateError, StateStore, Vote, Windows};

/// One check of the suite: `Ok` when the store keeps the invariant.
pub type Check = fn(&dyn StateStore) -> Result<(), String>;

/// Every single-store check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[(&str, Check)] = &[
    (
        "rate_limit_counts_a_sliding_window_per_key",
        rate_limit_counts_a_sliding_window_per_key,
    ),
    (
        "risk_charges_until_the_deny_threshold",
        risk_charges_until_the_deny_threshold,
    ),
    (
        "breaker_opens_at_the_threshold_and_resume_closes_it",
        breaker_opens_at_the_threshold_and_resume_closes_it,
    ),
    ("pause_holds_until_resume", pause_holds_until_resume),
    (
        "approvals_are_stored_updated_atomically_and_listed",
        approvals_are_stored_updated_atomically_and_listed,
    ),
    ("counters_add_up", counters_add_up),
];

/// One concurrency check: `Ok` when threads racing on `handles` (one thread per handle, all
/// handles on one backend) keep the invariant.
pub type RaceCheck = fn(&[&dyn StateStore]) -> Result<(), String>;

/// Every concurrency check, by name, in the order [`run_all`] runs them.
pub const RACES: &[(&str, RaceCheck)] = &[
    (
        "concurrent_rate_charges_never_exceed_the_limit",
        concurrent_rate_charges_never_exceed_the_limit,
    ),
    (
        "concurrent_approval_updates_keep_every_vote",
        concurrent_approval_updates_keep_every_vote,
    ),
];

/// How many threads [`run_all`] races against one store.
pub const THREADS: usize = 8;

/// Runs every check, each on a fresh store from `make`, and the concurrency checks with
/// [`THREADS`] threads sharing one store from `make`.
///
/// # Errors
/// Every broken check, one per line, each as `CHECK: WHAT BROKE`.
pub fn run_all(make: &dyn Fn() -> Box<dyn StateStore>) -> Result<(), String> {
    let mut problems = Vec::new();
    for (name, check) in CHECKS {
        if let Err(e) = check(make().as_ref()) {
            problems.push(format!("{name}: {e}"));
        }
    }
    for (name, check) in RACES {
        let store = make();
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

/// Names the store call that failed.
trait Call<T> {
    fn call(self, what: &str) -> Result<T, String>;
}

impl<T> Call<T> for Result<T, StateError> {
    fn call(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("`{what}` failed: {e}"))
    }
}

const MIN: Duration = Duration::from_secs(60);

const WINDOWS: Windows = Windows {
    rate: MIN,
    breaker: MIN,
    risk: MIN,
};

/// The instant the checks start at.
const T0: Timestamp = Timestamp::constant(1_700_000_000, 0);

/// `secs` seconds after [`T0`].
fn t(secs: i64) -> Result<Timestamp, String> {
    Timestamp::from_second(T0.as_second().saturating_add(secs))
        .map_err(|e| format!("timestamp {secs}: {e}"))
}

/// `rate_charge` keeps a sliding window per key: it allows up to `limit` charges in the
/// window, refuses the next one without charging it, keeps keys apart, frees a slot as the
/// oldest charge ages out, and `caller_state` counts the charges in the window.
///
/// # Errors
/// What broke.
pub fn rate_limit_counts_a_sliding_window_per_key(s: &dyn StateStore) -> Result<(), String> {
    for i in 0..3u32 {
        let c = s
            .rate_charge("a", t(i.into())?, MIN, 3)
            .call("rate_charge")?;
        ensure!(c.allowed, "charge {} of 3 was refused", i + 1);
        ensure_eq!(c.count, i + 1, "count after charge {}", i + 1);
    }
    let c = s.rate_charge("a", t(10)?, MIN, 3).call("rate_charge")?;
    ensure!(!c.allowed, "a fourth charge in the window was allowed");
    ensure_eq!(c.count, 3, "count of a refused charge");
    ensure!(
        s.rate_charge("b", t(10)?, MIN, 3)
            .call("rate_charge")?
            .allowed,
        "key `b` was refused because of key `a`'s charges"
    );
    ensure!(
        s.rate_charge("a", t(60)?, MIN, 3)
            .call("rate_charge")?
            .allowed,
        "no slot freed when the first charge left the window"
    );
    ensure!(
        !s.rate_charge("a", t(60)?, MIN, 3)
            .call("rate_charge")?
            .allowed,
        "more than one slot freed when one charge left the window"
    );
    ensure_eq!(
        s.caller_state("a", t(60)?, WINDOWS)
            .call("caller_state")?
            .rate_count,
        3,
        "rate count in the window"
    );
    Ok(())
}

/// `risk_charge` returns the score including the weight, charges it only while the score
/// stays below `deny_at`, and forgets charges that left the window.
///
/// # Errors
/// What broke.
pub fn risk_charges_until_the_deny_threshold(s: &dyn StateStore) -> Result<(), String> {
    let charge = |secs, weight| -> Result<u32, String> {
        s.risk_charge("a", t(secs)?, MIN, weight, 75)
            .call("risk_charge")
    };
    ensure_eq!(charge(0, 15)?, 15, "first charge");
    ensure_eq!(charge(1, 50)?, 65, "second charge");
    ensure_eq!(charge(2, 15)?, 80, "a charge reaching the threshold");
    ensure_eq!(
        s.caller_state("a", t(2)?, WINDOWS)
            .call("caller_state")?
            .risk_score,
        65,
        "risk score after a charge that reached the threshold (it must not be charged)"
    );
    ensure_eq!(charge(120, 1)?, 1, "a charge after the window");
    Ok(())
}

/// `record_denial` opens the breaker when `threshold` denials fall in the window, for
/// `cooldown`, for that key only; the breaker closes by itself after the cooldown; denials
/// spread wider than the window never open it; `resume` closes an open breaker and says
/// whether it lifted anything.
///
/// # Errors
/// What broke.
pub fn breaker_opens_at_the_threshold_and_resume_closes_it(
    s: &dyn StateStore,
) -> Result<(), String> {
    let deny = |key, secs, threshold| -> Result<Option<Timestamp>, String> {
        s.record_denial(key, t(secs)?, MIN, threshold, MIN)
            .call("record_denial")
    };
    let open_until = |key, secs| -> Result<Option<Timestamp>, String> {
        Ok(s.caller_state(key, t(secs)?, WINDOWS)
            .call("caller_state")?
            .open_until)
    };
    ensure_eq!(deny("a", 0, 3)?, None, "first of three denials");
    ensure_eq!(deny("a", 1, 3)?, None, "second of three denials");
    ensure_eq!(deny("a", 2, 3)?, Some(t(62)?), "third of three denials");
    ensure_eq!(open_until("a", 3)?, Some(t(62)?), "open breaker");
    ensure_eq!(open_until("b", 3)?, None, "breaker of another key");
    ensure_eq!(open_until("a", 62)?, None, "breaker after its cooldown");
    for i in 0..5 {
        ensure_eq!(
            deny("c", i * 61, 2)?,
            None,
            "denial {} spread wider than the window",
            i + 1
        );
    }
    deny("d", 0, 1)?;
    ensure!(
        s.resume("d").call("resume")?,
        "`resume` of an open breaker lifted nothing"
    );
    ensure_eq!(open_until("d", 1)?, None, "breaker after `resume`");
    ensure!(
        !s.resume("d").call("resume")?,
        "`resume` of a closed breaker said it lifted something"
    );
    Ok(())
}

/// A pause holds, for its key only and whatever the time, until `resume` lifts it.
///
/// # Errors
/// What broke.
pub fn pause_holds_until_resume(s: &dyn StateStore) -> Result<(), String> {
    let p = Pause {
        by: "op".into(),
        reason: "investigating".into(),
        at: t(0)?,
    };
    s.pause("a", &p).call("pause")?;
    let paused = |key| -> Result<Option<Pause>, String> {
        Ok(s.caller_state(key, t(1000)?, WINDOWS)
            .call("caller_state")?
            .paused)
    };
    ensure_eq!(paused("a")?, Some(p), "pause of the paused key");
    ensure_eq!(paused("b")?, None, "pause of another key");
    ensure!(
        s.resume("a").call("resume")?,
        "`resume` of a paused key lifted nothing"
    );
    ensure_eq!(paused("a")?, None, "pause after `resume`");
    Ok(())
}

/// An approval request as the checks store it: id `id`, pending, one approver needed,
/// created at a fixed instant and expiring an hour later. For backend-specific tests too.
pub fn approval_record(id: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        decision_id: "d".into(),
        request: Request {
            action: "scale".into(),
            target: "prod/x".into(),
            caller: Caller::unauthenticated("agent"),
            ..Request::default()
        },
        authenticated: false,
        redacted_params: Vec::new(),
        params_digest: "sha256:00".into(),
        risk: None,
        rule_id: Some("r".into()),
        reason: "needs approval".into(),
        approvers: vec!["approver".into()],
        required: 1,
        created_at: T0,
        expires_at: Timestamp::constant(1_700_003_600, 0),
        state: ApprovalState::Pending,
        votes: Vec::new(),
        denied: None,
        resolved_at: None,
        ticket_nonce: None,
        approved_decision_id: None,
    }
}

/// A vote by `approver` at `at`.
fn vote(approver: &str, at: Timestamp) -> Vote {
    Vote {
        approver: approver.into(),
        at,
        reason: None,
        root: approver.into(),
        roles: vec!["approver".into()],
    }
}

/// Approval requests: a second request with an existing id is a `Conflict`; `approvals`
/// lists them oldest first (then by id); `update_approval` writes the change and returns
/// the stored record, writes nothing when the change fails and returns its error, and is
/// `NotFound` for an unknown id; a stored record reads back unchanged.
///
/// # Errors
/// What broke.
pub fn approvals_are_stored_updated_atomically_and_listed(
    s: &dyn StateStore,
) -> Result<(), String> {
    s.create_approval(&approval_record("b"))
        .call("create_approval")?;
    s.create_approval(&approval_record("a"))
        .call("create_approval")?;
    ensure!(
        matches!(
            s.create_approval(&approval_record("a")),
            Err(StateError::Conflict(_))
        ),
        "a second approval request `a` was not a conflict"
    );
    let ids: Vec<String> = s
        .approvals()
        .call("approvals")?
        .into_iter()
        .map(|r| r.id)
        .collect();
    ensure_eq!(ids, ["a", "b"], "listed approval requests");
    let updated = s
        .update_approval("a", &mut |r| {
            r.votes.push(vote("x", T0));
            Ok(())
        })
        .call("update_approval")?;
    ensure_eq!(updated.votes.len(), 1, "votes in the updated record");
    let refused = s.update_approval("a", &mut |r| {
        r.state = ApprovalState::Denied;
        Err(StateError::Refused("no".into()))
    });
    ensure!(
        matches!(refused, Err(StateError::Refused(_))),
        "a refused change did not return its error: {refused:?}"
    );
    let Some(stored) = s.approval("a").call("approval")? else {
        return Err("approval request `a` is gone".into());
    };
    ensure_eq!(
        stored.state,
        ApprovalState::Pending,
        "state after a refused change (it must write nothing)"
    );
    ensure_eq!(stored.votes, updated.votes, "votes after a refused change");
    let mut expected = approval_record("a");
    expected.votes = updated.votes;
    ensure!(
        stored == expected,
        "the stored record does not read back as written: {stored:?}"
    );
    ensure!(
        s.approval("zz").call("approval")?.is_none(),
        "an unknown approval request `zz` was found"
    );
    ensure!(
        matches!(
            s.update_approval("zz", &mut |_| Ok(())),
            Err(StateError::NotFound(_))
        ),
        "updating an unknown approval request `zz` was not `NotFound`"
    );
    Ok(())
}

/// `add_counter` adds up per name and `counters` lists every counter.
///
/// # Errors
/// What broke.
pub fn counters_add_up(s: &dyn StateStore) -> Result<(), String> {
    s.add_counter("notify_failures", 2).call("add_counter")?;
    s.add_counter("notify_failures", 3).call("add_counter")?;
    s.add_counter("other", 1).call("add_counter")?;
    let counters = s.counters().call("counters")?;
    ensure_eq!(
        counters.get("notify_failures"),
        Some(&5),
        "counter `notify_failures`"
    );
    ensure_eq!(counters.get("other"), Some(&1), "counter `other`");
    ensure_eq!(counters.len(), 2, "number of counters");
    Ok(())
}

/// Runs `work(i, handle)` on one thread per handle, all released at once, and collects
/// every thread's answer.
fn race<T: Send>(
    handles: &[&dyn StateStore],
    work: impl Fn(usize, &dyn StateStore) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    ensure!(handles.len() >= 2, "a race needs two handles at least");
    let barrier = Barrier::new(handles.len());
    let results: Vec<Result<T, String>> = std::thread::scope(|scope| {
        let joins: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    work(i, *h)
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
    results.into_iter().collect()
}

/// Charges each handle makes in [`concurrent_rate_charges_never_exceed_the_limit`].
const TRIES: usize = 20;

/// Check-and-charge is one atomic step: threads racing to charge one rate limit, one
/// thread per handle (handles on one backend: one store shared, or one connection each),
/// are allowed exactly `limit` charges together, never more, and the window counts them.
///
/// # Errors
/// What broke; fewer than two handles.
pub fn concurrent_rate_charges_never_exceed_the_limit(
    handles: &[&dyn StateStore],
) -> Result<(), String> {
    let total = handles.len().saturating_mul(TRIES);
    let limit = u32::try_from(total / 3).map_err(|e| format!("limit: {e}"))?;
    let now = t(0)?;
    let allowed: usize = race(handles, |_, s| {
        let mut allowed = 0;
        for _ in 0..TRIES {
            if s.rate_charge("root", now, MIN, limit)
                .call("rate_charge")?
                .allowed
            {
                allowed += 1;
            }
        }
        Ok(allowed)
    })?
    .into_iter()
    .sum();
    ensure_eq!(
        allowed,
        total / 3,
        "charges allowed to {} racing handles, {total} tries",
        handles.len()
    );
    let Some(first) = handles.first() else {
        return Err("no handles".into());
    };
    ensure_eq!(
        first
            .caller_state("root", now, WINDOWS)
            .call("caller_state")?
            .rate_count,
        limit,
        "rate count after the race"
    );
    Ok(())
}

/// Votes each handle adds in [`concurrent_approval_updates_keep_every_vote`].
const VOTES: usize = 5;

/// `update_approval` reads, changes and writes in one atomic step: threads adding votes
/// to one approval request at once, one thread per handle, lose none of them.
///
/// # Errors
/// What broke; fewer than two handles.
pub fn concurrent_approval_updates_keep_every_vote(
    handles: &[&dyn StateStore],
) -> Result<(), String> {
    let Some(first) = handles.first() else {
        return Err("no handles".into());
    };
    first
        .create_approval(&approval_record("race"))
        .call("create_approval")?;
    race(handles, |i, s| {
        for n in 0..VOTES {
            s.update_approval("race", &mut |r| {
                r.votes.push(vote(&format!("approver-{i}-{n}"), T0));
                Ok(())
            })
            .call("update_approval")?;
        }
        Ok(())
    })?;
    let Some(stored) = first.approval("race").call("approval")? else {
        return Err("approval request `race` is gone".into());
    };
    let mut voters: Vec<&str> = stored.votes.iter().map(|v| v.approver.as_str()).collect();
    voters.sort_unstable();
    voters.dedup();
    ensure_eq!(
        voters.len(),
        handles.len().saturating_mul(VOTES),
        "distinct votes kept from {} racing handles",
        handles.len()
    );
    ensure_eq!(
        stored.votes.len(),
        voters.len(),
        "votes kept (a vote was written twice)"
    );
    Ok(())
}
