//! Bounded waits: poll a describe call until the resource reaches a state, watching the
//! run's [`Cancel`] handle between polls.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use agentsafe_core::Cancel;

use crate::AwsError;

/// Sleeps `d`, or returns [`AwsError::Cancelled`] as soon as `cancel` fires.
pub(crate) async fn sleep(d: Duration, cancel: &Cancel) -> Result<(), AwsError> {
    let mut timer = pin!(tokio::time::sleep(d));
    let mut cancelled = pin!(cancel.cancelled());
    poll_fn(|cx| {
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(AwsError::Cancelled));
        }
        timer.as_mut().poll(cx).map(Ok)
    })
    .await
}

/// Polls `probe` until it reports done (`Ok(Ok(value))`), at most `limit` long. A probe
/// answers `Ok(Err(seen))` while waiting, `seen` describing the state it saw, which the
/// timeout error reports; an `Err` of the probe ends the wait.
///
/// # Errors
/// The probe's error, [`AwsError::Cancelled`], or [`AwsError::WaitTimeout`] naming `what`.
pub(crate) async fn until<T, F, Fut>(
    what: &str,
    limit: Duration,
    cancel: &Cancel,
    mut probe: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>, AwsError>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        if cancel.is_cancelled() {
            return Err(AwsError::Cancelled);
        }
        let seen = match probe().await? {
            Ok(v) => return Ok(v),
            Err(seen) => seen,
        };
        let elapsed = started.elapsed();
        if elapsed >= limit {
            return Err(AwsError::WaitTimeout(format!(
                "{what}: not reached within {:.1} s (last seen: {seen}); the change was requested, \
                 check the resource",
                limit.as_secs_f64()
            )));
        }
        sleep(pause.min(limit.saturating_sub(elapsed)), cancel).await?;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use std::cell::Cell;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn waits_until_done() {
        let calls = Cell::new(0);
        let out = rt().block_on(until("x", Duration::from_secs(5), &Cancel::new(), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                Ok(if n < 3 {
                    Err(format!("step {n}"))
                } else {
                    Ok(n)
                })
            }
        }));
        assert_eq!(out, Ok(3));
    }

    #[test]
    fn times_out_with_the_last_state() {
        let out: Result<(), _> = rt().block_on(until(
            "instance `i-01234567` stopped",
            Duration::from_millis(600),
            &Cancel::new(),
            || async { Ok(Err("stopping".to_owned())) },
        ));
        let e = out.unwrap_err().to_string();
        assert!(
            e.contains(
                "instance `i-01234567` stopped: not reached within 0.6 s (last seen: stopping)"
            ),
            "{e}"
        );
    }

    #[test]
    fn stops_on_cancel() {
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let out: Result<(), _> =
            rt().block_on(until("x", Duration::from_secs(600), &cancel, move || {
                c2.cancel();
                async { Ok(Err("pending".to_owned())) }
            }));
        assert_eq!(out, Err(AwsError::Cancelled));
    }
}
