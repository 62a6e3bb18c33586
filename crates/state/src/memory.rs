//! The in-memory backend: the same semantics as SQLite, for unit tests and single-process use.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;

use crate::{
    ApprovalRecord, CallerState, Pause, RateCharge, StateError, StateStore, Windows, from_ms, ms,
    window_ms,
};

#[derive(Debug, Default)]
struct Inner {
    rate: HashMap<String, Vec<i64>>,
    risk: HashMap<String, Vec<(i64, u32)>>,
    denials: HashMap<String, Vec<i64>>,
    pauses: HashMap<String, Pause>,
    open_until: HashMap<String, i64>,
    approvals: BTreeMap<String, ApprovalRecord>,
    counters: BTreeMap<String, u64>,
}

/// The state store in memory; state ends with the value.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    inner: Mutex<Inner>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStateStore::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StateError> {
        self.inner
            .lock()
            .map_err(|_| StateError::Corrupt("lock poisoned".into()))
    }
}

fn since(now: Timestamp, w: Duration) -> i64 {
    ms(now).saturating_sub(window_ms(w))
}

fn count(events: Option<&Vec<i64>>, since: i64) -> u32 {
    let n = events.map_or(0, |v| v.iter().filter(|t| **t > since).count());
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn risk_sum(events: Option<&Vec<(i64, u32)>>, since: i64) -> u32 {
    events.map_or(0, |v| {
        v.iter()
            .filter(|(t, _)| *t > since)
            .fold(0u32, |a, (_, s)| a.saturating_add(*s))
    })
}

impl StateStore for MemoryStateStore {
    fn rate_charge(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        limit: u32,
    ) -> Result<RateCharge, StateError> {
        let since = since(now, window);
        let mut inner = self.lock()?;
        let events = inner.rate.entry(key.to_owned()).or_default();
        events.retain(|t| *t > since);
        let n = count(Some(events), since);
        if n >= limit {
            return Ok(RateCharge {
                allowed: false,
                count: n,
            });
        }
        events.push(ms(now));
        Ok(RateCharge {
            allowed: true,
            count: n.saturating_add(1),
        })
    }

    fn risk_charge(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        weight: u32,
        deny_at: u32,
    ) -> Result<u32, StateError> {
        let since = since(now, window);
        let mut inner = self.lock()?;
        let events = inner.risk.entry(key.to_owned()).or_default();
        events.retain(|(t, _)| *t > since);
        let score = risk_sum(Some(events), since).saturating_add(weight);
        if score < deny_at && weight > 0 {
            events.push((ms(now), weight));
        }
        Ok(score)
    }

    fn record_denial(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        threshold: u32,
        cooldown: Duration,
    ) -> Result<Option<Timestamp>, StateError> {
        let since = since(now, window);
        let mut inner = self.lock()?;
        let events = inner.denials.entry(key.to_owned()).or_default();
        events.retain(|t| *t > since);
        events.push(ms(now));
        if threshold == 0 || count(Some(events), since) < threshold {
            return Ok(None);
        }
        events.clear();
        let until = ms(now).saturating_add(window_ms(cooldown));
        inner.open_until.insert(key.to_owned(), until);
        Ok(Some(from_ms(until)))
    }

    fn caller_state(
        &self,
        key: &str,
        now: Timestamp,
        windows: Windows,
    ) -> Result<CallerState, StateError> {
        let inner = self.lock()?;
        Ok(CallerState {
            paused: inner.pauses.get(key).cloned(),
            open_until: inner
                .open_until
                .get(key)
                .copied()
                .filter(|u| *u > ms(now))
                .map(from_ms),
            rate_count: count(inner.rate.get(key), since(now, windows.rate)),
            denials: count(inner.denials.get(key), since(now, windows.breaker)),
            risk_score: risk_sum(inner.risk.get(key), since(now, windows.risk)),
        })
    }

    fn pause(&self, key: &str, pause: &Pause) -> Result<(), StateError> {
        self.lock()?.pauses.insert(key.to_owned(), pause.clone());
        Ok(())
    }

    fn resume(&self, key: &str) -> Result<bool, StateError> {
        let mut inner = self.lock()?;
        let paused = inner.pauses.remove(key).is_some();
        let open = inner.open_until.remove(key).is_some();
        inner.denials.remove(key);
        Ok(paused || open)
    }

    fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StateError> {
        let mut inner = self.lock()?;
        if inner.approvals.contains_key(&record.id) {
            return Err(StateError::Conflict(record.id.clone()));
        }
        inner.approvals.insert(record.id.clone(), record.clone());
        Ok(())
    }

    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StateError> {
        Ok(self.lock()?.approvals.get(id).cloned())
    }

    fn approvals(&self) -> Result<Vec<ApprovalRecord>, StateError> {
        let mut all: Vec<ApprovalRecord> = self.lock()?.approvals.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    fn update_approval(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut ApprovalRecord) -> Result<(), StateError>,
    ) -> Result<ApprovalRecord, StateError> {
        let mut inner = self.lock()?;
        let stored = inner
            .approvals
            .get_mut(id)
            .ok_or_else(|| StateError::NotFound(id.to_owned()))?;
        let mut record = stored.clone();
        change(&mut record)?;
        *stored = record.clone();
        Ok(record)
    }

    fn add_counter(&self, name: &str, n: u64) -> Result<(), StateError> {
        let mut inner = self.lock()?;
        let c = inner.counters.entry(name.to_owned()).or_default();
        *c = c.saturating_add(n);
        Ok(())
    }

    fn counters(&self) -> Result<BTreeMap<String, u64>, StateError> {
        Ok(self.lock()?.counters.clone())
    }
}
