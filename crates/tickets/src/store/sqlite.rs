//! The durable [`TicketStore`]: one SQLite file in WAL mode shared by every process, with a
//! writer thread per process that groups concurrent requests into one transaction.
//!
//! # Durability and group commit
//! Every request (begin, commit, reconcile, ...) is sent to the store's writer thread. The
//! thread takes the first waiting request plus every other request that arrived meanwhile
//! (up to `max_batch`), runs them in order inside one `BEGIN IMMEDIATE` transaction, commits,
//! and only then answers each caller. Concurrent redemptions therefore share one fsync.
//!
//! `synchronous=FULL`: in WAL mode, `NORMAL` may lose the last transactions on power loss.
//! A lost PENDING transition would let a ticket whose action already ran execute a second
//! time after the machine restarts, which is exactly what this store exists to prevent, so
//! every commit is fsynced; group commit pays for it.
//!
//! # Several processes
//! Each process has its own connection and writer thread. `BEGIN IMMEDIATE` takes SQLite's
//! write lock before anything is read, the transition is a conditional upsert
//! (`... ON CONFLICT DO UPDATE ... WHERE state = 'issued'`) whose row count says who won,
//! and a busy timeout makes a writer wait for another process's transaction instead of
//! failing. A failed batch is retried request by request, so one bad request cannot fail
//! the others it was grouped with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use agentsafe_core::{DecisionId, Timestamp};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::duration::HumanDuration;
use crate::error::StoreError;
use crate::store::{
    CommitPending, Outcome, PendingGuard, Receipt, Redemption, StoreOptions, TicketFacts,
    TicketRecord, TicketState, TicketStore, ms_timestamp, now_ms,
};
use crate::ticket::{Nonce, SignedTicket, VerifiedTicket};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// The table is keyed by the time-ordered nonce (`WITHOUT ROWID`, so the key index is the
/// table and new rows land at its end). Times are Unix milliseconds.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tickets (
    nonce        TEXT PRIMARY KEY NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('issued', 'pending', 'committed')),
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    decision_id  TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    issued_at    INTEGER,
    pending_at   INTEGER,
    committed_at INTEGER,
    outcome      TEXT CHECK (outcome IN ('succeeded', 'failed', 'unknown')),
    receipt      TEXT,
    note         TEXT,
    reconciled   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tickets_expires_at ON tickets (expires_at);
";

/// Ticket states in a SQLite file (WAL, `synchronous=FULL`), shared by every process that
/// opens the same file. See the module documentation for how writes are grouped.
pub struct SqliteTicketStore {
    handle: Arc<Handle>,
    path: PathBuf,
    retention: HumanDuration,
}

impl fmt::Debug for SqliteTicketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTicketStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The sending side of the writer thread; the thread ends when the last handle is dropped.
struct Handle {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Job {
    op: Op,
    reply: mpsc::SyncSender<Result<Reply, StoreError>>,
}

enum Op {
    RecordIssued(TicketFacts),
    Begin(TicketFacts),
    Commit {
        nonce: Nonce,
        outcome: Outcome,
        receipt: serde_json::Value,
    },
    Reconcile {
        nonce: Nonce,
        outcome: Outcome,
        note: Option<String>,
    },
    Get(Nonce),
    Prune {
        cutoff_ms: i64,
    },
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::RecordIssued(_) => "recording an issued ticket",
            Op::Begin(_) => "beginning a redemption",
            Op::Commit { .. } => "committing a redemption",
            Op::Reconcile { .. } => "reconciling a ticket",
            Op::Get(_) => "reading a ticket",
            Op::Prune { .. } => "pruning expired tickets",
        }
    }
}

enum Reply {
    Unit,
    Begin(BeginResult),
    Receipt(Receipt),
    Record(Option<TicketRecord>),
    Count(u64),
}

enum BeginResult {
    Execute,
    AlreadyCommitted(Receipt),
    Blocked,
}

