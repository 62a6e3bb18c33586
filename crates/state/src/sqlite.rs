//! The SQLite backend: one file in WAL mode, one `BEGIN IMMEDIATE` transaction per operation.
//!
//! `BEGIN IMMEDIATE` takes the database's write lock before the first read, so a
//! check-and-charge in one process cannot interleave with another's; the busy timeout makes
//! the second writer wait instead of failing. Schema version: `PRAGMA user_version` = 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::{
    ApprovalRecord, CallerState, Pause, RateCharge, Standing, StateError, StateStore, Windows,
    from_ms, ms, window_ms,
};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rate_events (key TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rate_events_key ON rate_events (key, at_ms);
CREATE TABLE IF NOT EXISTS risk_events (key TEXT NOT NULL, at_ms INTEGER NOT NULL, score INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS risk_events_key ON risk_events (key, at_ms);
CREATE TABLE IF NOT EXISTS denial_events (key TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS denial_events_key ON denial_events (key, at_ms);
CREATE TABLE IF NOT EXISTS callers (
    key TEXT PRIMARY KEY,
    pause TEXT,
    open_until_ms INTEGER
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// The state store in a SQLite file shared by every process.
#[derive(Debug)]
pub struct SqliteStateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StateError {
    move |source| StateError::Database { op, source }
}

fn json_err(e: serde_json::Error) -> StateError {
    StateError::Corrupt(format!("cannot decode a stored record: {e}"))
}

impl SqliteStateStore {
    /// Opens (creating if needed) the store at `path` with a 10 s busy timeout.
    ///
    /// # Security
    /// The file and its `-wal` and `-shm` files are readable by their owner only (0600),
    /// and so are the folders the store creates (0700); an existing file that others may
    /// read is tightened to 0600 (on Unix).
    ///
    /// # Errors
    /// When the folder or file cannot be created, WAL cannot be enabled, or the file holds a
    /// newer schema.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        SqliteStateStore::open_with(path, Duration::from_secs(10))
    }

    /// Opens the store at `path`, waiting up to `busy_timeout` for other writers.
    ///
    /// # Errors
    /// As [`SqliteStateStore::open`].
    pub fn open_with(path: &Path, busy_timeout: Duration) -> Result<Self, StateError> {
        agentsafe_fs::prepare_private_database(path)
            .map_err(|(path, source)| StateError::Io { path, source })?;
        let conn = Connection::open(path).map_err(db("opening the database"))?;
        conn.busy_timeout(busy_timeout)
            .map_err(db("setting the busy timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db("switching to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::Corrupt(format!(
                "`{}` stays in `{mode}` journal mode, WAL is required",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("setting synchronous=FULL"))?;
        let mut store = SqliteStateStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        };
        store.create_schema()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn create_schema(&mut self) -> Result<(), StateError> {
        let conn = self
            .conn
            .get_mut()
            .map_err(|_| StateError::Corrupt("lock poisoned".into()))?;
        // A store at the current version needs no write at open (and so no fsync): the
        // common case for every short-lived process.
        let current: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db("reading the schema version"))?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("creating the schema"))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db("reading the schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(StateError::Corrupt(format!(
                "`{}` has schema version {version}, newer than this agentsafe ({SCHEMA_VERSION})",
                self.path.display()
            )));
        }
        tx.execute_batch(SCHEMA)
            .map_err(db("creating the schema"))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db("setting the schema version"))?;
        tx.commit().map_err(db("creating the schema"))
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committing when it succeeds.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StateError::Corrupt("lock poisoned".into()))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        let out = f(&tx)?;
        tx.commit().map_err(db(op))?;
        Ok(out)
    }
}