impl SqliteTicketStore {
    /// Opens (creating if needed) the store at `path` with default options.
    ///
    /// # Errors
    /// As [`SqliteTicketStore::open_with`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        SqliteTicketStore::open_with(path, &StoreOptions::default())
    }

    /// Opens (creating if needed) the store at `path`: creates its folder, switches the file
    /// to WAL, sets `synchronous=FULL` and the busy timeout, creates the schema, and starts
    /// the writer thread.
    ///
    /// # Security
    /// The file and its `-wal` and `-shm` files are readable by their owner only (0600),
    /// and so are the folders the store creates (0700); an existing file that others may
    /// read is tightened to 0600 (on Unix).
    ///
    /// # Errors
    /// When the folder or file cannot be created or its mode tightened, the file cannot be opened or set to WAL, or it
    /// holds a newer schema.
    pub fn open_with(path: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        agentsafe_fs::prepare_private_database(path)
            .map_err(|(path, source)| StoreError::Io { path, source })?;
        let db = |op| move |source| StoreError::Database { op, source };
        let conn = Connection::open(path).map_err(db("opening the database"))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(db("setting the busy timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db("switching to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Setup {
                path: path.to_owned(),
                detail: format!("the database stays in `{mode}` journal mode, WAL is required"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("setting synchronous=FULL"))?;
        create_schema(&conn, path)?;

        let (tx, rx) = mpsc::channel::<Job>();
        let max_batch = options.max_batch.max(1);
        let retention_ms = options.retention.as_secs_i64().saturating_mul(1000);
        let thread = std::thread::Builder::new()
            .name("agentsafe-ticket-store".to_owned())
            .spawn(move || writer_loop(&conn, &rx, max_batch, retention_ms))
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(SqliteTicketStore {
            handle: Arc::new(Handle {
                tx: Some(tx),
                thread: Some(thread),
            }),
            path: path.to_owned(),
            retention: options.retention,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Handle {
    fn call(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(Job { op, reply })
            .map_err(|_| StoreError::WriterGone)?;
        answer.recv().map_err(|_| StoreError::WriterGone)?
    }
}

fn unexpected_reply() -> StoreError {
    StoreError::WriterGone
}

impl CommitPending for Handle {
    fn commit_pending(
        &self,
        nonce: Nonce,
        outcome: Outcome,
        receipt: serde_json::Value,
    ) -> Result<Receipt, StoreError> {
        match self.call(Op::Commit {
            nonce,
            outcome,
            receipt,
        })? {
            Reply::Receipt(r) => Ok(r),
            _ => Err(unexpected_reply()),
        }
    }
}

impl TicketStore for SqliteTicketStore {
    fn record_issued(&self, ticket: &SignedTicket) -> Result<(), StoreError> {
        match self
            .handle
            .call(Op::RecordIssued(TicketFacts::from_signed(ticket)))?
        {
            Reply::Unit => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    fn begin(&self, ticket: &VerifiedTicket) -> Result<Redemption, StoreError> {
        let facts = TicketFacts::from_verified(ticket);
        let nonce = facts.nonce;
        match self.handle.call(Op::Begin(facts))? {
            Reply::Begin(BeginResult::Execute) => {
                let sink: Arc<dyn CommitPending> = self.handle.clone();
                Ok(Redemption::Execute(PendingGuard::new(nonce, sink)))
            }
            Reply::Begin(BeginResult::AlreadyCommitted(r)) => Ok(Redemption::AlreadyCommitted(r)),
            Reply::Begin(BeginResult::Blocked) => Ok(Redemption::Blocked {
                state: TicketState::Pending,
            }),
            _ => Err(unexpected_reply()),
        }
    }

    fn reconcile(
        &self,
        nonce: Nonce,
        outcome: Outcome,
        note: Option<&str>,
    ) -> Result<Receipt, StoreError> {
        match self.handle.call(Op::Reconcile {
            nonce,
            outcome,
            note: note.map(str::to_owned),
        })? {
            Reply::Receipt(r) => Ok(r),
            _ => Err(unexpected_reply()),
        }
    }

    fn get(&self, nonce: Nonce) -> Result<Option<TicketRecord>, StoreError> {
        match self.handle.call(Op::Get(nonce))? {
            Reply::Record(r) => Ok(r),
            _ => Err(unexpected_reply()),
        }
    }

    fn prune(&self, now: Timestamp) -> Result<u64, StoreError> {
        let cutoff_ms = now
            .as_millisecond()
            .saturating_sub(self.retention.as_secs_i64().saturating_mul(1000));
        match self.handle.call(Op::Prune { cutoff_ms })? {
            Reply::Count(n) => Ok(n),
            _ => Err(unexpected_reply()),
        }
    }
}

fn create_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let db = |source| StoreError::Database {
        op: "creating the schema",
        source,
    };
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let result = (|| {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Setup {
                path: path.to_owned(),
                detail: format!(
                    "schema version {version} was written by a newer agentsafe (this one knows {SCHEMA_VERSION})"
                ),
            });
        }
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db)
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn writer_loop(conn: &Connection, rx: &mpsc::Receiver<Job>, max_batch: usize, retention_ms: i64) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match run_batch(conn, &batch, retention_ms) {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            // One request broke the transaction: retry one by one, so it only fails itself.
            Err(BatchError::Request(_)) if batch.len() > 1 => {
                for job in batch.drain(..) {
                    let answer = match run_batch(conn, std::slice::from_ref(&job), retention_ms) {
                        Ok(mut results) => results.pop().unwrap_or(Err(StoreError::WriterGone)),
                        Err(e) => Err(StoreError::Database {
                            op: job.op.name(),
                            source: e.into_inner(),
                        }),
                    };
                    let _ = job.reply.send(answer);
                }
            }
            // The transaction itself could not start or commit (a lock held past the busy
            // timeout, a full disk): retrying each request would only repeat the wait.
            Err(e) => {
                let source = e.into_inner();
                for job in batch.drain(..) {
                    let source = rusqlite::Error::SqliteFailure(
                        sqlite_code(&source),
                        Some(source.to_string()),
                    );
                    let _ = job.reply.send(Err(StoreError::Database {
                        op: job.op.name(),
                        source,
                    }));
                }
            }
        }
    }
}

/// Why a batch failed.
enum BatchError {
    /// `BEGIN IMMEDIATE` or `COMMIT` failed: nothing can be written now.
    Transaction(rusqlite::Error),
    /// A statement of one request failed.
    Request(rusqlite::Error),
}

impl BatchError {
    fn into_inner(self) -> rusqlite::Error {
        match self {
            BatchError::Transaction(e) | BatchError::Request(e) => e,
        }
    }
}

/// The SQLite error code of `e`, to copy it for every request of a failed batch.
fn sqlite_code(e: &rusqlite::Error) -> rusqlite::ffi::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, _) => *code,
        _ => rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
    }
}

type BatchResult = Result<Vec<Result<Reply, StoreError>>, BatchError>;

/// Runs `jobs` in one write transaction. The outer error (a database failure) rolls back the
/// whole batch; inner errors (a commit of a ticket that is not pending) belong to one request.
fn run_batch(conn: &Connection, jobs: &[Job], retention_ms: i64) -> BatchResult {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(BatchError::Transaction)?;
    let now = now_ms();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        match apply(conn, &job.op, now, retention_ms) {
            Ok(result) => results.push(result),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(BatchError::Request(e));
            }
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(BatchError::Transaction(e));
    }
    Ok(results)
}

fn apply(
    conn: &Connection,
    op: &Op,
    now: i64,
    retention_ms: i64,
) -> Result<Result<Reply, StoreError>, rusqlite::Error> {
    match op {
        Op::RecordIssued(f) => {
            conn.prepare_cached(
                "INSERT INTO tickets (nonce, state, action, target, decision_id, expires_at, issued_at)
                 VALUES (?1, 'issued', ?2, ?3, ?4, ?5, ?6) ON CONFLICT (nonce) DO NOTHING",
            )?
            .execute(params![
                f.nonce.to_string(),
                f.action,
                f.target,
                f.decision_id.to_string(),
                f.expires_at_ms,
                now
            ])?;
            Ok(Ok(Reply::Unit))
        }
        Op::Begin(f) => {
            let nonce = f.nonce.to_string();
            if f.expires_at_ms < now.saturating_sub(retention_ms) {
                return Ok(Err(StoreError::TooOld(nonce)));
            }
            let changed = conn
                .prepare_cached(
                    "INSERT INTO tickets (nonce, state, action, target, decision_id, expires_at, pending_at)
                     VALUES (?1, 'pending', ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (nonce) DO UPDATE SET state = 'pending', pending_at = excluded.pending_at
                     WHERE tickets.state = 'issued'",
                )?
                .execute(params![
                    nonce,
                    f.action,
                    f.target,
                    f.decision_id.to_string(),
                    f.expires_at_ms,
                    now
                ])?;
            if changed == 1 {
                return Ok(Ok(Reply::Begin(BeginResult::Execute)));
            }
            Ok(match read_row(conn, f.nonce)? {
                Ok(Some(row)) => match (row.state, row.receipt) {
                    (TicketState::Pending, _) => Ok(Reply::Begin(BeginResult::Blocked)),
                    (TicketState::Committed, Some(r)) => {
                        Ok(Reply::Begin(BeginResult::AlreadyCommitted(r)))
                    }
                    (state, _) => Err(StoreError::Corrupt {
                        nonce,
                        detail: format!("{state} after a refused begin"),
                    }),
                },
                Ok(None) => Err(StoreError::Corrupt {
                    nonce,
                    detail: "missing after a refused begin".to_owned(),
                }),
                Err(e) => Err(e),
            })
        }
        Op::Commit {
            nonce,
            outcome,
            receipt,
        } => {
            let text = serde_json::to_string(receipt).unwrap_or_else(|_| "null".to_owned());
            let changed = conn
                .prepare_cached(
                    "UPDATE tickets SET state = 'committed', outcome = ?2, receipt = ?3, committed_at = ?4
                     WHERE nonce = ?1 AND state = 'pending'",
                )?
                .execute(params![nonce.to_string(), outcome.as_str(), text, now])?;
            if changed == 1 {
                return Ok(Ok(Reply::Receipt(Receipt {
                    nonce: *nonce,
                    outcome: *outcome,
                    receipt: receipt.clone(),
                    committed_at: ms_timestamp(now),
                    reconciled: false,
                    note: None,
                })));
            }
            Ok(Err(not_pending(conn, *nonce)?))
        }
        Op::Reconcile {
            nonce,
            outcome,
            note,
        } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE tickets SET state = 'committed', outcome = ?2, receipt = 'null', note = ?3,
                     committed_at = ?4, reconciled = 1
                     WHERE nonce = ?1 AND state = 'pending'",
                )?
                .execute(params![nonce.to_string(), outcome.as_str(), note, now])?;
            if changed == 1 {
                return Ok(Ok(Reply::Receipt(Receipt {
                    nonce: *nonce,
                    outcome: *outcome,
                    receipt: serde_json::Value::Null,
                    committed_at: ms_timestamp(now),
                    reconciled: true,
                    note: note.clone(),
                })));
            }
            Ok(Err(not_pending(conn, *nonce)?))
        }
        Op::Get(nonce) => Ok(read_row(conn, *nonce)?.map(Reply::Record)),
        Op::Prune { cutoff_ms } => {
            let n = conn
                .prepare_cached("DELETE FROM tickets WHERE expires_at < ?1 AND state <> 'pending'")?
                .execute(params![cutoff_ms])?;
            Ok(Ok(Reply::Count(u64::try_from(n).unwrap_or(u64::MAX))))
        }
    }
}