fn count(tx: &Transaction<'_>, table: &str, key: &str, since: i64) -> Result<u32, StateError> {
    let n: i64 = tx
        .query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE key = ?1 AND at_ms > ?2"),
            params![key, since],
            |r| r.get(0),
        )
        .map_err(db("counting events"))?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn risk_sum(tx: &Transaction<'_>, key: &str, since: i64) -> Result<u32, StateError> {
    let n: i64 = tx
        .query_row(
            "SELECT COALESCE(SUM(score), 0) FROM risk_events WHERE key = ?1 AND at_ms > ?2",
            params![key, since],
            |r| r.get(0),
        )
        .map_err(db("summing risk"))?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn prune(tx: &Transaction<'_>, table: &str, key: &str, since: i64) -> Result<(), StateError> {
    tx.execute(
        &format!("DELETE FROM {table} WHERE key = ?1 AND at_ms <= ?2"),
        params![key, since],
    )
    .map_err(db("pruning old events"))?;
    Ok(())
}

fn read_approval(tx: &Transaction<'_>, id: &str) -> Result<Option<ApprovalRecord>, StateError> {
    let body: Option<String> = tx
        .query_row("SELECT body FROM approvals WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db("reading an approval"))?;
    body.map(|b| serde_json::from_str(&b).map_err(json_err))
        .transpose()
}

impl StateStore for SqliteStateStore {
    fn rate_charge(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        limit: u32,
    ) -> Result<RateCharge, StateError> {
        let since = ms(now).saturating_sub(window_ms(window));
        self.write("charging the rate limit", |tx| {
            prune(tx, "rate_events", key, since)?;
            let n = count(tx, "rate_events", key, since)?;
            if n >= limit {
                return Ok(RateCharge {
                    allowed: false,
                    count: n,
                });
            }
            tx.execute(
                "INSERT INTO rate_events (key, at_ms) VALUES (?1, ?2)",
                params![key, ms(now)],
            )
            .map_err(db("charging the rate limit"))?;
            Ok(RateCharge {
                allowed: true,
                count: n.saturating_add(1),
            })
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
        let since = ms(now).saturating_sub(window_ms(window));
        self.write("charging cumulative risk", |tx| {
            prune(tx, "risk_events", key, since)?;
            let score = risk_sum(tx, key, since)?.saturating_add(weight);
            if score < deny_at && weight > 0 {
                tx.execute(
                    "INSERT INTO risk_events (key, at_ms, score) VALUES (?1, ?2, ?3)",
                    params![key, ms(now), weight],
                )
                .map_err(db("charging cumulative risk"))?;
            }
            Ok(score)
        })
    }

    fn record_denial(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        threshold: u32,
        cooldown: Duration,
    ) -> Result<Option<Timestamp>, StateError> {
        let since = ms(now).saturating_sub(window_ms(window));
        self.write("counting a denial", |tx| {
            prune(tx, "denial_events", key, since)?;
            tx.execute(
                "INSERT INTO denial_events (key, at_ms) VALUES (?1, ?2)",
                params![key, ms(now)],
            )
            .map_err(db("counting a denial"))?;
            let n = count(tx, "denial_events", key, since)?;
            if threshold == 0 || n < threshold {
                return Ok(None);
            }
            let until = ms(now).saturating_add(window_ms(cooldown));
            tx.execute(
                "INSERT INTO callers (key, open_until_ms) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET open_until_ms = excluded.open_until_ms",
                params![key, until],
            )
            .map_err(db("opening the breaker"))?;
            // The denials that tripped it are spent: after the cooldown it starts afresh.
            tx.execute("DELETE FROM denial_events WHERE key = ?1", [key])
                .map_err(db("opening the breaker"))?;
            Ok(Some(from_ms(until)))
        })
    }

    fn caller_state(
        &self,
        key: &str,
        now: Timestamp,
        windows: Windows,
    ) -> Result<CallerState, StateError> {
        let since = |w: Duration| ms(now).saturating_sub(window_ms(w));
        self.write("reading a caller's state", |tx| {
            let row: Option<(Option<String>, Option<i64>)> = tx
                .query_row(
                    "SELECT pause, open_until_ms FROM callers WHERE key = ?1",
                    [key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db("reading a caller's state"))?;
            let (pause, open) = row.unwrap_or((None, None));
            let paused = pause
                .map(|p| serde_json::from_str::<Pause>(&p).map_err(json_err))
                .transpose()?;
            Ok(CallerState {
                paused,
                open_until: open.filter(|u| *u > ms(now)).map(from_ms),
                rate_count: count(tx, "rate_events", key, since(windows.rate))?,
                denials: count(tx, "denial_events", key, since(windows.breaker))?,
                risk_score: risk_sum(tx, key, since(windows.risk))?,
            })
        })
    }

    fn standing(&self, key: &str, now: Timestamp) -> Result<Standing, StateError> {
        // One SELECT is its own read transaction: no write lock, no commit to sync.
        let conn = self
            .conn
            .lock()
            .map_err(|_| StateError::Corrupt("lock poisoned".into()))?;
        let mut stmt = conn
            .prepare_cached("SELECT pause, open_until_ms FROM callers WHERE key = ?1")
            .map_err(db("reading a caller's standing"))?;
        let row: Option<(Option<String>, Option<i64>)> = stmt
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db("reading a caller's standing"))?;
        let (pause, open) = row.unwrap_or((None, None));
        Ok(Standing {
            paused: pause
                .map(|p| serde_json::from_str::<Pause>(&p).map_err(json_err))
                .transpose()?,
            open_until: open.filter(|u| *u > ms(now)).map(from_ms),
        })
    }

    fn pause(&self, key: &str, pause: &Pause) -> Result<(), StateError> {
        let body = serde_json::to_string(pause).map_err(json_err)?;
        self.write("pausing a caller", |tx| {
            tx.execute(
                "INSERT INTO callers (key, pause) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET pause = excluded.pause",
                params![key, body],
            )
            .map_err(db("pausing a caller"))?;
            Ok(())
        })
    }

    fn resume(&self, key: &str) -> Result<bool, StateError> {
        self.write("resuming a caller", |tx| {
            let n = tx
                .execute(
                    "UPDATE callers SET pause = NULL, open_until_ms = NULL
                     WHERE key = ?1 AND (pause IS NOT NULL OR open_until_ms IS NOT NULL)",
                    [key],
                )
                .map_err(db("resuming a caller"))?;
            tx.execute("DELETE FROM denial_events WHERE key = ?1", [key])
                .map_err(db("resuming a caller"))?;
            Ok(n > 0)
        })
    }

    fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StateError> {
        let body = serde_json::to_string(record).map_err(json_err)?;
        self.write("creating an approval", |tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO approvals (id, created_ms, body) VALUES (?1, ?2, ?3)",
                    params![record.id, ms(record.created_at), body],
                )
                .map_err(db("creating an approval"))?;
            if n == 0 {
                return Err(StateError::Conflict(record.id.clone()));
            }
            Ok(())
        })
    }

    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StateError> {
        self.write("reading an approval", |tx| read_approval(tx, id))
    }

    fn approvals(&self) -> Result<Vec<ApprovalRecord>, StateError> {
        self.write("listing approvals", |tx| {
            let mut stmt = tx
                .prepare("SELECT body FROM approvals ORDER BY created_ms, id")
                .map_err(db("listing approvals"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db("listing approvals"))?;
            let mut out = Vec::new();
            for body in rows {
                let body = body.map_err(db("listing approvals"))?;
                out.push(serde_json::from_str(&body).map_err(json_err)?);
            }
            Ok(out)
        })
    }

    fn update_approval(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut ApprovalRecord) -> Result<(), StateError>,
    ) -> Result<ApprovalRecord, StateError> {
        self.write("updating an approval", |tx| {
            let mut record =
                read_approval(tx, id)?.ok_or_else(|| StateError::NotFound(id.to_owned()))?;
            change(&mut record)?;
            let body = serde_json::to_string(&record).map_err(json_err)?;
            tx.execute(
                "UPDATE approvals SET body = ?2 WHERE id = ?1",
                params![id, body],
            )
            .map_err(db("updating an approval"))?;
            Ok(record)
        })
    }

    fn add_counter(&self, name: &str, n: u64) -> Result<(), StateError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.write("counting", |tx| {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                params![name, n],
            )
            .map_err(db("counting"))?;
            Ok(())
        })
    }

    fn counters(&self) -> Result<BTreeMap<String, u64>, StateError> {
        self.write("reading counters", |tx| {
            let mut stmt = tx
                .prepare("SELECT name, value FROM counters ORDER BY name")
                .map_err(db("reading counters"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db("reading counters"))?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (name, value) = row.map_err(db("reading counters"))?;
                out.insert(name, u64::try_from(value).unwrap_or(0));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests;