/// The error for a commit or reconcile that changed nothing.
fn not_pending(conn: &Connection, nonce: Nonce) -> Result<StoreError, rusqlite::Error> {
    Ok(match read_row(conn, nonce)? {
        Ok(Some(row)) => StoreError::NotPending {
            nonce: nonce.to_string(),
            state: row.state,
        },
        Ok(None) => StoreError::NotFound(nonce.to_string()),
        Err(e) => e,
    })
}

type RawRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);

fn read_row(
    conn: &Connection,
    nonce: Nonce,
) -> Result<Result<Option<TicketRecord>, StoreError>, rusqlite::Error> {
    let raw: Option<RawRow> = conn
        .prepare_cached(
            "SELECT state, action, target, decision_id, expires_at, issued_at, pending_at,
                    committed_at, outcome, receipt, note, reconciled
             FROM tickets WHERE nonce = ?1",
        )?
        .query_row(params![nonce.to_string()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })
        .optional()?;
    Ok(raw.map(|raw| to_record(nonce, raw)).transpose())
}

fn to_record(nonce: Nonce, raw: RawRow) -> Result<TicketRecord, StoreError> {
    let (
        state,
        action,
        target,
        decision_id,
        expires_at,
        issued_at,
        pending_at,
        committed_at,
        outcome,
        receipt,
        note,
        reconciled,
    ) = raw;
    let corrupt = |detail: String| StoreError::Corrupt {
        nonce: nonce.to_string(),
        detail,
    };
    let state: TicketState = state.parse().map_err(corrupt)?;
    let decision_id: DecisionId = decision_id
        .parse()
        .map_err(|e: agentsafe_core::CoreError| corrupt(e.to_string()))?;
    let receipt = match (state, outcome, committed_at) {
        (TicketState::Committed, Some(outcome), Some(committed_at)) => Some(Receipt {
            nonce,
            outcome: outcome.parse().map_err(corrupt)?,
            receipt: match receipt {
                Some(text) => serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?,
                None => serde_json::Value::Null,
            },
            committed_at: ms_timestamp(committed_at),
            reconciled,
            note,
        }),
        (TicketState::Committed, _, _) => {
            return Err(corrupt("committed without an outcome".to_owned()));
        }
        _ => None,
    };
    Ok(TicketRecord {
        nonce,
        state,
        action,
        target,
        decision_id,
        expires_at: ms_timestamp(expires_at),
        issued_at: issued_at.map(ms_timestamp),
        pending_at: pending_at.map(ms_timestamp),
        receipt,
    })
}
