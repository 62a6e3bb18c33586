//! The audit log writer: one writer thread per open log, group commit, an OS file lock shared by
//! every process that appends, crash recovery, and signed checkpoints.
//!
//! **Architecture Invariant:** every byte is appended to the log, the state file and the
//! checkpoints file while holding the exclusive lock on the log file, after re-reading the tail
//! state under that lock. So writers in any number of threads and processes see one sequence of
//! entries: no forks, no interleaving, no duplicate sequence numbers.
//!
//! # The writer signs only what holders of the key wrote
//!
//! The hash chain needs no key, so anyone who can edit the log can append a well-chained line.
//! Such a line must never end up in a signed checkpoint.
//!
//! **Architecture Invariant:** a checkpoint signs the writer's own compact range, and that range
//! only ever holds entries the writer encoded itself, entries an authenticated state record
//! announced, or entries a signed checkpoint covers.
//!
//! The state file `<log>.state` is MACed with a key derived from the signing key (label
//! `agentsafe/audit-state/v1`; its format is in `src/state.rs`), so only key holders can write
//! it. Before a batch reaches the log, the writer records in it where the log will end (tree size,
//! compact range, byte length, last leaf) and where it ended before; that record is fdatasynced
//! before the batch is written, unless `sync = "none"`. After the write, the new end alone is
//! recorded. Under the lock, before every commit, the writer compares the log with the newest
//! record in O(log n) (length and last line; a full rehash happens only when no authenticated
//! record fits):
//!
//! * the log ends where the record says, or beyond it with only an incomplete final line:
//!   append (the incomplete line is cut off and recorded by a `recovered` event, `torn_tail`);
//! * the log ends inside an announced batch: a crash tore the write, nobody was told it
//!   succeeded, so it is cut off and recorded the same way;
//! * complete lines follow the authenticated end: they are accepted only when the latest signed
//!   checkpoint covers exactly them, with a matching root (a key holder whose state write was
//!   lost); otherwise the append fails with [`AuditError::Tampered`] (the runner denies with
//!   `audit_unavailable`) and the alarm is counted ([`crate::Counters::tamper_detected`]);
//! * the log holds fewer entries than the record or the latest checkpoint, or checkpoints were
//!   removed: [`AuditError::Tampered`] too.
//!
//! A missing, damaged or earlier-version state file vouches for nothing: the writer rebuilds the
//! tree from the whole log and goes on only when the latest signed checkpoint covers all of it
//! (a `recovered` event, `state_rebuilt`, records that). So deleting the state file does not let
//! anyone start over: entries after the latest checkpoint are refused. In particular a log last
//! written by a version before authenticated state, and not closed cleanly (entries after its
//! last checkpoint), is refused until someone who has checked it decides what to do with it.
//!
//! With `sync = "none"` nothing is fdatasynced, so a power failure can lose the record of entries
//! that did reach the disk; the next writer then refuses them like a forged line. With `every` and
//! `group` the record is durable first, at the cost of one more fdatasync per commit.
//!
//! # What only a witness detects
//!
//! Someone who cuts the log's tail together with the checkpoints and the state that cover it, puts
//! back an older copy of all three, or deletes all of them and lets a new log start, leaves files
//! that agree with each other: no check on this machine can tell. A checkpoint kept elsewhere
//! does: `agentsafe audit verify --checkpoint FILE` ([`crate::verify_log`] with a saved
//! checkpoint) fails on such a log, and shipping sends the latest signed checkpoint along with
//! the entries so that the destination holds one (see [`crate::ship`]).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentsafe_core::Timestamp;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::config::{AuditConfig, SyncPolicy};
use crate::entry::{EntryHead, assemble, time_json};
use crate::event::{AuditEvent, EventType, PreparedEvent, Redactor};
use crate::keys::{self, SigningKeySource};
use crate::merkle::{Hash, leaf_hash};
use crate::note::{Checkpoint, checkpoints_text, split_notes, unverified_size};
use crate::ship::{ShipItem, ShipStats, Shipper};
use crate::state::{SLOT_SIZE, SavedState, Slot, StateKey, TreeState};
use crate::{AuditError, sibling};

/// The most entries one commit takes from the queue.
const MAX_BATCH: usize = 4096;

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The entry's sequence number (its leaf index).
    pub seq: u64,
    /// The entry's Merkle leaf hash.
    pub leaf_hash: Hash,
}

type Reply<T> = SyncSender<Result<T, AuditError>>;

enum Msg {
    Append {
        event: PreparedEvent,
        reply: Reply<Appended>,
    },
    Checkpoint {
        reply: Reply<Checkpoint>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// An open, append-only, tamper-evident audit log.
///
/// `Send + Sync`: share it with `Arc`. Appends from many threads are committed together by one
/// writer thread (group commit); appends from other processes are serialised by a file lock.
pub struct AuditLog {
    path: PathBuf,
    origin: String,
    redactor: Redactor,
    verifying_key: VerifyingKey,
    tx: Sender<Msg>,
    inflight: Arc<AtomicUsize>,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    shippers: Arc<Vec<Shipper>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("origin", &self.origin)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path`, recovering from a crash if the last write was
    /// torn, and starts its writer thread.
    ///
    /// Opening costs O(log n): the tail state comes from the authenticated `<log>.state`, checked
    /// against the log's length and last line, and is rebuilt from the log only when no
    /// authenticated record fits (see the module documentation).
    ///
    /// # Errors
    /// When the signing key is missing, unreadable or stored in (or under) the log's folder, when
    /// the log cannot be opened for writing, or when the log is inconsistent with its checkpoints
    /// or holds entries no holder of the key vouches for ([`AuditError::Tampered`]).
    pub fn open(
        path: &Path,
        signing_key: SigningKeySource,
        cfg: &AuditConfig,
    ) -> Result<AuditLog, AuditError> {
        cfg.validate()?;
        let key = match signing_key {
            SigningKeySource::Path(p) => {
                keys::check_not_beside(&p, path)?;
                keys::load_signing_key(&p)?
            }
            SigningKeySource::Key(k) => k,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| AuditError::io("create audit log folder", dir, e))?;
        }
        let shippers: Arc<Vec<Shipper>> = Arc::new(
            cfg.ship
                .iter()
                .map(|t| Shipper::spawn(t.clone(), &cfg.origin, Some(path.to_path_buf())))
                .collect::<Result<_, _>>()?,
        );
        let mut writer = Writer::new(path, key.clone(), cfg, Arc::clone(&shippers))?;
        writer.with_lock(|w| {
            let recoveries = w.sync_tail()?;
            if !recoveries.is_empty() {
                let items = recoveries.into_iter().map(|e| (e, None)).collect();
                w.append_locked(items)?;
            }
            Ok(())
        })?;
        let inflight = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let thread_inflight = Arc::clone(&inflight);
        let handle = std::thread::Builder::new()
            .name("agentsafe-audit-writer".into())
            .spawn(move || writer.run(&rx, &thread_inflight))
            .map_err(|e| AuditError::io("start the audit writer thread for", path, e))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            origin: cfg.origin.clone(),
            redactor: Redactor::from_signing_key(&key),
            verifying_key: key.verifying_key(),
            tx,
            inflight,
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(handle)),
            shippers,
        })
    }

    /// Opens the log configured in `cfg`: `cfg.log_path(state_dir)` signed with
    /// `cfg.signing_key_path(key_dir)`.
    ///
    /// # Errors
    /// As [`AuditLog::open`].
    pub fn open_configured(
        cfg: &AuditConfig,
        state_dir: &Path,
        key_dir: &Path,
    ) -> Result<AuditLog, AuditError> {
        AuditLog::open(
            &cfg.log_path(state_dir),
            SigningKeySource::Path(cfg.signing_key_path(key_dir)),
            cfg,
        )
    }

    /// Appends one entry and returns once it is durable according to the sync policy.
    ///
    /// # Errors
    /// When the entry cannot be encoded or written (the runner turns this into DENY
    /// `audit_unavailable` unless failures are allowed), the log is closed, or the log holds
    /// entries no holder of the key vouches for ([`AuditError::Tampered`], counted as an alarm).
    pub fn append(&self, event: AuditEvent) -> Result<Appended, AuditError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed(self.path.clone()));
        }
        let event = event.prepare()?;
        let (reply, answer) = mpsc::sync_channel(1);
        self.inflight.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(Msg::Append { event, reply }).is_err() {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return Err(AuditError::Closed(self.path.clone()));
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err(AuditError::Closed(self.path.clone())))
    }

    /// Writes a signed checkpoint for the current tree now (or returns the latest one when the
    /// tree has not grown since).
    ///
    /// # Errors
    /// When the checkpoint cannot be written, or the log is closed.
    pub fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Checkpoint { reply })
            .map_err(|_| AuditError::Closed(self.path.clone()))?;
        answer
            .recv()
            .unwrap_or_else(|_| Err(AuditError::Closed(self.path.clone())))
    }

    /// Writes the final checkpoint, flushes the shippers and stops the writer thread.
    ///
    /// # Errors
    /// When the final checkpoint cannot be written.
    pub fn close(self) -> Result<(), AuditError> {
        self.shutdown()
    }

    /// Like [`AuditLog::close`], through a shared reference (for a log held in an `Arc`).
    /// Later appends fail with a "closed" error. Calling it again does nothing.
    ///
    /// # Errors
    /// When the final checkpoint cannot be written.
    pub fn shutdown(&self) -> Result<(), AuditError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let result = match self.tx.send(Msg::Close { reply }) {
            Ok(()) => answer.recv().unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        if let Ok(mut guard) = self.writer.lock()
            && let Some(handle) = guard.take()
        {
            let _ = handle.join();
        }
        result
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public key that verifies this log's checkpoints.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying_key
    }

    /// The redactor for sensitive params, keyed from this log's signing key.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Delivery counters of the in-process shippers, per destination.
    pub fn ship_stats(&self) -> Vec<(String, ShipStats)> {
        self.shippers
            .iter()
            .map(|s| (s.destination().to_string(), s.stats()))
            .collect()
    }

    /// Counts a failure the runner let pass (`on_audit_failure = "allow"`); see [`crate::record_failure`].
    ///
    /// # Errors
    /// When the counters file cannot be written.
    pub fn record_failure(&self, error: &AuditError) -> Result<u64, AuditError> {
        crate::counters::record_failure(&self.path, error)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Best effort: write the final checkpoint. Errors have nowhere to go here; `close` reports them.
        let _ = self.shutdown();
    }
}

/// The state owned by the writer thread.
struct Writer {
    path: PathBuf,
    cp_path: PathBuf,
    log: File,
    state_file: File,
    cps: File,
    key: SigningKey,
    origin: String,
    sync: SyncPolicy,
    window: Duration,
    cp_every: u64,
    cp_interval: Duration,
    st: TreeState,
    last_cp: Option<Checkpoint>,
    last_cp_at: Instant,
    buf: Vec<u8>,
    state_path: PathBuf,
    /// The key that authenticates the state file.
    state_key: StateKey,
    /// The generation of the newest state record known, and the slot holding it.
    state_gen: u64,
    state_slot: Option<u64>,
    /// The record this writer last wrote to the state file (empty when unknown).
    saved_state: Vec<u8>,
    shippers: Arc<Vec<Shipper>>,
}

type Item = (PreparedEvent, Option<Reply<Appended>>);

/// Opens `path` for reading and appending, creating it if needed.
fn open_append(path: &Path, what: &'static str) -> Result<File, AuditError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| AuditError::io(what, path, e))
}

impl Writer {
    fn new(
        path: &Path,
        key: SigningKey,
        cfg: &AuditConfig,
        shippers: Arc<Vec<Shipper>>,
    ) -> Result<Writer, AuditError> {
        let log = open_append(path, "open audit log for writing")?;
        let state_path = sibling(path, "state");
        let cp_path = sibling(path, "checkpoints");
        let state_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&state_path)
            .map_err(|e| AuditError::io("open audit state file", &state_path, e))?;
        let cps = open_append(&cp_path, "open audit checkpoints file")?;
        Ok(Writer {
            path: path.to_path_buf(),
            cp_path,
            log,
            state_file,
            cps,
            key: key.clone(),
            origin: cfg.origin.clone(),
            sync: cfg.sync,
            window: cfg.group_commit_window.get(),
            cp_every: cfg.checkpoint_every,
            cp_interval: cfg.checkpoint_interval.get(),
            st: TreeState::empty(),
            last_cp: None,
            last_cp_at: Instant::now(),
            buf: Vec::with_capacity(1 << 16),
            state_key: StateKey::from_signing_key(&key),
            state_path,
            state_gen: 0,
            state_slot: None,
            saved_state: Vec::new(),
            shippers,
        })
    }

    fn io(&self, action: &'static str) -> impl Fn(std::io::Error) -> AuditError + use<> {
        let path = self.path.clone();
        move |e| AuditError::io(action, path.clone(), e)
    }

    fn corrupt(&self, seq: u64, reason: impl Into<String>) -> AuditError {
        AuditError::Corrupt {
            path: self.path.clone(),
            seq,
            reason: reason.into(),
        }
    }

    /// Runs `f` holding the exclusive lock on the log file.
    fn with_lock<T>(
        &mut self,
        f: impl FnOnce(&mut Writer) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        self.log.lock().map_err(self.io("lock audit log"))?;
        let result = f(self);
        let _ = self.log.unlock();
        result
    }

    // ---- the writer thread ----

    fn run(mut self, rx: &Receiver<Msg>, inflight: &AtomicUsize) {
        loop {
            let first = if self.cp_interval.is_zero() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                let due = self.last_cp_at + self.cp_interval;
                rx.recv_timeout(due.saturating_duration_since(Instant::now()))
            };
            let first = match first {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.on_timer();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.finish();
                    return;
                }
            };
            let mut appends: Vec<Item> = Vec::new();
            let mut controls: Vec<Msg> = Vec::new();
            let mut take = |m: Msg, appends: &mut Vec<Item>| match m {
                Msg::Append { event, reply } => appends.push((event, Some(reply))),
                other => controls.push(other),
            };
            take(first, &mut appends);
            loop {
                if appends.len() >= MAX_BATCH {
                    break;
                }
                match rx.try_recv() {
                    Ok(m) => take(m, &mut appends),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            // Group commit: while other callers are between `append` and the queue, wait a little
            // for them so that they share this fdatasync. A lone caller never waits.
            if self.sync == SyncPolicy::Group && !self.window.is_zero() {
                let deadline = Instant::now() + self.window;
                while appends.len() < MAX_BATCH && inflight.load(Ordering::SeqCst) > appends.len() {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(m) => take(m, &mut appends),
                        Err(_) => break,
                    }
                }
            }
            if !appends.is_empty() {
                let n = appends.len();
                self.commit(appends);
                inflight.fetch_sub(n, Ordering::SeqCst);
            }
            for m in controls {
                match m {
                    Msg::Checkpoint { reply } => {
                        let r = self.with_lock(|w| {
                            let recoveries = w.sync_tail()?;
                            if !recoveries.is_empty() {
                                w.append_locked(
                                    recoveries.into_iter().map(|e| (e, None)).collect(),
                                )?;
                            }
                            w.checkpoint_locked()
                        });
                        let _ = reply.send(r);
                    }
                    Msg::Close { reply } => {
                        let _ = reply.send(self.finish());
                        return;
                    }
                    Msg::Append { .. } => {}
                }
            }
        }
    }

    /// Commits a batch of appends and answers each caller.
    fn commit(&mut self, appends: Vec<Item>) {
        let (items, replies): (Vec<PreparedEvent>, Vec<Option<Reply<Appended>>>) =
            appends.into_iter().unzip();
        let outcome = self.with_lock(|w| {
            let recoveries = w.sync_tail()?;
            let skip = recoveries.len();
            let mut all: Vec<Item> = recoveries.into_iter().map(|e| (e, None)).collect();
            all.extend(items.into_iter().map(|e| (e, None)));
            let results = w.append_locked(all)?;
            Ok(results.into_iter().skip(skip).collect::<Vec<_>>())
        });
        match outcome {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
            }
            Err(e) => {
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(duplicate(&e)));
                }
            }
        }
    }

    fn on_timer(&mut self) {
        let _ = self.with_lock(|w| {
            let recoveries = w.sync_tail()?;
            if !recoveries.is_empty() {
                w.append_locked(recoveries.into_iter().map(|e| (e, None)).collect())?;
            }
            if w.st.size() > w.st.cp_size {
                w.checkpoint_locked()?;
            }
            Ok(())
        });
        self.last_cp_at = Instant::now();
    }

    /// The clean-shutdown path: a final checkpoint when the tree grew, then flush the shippers.
    fn finish(&mut self) -> Result<(), AuditError> {
        let result = self.with_lock(|w| {
            let recoveries = w.sync_tail()?;
            if !recoveries.is_empty() {
                w.append_locked(recoveries.into_iter().map(|e| (e, None)).collect())?;
            }
            if w.st.size() > w.st.cp_size {
                w.checkpoint_locked()?;
            }
            Ok(())
        });
        for s in self.shippers.iter() {
            s.close();
        }
        result
    }

    // ---- under the lock ----

    /// Encodes, writes and syncs `items` (the lock is held and the tail state is current).
    /// Returns one result per item; fails as a whole only when nothing could be written.
    ///
    /// The batch is announced in the authenticated state (its end as `tree`, the log before it as
    /// `base`) before any of it reaches the log, and the announcement is dropped once it is there;
    /// see the module documentation.
    fn append_locked(
        &mut self,
        items: Vec<Item>,
    ) -> Result<Vec<Result<Appended, AuditError>>, AuditError> {
        let base = self.st.clone();
        self.buf.clear();
        // Per entry: where its line ends in `buf`, the result, its time and its event type.
        let mut pending: Vec<(usize, Appended, String, &'static str)> =
            Vec::with_capacity(items.len());
        for (event, _) in &items {
            let seq = self.st.size();
            let time = time_json(Timestamp::now());
            let line = assemble(seq, &time, self.st.last_leaf.as_ref(), event);
            let leaf = leaf_hash(&line);
            self.buf.extend_from_slice(&line);
            self.buf.push(b'\n');
            self.st.push(leaf, (line.len() + 1) as u64);
            let appended = Appended {
                seq,
                leaf_hash: leaf,
            };
            pending.push((self.buf.len(), appended, time, event.event_type));
        }
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let durable = self.sync != SyncPolicy::None;
        let announce = SavedState {
            tree: self.st.clone(),
            base: Some(base.clone()),
        };
        if let Err(e) = self.write_state(&announce, durable) {
            // Nothing may reach the log that the state has not announced.
            self.st = base;
            self.buf.clear();
            return Err(e);
        }
        let (written, failure) = self.write_batch(base.log_len, &pending);
        if written < pending.len() {
            let mut st = base.clone();
            let mut start = 0;
            for (end, appended, _, _) in pending.iter().take(written) {
                st.push(appended.leaf_hash, (end - start) as u64);
                start = *end;
            }
            self.st = st;
        }
        // When the batch was cut short, the announcement claims entries the log does not hold:
        // the truth must then be as durable as the announcement was.
        let commit = SavedState {
            tree: self.st.clone(),
            base: None,
        };
        if let Err(e) = self.write_state(&commit, durable && written < pending.len()) {
            // Without the commit record a later writer takes the batch for a torn write and cuts it
            // off; so it is cut off now, and no caller hears of a success.
            let _ = self.log.set_len(base.log_len);
            self.st = base;
            self.buf.clear();
            return Err(e);
        }
        let ship = !self.shippers.is_empty();
        let mut results: Vec<Result<Appended, AuditError>> = Vec::with_capacity(pending.len());
        let mut shipped: Vec<ShipItem> = Vec::new();
        let mut start = 0;
        for (i, (end, appended, time, event_type)) in pending.into_iter().enumerate() {
            if i >= written {
                results.push(Err(failure
                    .as_ref()
                    .map(duplicate)
                    .unwrap_or_else(|| AuditError::Closed(self.path.clone()))));
                continue;
            }
            if ship && let Some(line) = self.buf.get(start..end.saturating_sub(1)) {
                shipped.push(ShipItem {
                    seq: appended.seq,
                    event_type,
                    time: time.trim_matches('"').to_owned(),
                    leaf: appended.leaf_hash,
                    line: Arc::from(line),
                });
            }
            start = end;
            results.push(Ok(appended));
        }
        self.buf.clear();
        if written == 0
            && let Some(e) = failure
        {
            return Err(e);
        }
        for item in shipped {
            for s in self.shippers.iter() {
                s.offer(item.clone());
            }
        }
        if self.checkpoint_due() {
            // The entries are durable; a failed checkpoint is retried at the next commit, timer or close.
            let _ = self.checkpoint_locked();
        }
        Ok(results)
    }

    /// Writes the encoded batch in `self.buf` to the log (one write and fdatasync per entry with
    /// `sync = "every"`). Returns how many entries are in the log, and the error that stopped the
    /// rest; on failure the log is cut back to the end of the last entry written.
    fn write_batch(
        &self,
        base_len: u64,
        pending: &[(usize, Appended, String, &'static str)],
    ) -> (usize, Option<AuditError>) {
        let fail = |e: std::io::Error, keep: usize| {
            // Cut the partial write off; if that fails too, the next commit finds the announced
            // batch torn and cuts it off then.
            let _ = self.log.set_len(base_len + keep as u64);
            AuditError::io("append to audit log", self.path.clone(), e)
        };
        if self.sync == SyncPolicy::Every {
            let mut start = 0usize;
            for (i, (end, ..)) in pending.iter().enumerate() {
                let line = self.buf.get(start..*end).unwrap_or_default();
                if let Err(e) = (&self.log)
                    .write_all(line)
                    .and_then(|()| self.log.sync_data())
                {
                    return (i, Some(fail(e, start)));
                }
                start = *end;
            }
            return (pending.len(), None);
        }
        let written = (&self.log).write_all(&self.buf).and_then(|()| {
            if self.sync == SyncPolicy::Group {
                self.log.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => (pending.len(), None),
            Err(e) => (0, Some(fail(e, 0))),
        }
    }

    /// Writes a state record into the slot that does not hold the newest one (fdatasynced when
    /// `sync`).
    fn write_state(&mut self, saved: &SavedState, sync: bool) -> Result<(), AuditError> {
        let slot = self.state_slot.map_or(0, |s| 1 - s);
        let generation = self.state_gen + 1;
        let bytes = saved.encode(generation, &self.state_key);
        let written = self
            .state_file
            .write_all_at(&bytes, slot * SLOT_SIZE)
            .and_then(|()| {
                if sync {
                    self.state_file.sync_data()
                } else {
                    Ok(())
                }
            });
        match written {
            Ok(()) => {
                self.state_slot = Some(slot);
                self.state_gen = generation;
                self.saved_state = bytes;
                Ok(())
            }
            Err(e) => {
                self.saved_state.clear();
                Err(AuditError::io(
                    "write audit state file",
                    self.state_path.clone(),
                    e,
                ))
            }
        }
    }

    /// Whether the slot this writer wrote last still holds what it wrote.
    fn state_unchanged(&self) -> bool {
        let Some(slot) = self.state_slot.filter(|_| !self.saved_state.is_empty()) else {
            return false;
        };
        let mut buf = vec![0u8; self.saved_state.len()];
        self.state_file
            .read_exact_at(&mut buf, slot * SLOT_SIZE)
            .is_ok()
            && buf == self.saved_state
    }

    /// Reads both slots of the state file: the newest authenticated record, and what kind of
    /// state the file holds.
    fn read_state(&mut self) -> (StateKind, Option<SavedState>) {
        let len = self.state_file.metadata().map_or(0, |m| m.len());
        if len == 0 {
            self.state_slot = None;
            return (StateKind::Missing, None);
        }
        let mut newest: Option<(u64, u64, SavedState)> = None;
        let mut legacy = false;
        for slot in 0..2u64 {
            let start = slot * SLOT_SIZE;
            if start >= len {
                break;
            }
            let n = (len - start).min(SLOT_SIZE);
            let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
            if self.state_file.read_exact_at(&mut buf, start).is_err() {
                continue;
            }
            match SavedState::decode(&buf, &self.state_key) {
                Slot::Valid(generation, saved) => {
                    if newest.as_ref().is_none_or(|(g, _, _)| generation > *g) {
                        newest = Some((generation, slot, *saved));
                    }
                }
                Slot::Legacy => legacy = true,
                Slot::Invalid => {}
            }
        }
        match newest {
            Some((generation, slot, saved)) => {
                self.state_gen = self.state_gen.max(generation);
                self.state_slot = Some(slot);
                (StateKind::Authenticated, Some(saved))
            }
            None => {
                self.state_slot = None;
                let kind = if legacy {
                    StateKind::Legacy
                } else {
                    StateKind::Invalid
                };
                (kind, None)
            }
        }
    }

    fn checkpoint_due(&self) -> bool {
        let size = self.st.size();
        if size <= self.st.cp_size {
            return false;
        }
        let by_count = self.cp_every > 0 && size / self.cp_every > self.st.cp_size / self.cp_every;
        let by_time = !self.cp_interval.is_zero() && self.last_cp_at.elapsed() >= self.cp_interval;
        by_count || by_time
    }

    /// Signs and appends a checkpoint for the current tree, unless the latest one already covers it.
    ///
    /// The root signed is the writer's own compact range, which only ever holds entries this
    /// writer encoded or that an authenticated state or a signed checkpoint vouches for.
    fn checkpoint_locked(&mut self) -> Result<Checkpoint, AuditError> {
        let size = self.st.size();
        if size == self.st.cp_size
            && let Some(cp) = &self.last_cp
            && cp.size() == size
        {
            return Ok(cp.clone());
        }
        if self.sync == SyncPolicy::None {
            // A durable checkpoint must never cover entries that are not.
            self.log.sync_data().map_err(self.io("sync audit log"))?;
        }
        let cp = Checkpoint::sign(&self.origin, size, self.st.range.root(), &self.key)?;
        let note = cp.note().as_bytes();
        let cp_path = self.cp_path.clone();
        if let Err(e) = (&self.cps)
            .write_all(note)
            .and_then(|()| self.cps.sync_data())
        {
            let _ = self.cps.set_len(self.st.cp_len);
            return Err(AuditError::io("write audit checkpoint to", cp_path, e));
        }
        self.st.cp_size = size;
        self.st.cp_len += note.len() as u64;
        self.last_cp = Some(cp.clone());
        self.last_cp_at = Instant::now();
        // After the entries it covers (they were offered first), so the destination can hold it
        // as a witness.
        for s in self.shippers.iter() {
            s.offer_checkpoint(&cp);
        }
        // Only the checkpoint bookkeeping changed: the checkpoints file itself is the record, so
        // a lost state write costs nothing but a re-read.
        let _ = self.write_state(
            &SavedState {
                tree: self.st.clone(),
                base: None,
            },
            false,
        );
        Ok(cp)
    }

    /// Brings the in-memory tail state up to date with the files (another process may have
    /// appended, crashed mid-write, or the state file may be stale or missing), and refuses a log
    /// that holds entries no holder of the audit key vouches for. Returns the `recovered` events
    /// to record.
    ///
    /// On a refusal the tamper alarm is counted (see [`crate::Counters::tamper_detected`]) and the
    /// in-memory state stays what it was, so nothing unproven is ever signed.
    fn sync_tail(&mut self) -> Result<Vec<PreparedEvent>, AuditError> {
        let before = self.st.clone();
        let before_cp = self.last_cp.clone();
        match self.sync_tail_inner() {
            Ok(recoveries) => Ok(recoveries),
            Err(e) => {
                self.st = before;
                self.last_cp = before_cp;
                // The next commit re-reads everything.
                self.saved_state.clear();
                if matches!(e, AuditError::Tampered { .. } | AuditError::Corrupt { .. }) {
                    let _ = crate::counters::record_tamper(&self.path, &e);
                }
                Err(e)
            }
        }
    }

    fn sync_tail_inner(&mut self) -> Result<Vec<PreparedEvent>, AuditError> {
        let file_len = self
            .log
            .metadata()
            .map_err(self.io("read audit log metadata"))?
            .len();
        let cps_len = self
            .cps
            .metadata()
            .map_err(self.io("read audit checkpoints metadata"))?
            .len();
        if file_len == self.st.log_len && cps_len == self.st.cp_len && self.state_unchanged() {
            // Nobody wrote since this writer did: the log, the state and the checkpoints are as it
            // left them (an edit in place changes nothing this writer signs: it signs its own
            // compact range, and verification compares that with the log).
            return Ok(Vec::new());
        }
        let mut recoveries = Vec::new();

        // 1. The latest signed checkpoint, and what authenticated sources know was signed.
        let (latest, cp_end, torn_cp) = self.load_checkpoints(cps_len)?;
        recoveries.extend(torn_cp);
        let (kind, disk) = self.read_state();
        let latest_size = latest.as_ref().map_or(0, Checkpoint::size);
        let signed_before = [
            Some(self.st.cp_size),
            disk.as_ref().map(|d| d.tree.cp_size),
            disk.as_ref()
                .and_then(|d| d.base.as_ref())
                .map(|b| b.cp_size),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        if latest_size < signed_before {
            // Signing on would launder whatever happened to the entries those checkpoints covered.
            return Err(self.tampered(
                latest_size,
                format!(
                    "checkpoints were removed from `{}`: it ends at tree size {latest_size} but {signed_before} entries were signed; \
                     run `agentsafe audit verify` with a checkpoint saved elsewhere",
                    self.cp_path.display()
                ),
            ));
        }

        // 2. The most advanced authenticated position the log still ends at or beyond (the anchor),
        // and an authenticated position it should hold but does not.
        let mut anchor: Option<TreeState> = None;
        let mut expected: Option<TreeState> = None;
        let mut file_len = file_len;
        if let Some(saved) = &disk {
            if saved.tree.log_len <= file_len && self.tail_ok(&saved.tree)? {
                anchor = Some(saved.tree.clone());
            } else if let Some(base) = &saved.base {
                if base.log_len <= file_len
                    && file_len < saved.tree.log_len
                    && self.tail_ok(base)?
                {
                    // A write announced but not finished (a crash, a full disk): nobody was told
                    // it succeeded, so it is cut off, and recorded.
                    if let Some(ev) = self.cut_torn_write(base.log_len, file_len)? {
                        recoveries.push(ev);
                    }
                    file_len = base.log_len;
                    anchor = Some(base.clone());
                } else {
                    expected = Some(base.clone());
                }
            } else {
                expected = Some(saved.tree.clone());
            }
        }
        let mem = self.st.clone();
        if anchor.as_ref().is_none_or(|a| mem.size() > a.size()) {
            if mem.log_len <= file_len && self.tail_ok(&mem)? {
                anchor = Some(mem);
            } else if expected.as_ref().is_none_or(|e| mem.size() > e.size()) {
                expected = Some(mem);
            }
        }
        let anchor = anchor.unwrap_or_else(TreeState::empty);
        let proven = anchor.size();

        // 3. Read whatever follows the anchor (a full rebuild when there is no anchor).
        self.st = anchor;
        if let Some((offset, bytes)) = self.catch_up(file_len)? {
            recoveries.push(recovered(json!({
                "reason": "torn_tail",
                "offset": offset,
                "truncated_bytes": bytes.len(),
                "truncated_sha256": crate::merkle::hex_encode(&Sha256::digest(&bytes)),
            })));
        }
        let size = self.st.size();

        // 4. Nothing deleted, nothing unproven.
        if let Some(e) = &expected
            && size < e.size()
        {
            return Err(self.tampered(
                size,
                format!(
                    "the log holds {size} entries but holders of the audit key wrote {}: entries were deleted",
                    e.size()
                ),
            ));
        }
        if let Some(cp) = &latest {
            if cp.size() > size {
                return Err(self.tampered(
                    size,
                    format!(
                        "the log holds {size} entries but its latest checkpoint covers {}: entries were deleted",
                        cp.size()
                    ),
                ));
            }
            if cp.size() == size && !cp.root().ct_eq(&self.st.range.root()) {
                return Err(self.tampered(
                    size.saturating_sub(1),
                    "the log does not match its latest checkpoint; run `agentsafe audit verify`",
                ));
            }
        }
        if size > proven && latest_size != size {
            let state = match kind {
                StateKind::Authenticated => "the authenticated state ends before them",
                StateKind::Missing => "there is no state file",
                StateKind::Legacy => {
                    "the state file is of an earlier version, which anyone could have written"
                }
                StateKind::Invalid => "the state file does not authenticate",
            };
            return Err(self.tampered(
                proven,
                format!(
                    "entries {proven}..={} were not written by a holder of the audit key as far as anything signed shows \
                     ({state}, and no signed checkpoint covers them); someone else appended them, or with `sync = \"none\"` \
                     a power failure lost the state that recorded them",
                    size - 1
                ),
            ));
        }

        // 5. The checkpoint bookkeeping, and a state record for the log as it now is.
        self.st.cp_size = latest_size;
        self.st.cp_len = cp_end;
        self.last_cp = latest;
        if proven == 0 && size > 0 && kind != StateKind::Authenticated {
            recoveries.push(recovered(json!({
                "reason": "state_rebuilt",
                "entries": size,
                "state": kind.as_str(),
            })));
        }
        // Best effort: without it the next open reads the log again, nothing worse.
        let _ = self.write_state(
            &SavedState {
                tree: self.st.clone(),
                base: None,
            },
            false,
        );
        Ok(recoveries)
    }

    fn tampered(&self, seq: u64, reason: impl Into<String>) -> AuditError {
        AuditError::Tampered {
            path: self.path.clone(),
            seq,
            reason: reason.into(),
        }
    }

    /// Cuts an announced but unfinished write off the log (it ends at `file_len`, the write
    /// started at `start`), returning the `recovered` event when there was anything to cut.
    fn cut_torn_write(
        &mut self,
        start: u64,
        file_len: u64,
    ) -> Result<Option<PreparedEvent>, AuditError> {
        if file_len <= start {
            return Ok(None);
        }
        let mut bytes = vec![0u8; usize::try_from(file_len - start).unwrap_or(0)];
        self.log
            .read_exact_at(&mut bytes, start)
            .map_err(self.io("read audit log"))?;
        self.log
            .set_len(start)
            .and_then(|()| self.log.sync_data())
            .map_err(self.io("truncate the torn final write of audit log"))?;
        Ok(Some(recovered(json!({
            "reason": "torn_tail",
            "offset": start,
            "truncated_bytes": bytes.len(),
            "truncated_sha256": crate::merkle::hex_encode(&Sha256::digest(&bytes)),
        }))))
    }

    /// Whether the log's bytes end, at `s.log_len`, with the line `s` says was last.
    fn tail_ok(&self, s: &TreeState) -> Result<bool, AuditError> {
        let Some(last) = s.last_leaf else {
            return Ok(s.log_len == 0);
        };
        if s.last_line_len < 2 || s.last_line_len > s.log_len || s.last_line_len > 1 << 26 {
            return Ok(false);
        }
        let mut buf = vec![0u8; usize::try_from(s.last_line_len).unwrap_or(0)];
        self.log
            .read_exact_at(&mut buf, s.log_len - s.last_line_len)
            .map_err(self.io("read audit log"))?;
        let Some((b'\n', line)) = buf.split_last() else {
            return Ok(false);
        };
        Ok(leaf_hash(line).ct_eq(&last))
    }

    /// Reads entries from `self.st.log_len` to `file_len`, extending the tree, and truncates an
    /// incomplete final line. Returns the truncated bytes' offset and content, if any.
    fn catch_up(&mut self, file_len: u64) -> Result<Option<(u64, Vec<u8>)>, AuditError> {
        const CHUNK: usize = 1 << 20;
        let mut pos = self.st.log_len;
        let mut carry: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        while pos < file_len {
            let want = usize::try_from((file_len - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
            let Some(dst) = chunk.get_mut(..want) else {
                break;
            };
            self.log
                .read_exact_at(dst, pos)
                .map_err(self.io("read audit log"))?;
            pos += want as u64;
            carry.extend_from_slice(dst);
            let mut consumed = 0;
            while let Some(nl) = carry
                .get(consumed..)
                .and_then(|s| s.iter().position(|&b| b == b'\n'))
            {
                let end = consumed + nl;
                let line = carry.get(consumed..end).unwrap_or_default();
                self.accept_line(line)?;
                consumed = end + 1;
            }
            carry.drain(..consumed);
        }
        if carry.is_empty() {
            return Ok(None);
        }
        let offset = file_len - carry.len() as u64;
        self.log
            .set_len(offset)
            .and_then(|()| self.log.sync_data())
            .map_err(self.io("truncate the torn final line of audit log"))?;
        Ok(Some((offset, carry)))
    }

    fn accept_line(&mut self, line: &[u8]) -> Result<(), AuditError> {
        let seq = self.st.size();
        let head = EntryHead::parse(line)
            .map_err(|e| self.corrupt(seq, format!("the line is not an audit entry ({e})")))?;
        if head.seq != seq {
            return Err(self.corrupt(
                seq,
                format!(
                    "found seq {} where {seq} was expected; run `agentsafe audit verify`",
                    head.seq
                ),
            ));
        }
        if !head.prev_matches(self.st.last_leaf.as_ref()) {
            return Err(self.corrupt(
                seq.saturating_sub(1),
                "an entry does not match the hash its successor recorded; run `agentsafe audit verify`",
            ));
        }
        self.st.push(leaf_hash(line), line.len() as u64 + 1);
        Ok(())
    }

    /// Reads the checkpoints file (`cp_len` bytes long), truncating a torn final note: returns the
    /// latest checkpoint (its signature checked), the file's length after repair, and the
    /// `recovered` event of a repair.
    fn load_checkpoints(
        &mut self,
        cp_len: u64,
    ) -> Result<(Option<Checkpoint>, u64, Option<PreparedEvent>), AuditError> {
        let known = match &self.last_cp {
            Some(cp) => cp.size() == self.st.cp_size,
            None => cp_len == 0,
        };
        if cp_len == self.st.cp_len && known {
            return Ok((self.last_cp.clone(), cp_len, None));
        }
        let data = std::fs::read(&self.cp_path)
            .map_err(|e| AuditError::io("read audit checkpoints file", &self.cp_path, e))?;
        let text = checkpoints_text(&data).ok_or_else(|| {
            self.tampered(
                self.st.size(),
                format!(
                    "the checkpoints file `{}` is damaged (not UTF-8)",
                    self.cp_path.display()
                ),
            )
        })?;
        let spans = split_notes(text);
        let mut recovery = None;
        let mut end = data.len() as u64;
        let torn_at = spans
            .torn_at
            .or((text.len() < data.len()).then_some(text.len()));
        if let Some(torn) = torn_at {
            end = torn as u64;
            self.cps
                .set_len(end)
                .and_then(|()| self.cps.sync_data())
                .map_err(|e| AuditError::io("truncate the torn checkpoint of", &self.cp_path, e))?;
            recovery = Some(recovered(json!({
                "reason": "torn_checkpoint",
                "offset": end,
                "truncated_bytes": data.len() as u64 - end,
            })));
        }
        let latest = match spans.notes.last() {
            None => None,
            Some((_, _, note)) => {
                let cp = Checkpoint::from_note(note, &self.key.verifying_key()).map_err(|e| {
                    self.tampered(
                        unverified_size(note).unwrap_or(0),
                        format!(
                            "the latest checkpoint in `{}` is not this log's: {e}",
                            self.cp_path.display()
                        ),
                    )
                })?;
                Some(cp)
            }
        };
        Ok((latest, end, recovery))
    }
}

/// What the state file held when the writer last read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateKind {
    /// An authenticated record.
    Authenticated,
    /// No state file, or an empty one.
    Missing,
    /// A state file of an earlier version (not authenticated).
    Legacy,
    /// A damaged state file, or one whose MAC does not verify.
    Invalid,
}

impl StateKind {
    fn as_str(self) -> &'static str {
        match self {
            StateKind::Authenticated => "authenticated",
            StateKind::Missing => "missing",
            StateKind::Legacy => "legacy",
            StateKind::Invalid => "invalid",
        }
    }
}

fn recovered(body: serde_json::Value) -> PreparedEvent {
    let event = AuditEvent::custom(EventType::Recovered, body);
    event.prepare().unwrap_or(PreparedEvent {
        event_type: EventType::Recovered.as_str(),
        body: b"{}".to_vec(),
        links: None,
    })
}

/// An equivalent error for another caller of the same failed commit.
fn duplicate(e: &AuditError) -> AuditError {
    match e {
        AuditError::Io {
            action,
            path,
            source,
        } => AuditError::Io {
            action,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        AuditError::Corrupt { path, seq, reason } => AuditError::Corrupt {
            path: path.clone(),
            seq: *seq,
            reason: reason.clone(),
        },
        AuditError::Tampered { path, seq, reason } => AuditError::Tampered {
            path: path.clone(),
            seq: *seq,
            reason: reason.clone(),
        },
        AuditError::Closed(p) => AuditError::Closed(p.clone()),
        other => AuditError::Encode(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        reason = "test code: a panic is a test failure"
    )]

    use super::*;

    fn cfg() -> AuditConfig {
        AuditConfig {
            checkpoint_interval: Duration::ZERO.into(),
            checkpoint_every: 0,
            ..AuditConfig::default()
        }
    }

    fn items(n: u64) -> Vec<Item> {
        (0..n)
            .map(|i| {
                let ev = AuditEvent::custom(EventType::Execution, json!({ "n": i }));
                (ev.prepare().unwrap(), None)
            })
            .collect()
    }

    /// A writer that has appended `n` entries, then announced a batch of two more in its state
    /// and written `keep(batch length)` bytes of it before "dying" (it is dropped without
    /// closing). Returns where the batch starts and how many bytes of it were written.
    fn crash_mid_batch(
        dir: &Path,
        key: &SigningKey,
        n: u64,
        keep: fn(usize) -> usize,
    ) -> (u64, usize) {
        let path = dir.join("audit.jsonl");
        let mut w = Writer::new(&path, key.clone(), &cfg(), Arc::new(Vec::new())).unwrap();
        w.with_lock(|w| {
            w.sync_tail()?;
            w.append_locked(items(n))
        })
        .unwrap();
        let base = w.st.clone();
        let mut batch = Vec::new();
        for (event, _) in items(2) {
            let line = assemble(
                w.st.size(),
                "\"2025-01-01T00:00:00Z\"",
                w.st.last_leaf.as_ref(),
                &event,
            );
            w.st.push(leaf_hash(&line), (line.len() + 1) as u64);
            batch.extend_from_slice(&line);
            batch.push(b'\n');
        }
        let announce = SavedState {
            tree: w.st.clone(),
            base: Some(base.clone()),
        };
        w.write_state(&announce, true).unwrap();
        let keep = keep(batch.len());
        (&w.log).write_all(&batch[..keep]).unwrap();
        (base.log_len, keep)
    }

    fn entries(dir: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn an_announced_batch_torn_by_a_crash_is_cut_off_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5u8; 32]);
        // One and a half lines of the two announced ones reached the log.
        let (base_len, kept) = crash_mid_batch(dir.path(), &key, 3, |len| len * 3 / 4);
        let log =
            AuditLog::open(&dir.path().join("audit.jsonl"), key.clone().into(), &cfg()).unwrap();
        log.append(AuditEvent::custom(EventType::Execution, json!({})))
            .unwrap();
        log.close().unwrap();
        let entries = entries(dir.path());
        assert_eq!(entries.len(), 5, "3 entries, the recovery, 1 entry");
        assert_eq!(entries[3]["event"], "recovered");
        assert_eq!(entries[3]["body"]["reason"], "torn_tail");
        assert_eq!(entries[3]["body"]["offset"], base_len);
        assert_eq!(entries[3]["body"]["truncated_bytes"], kept);
        crate::verify_log(&dir.path().join("audit.jsonl"), &key.verifying_key(), None).unwrap();
    }

    #[test]
    fn an_announced_batch_written_whole_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5u8; 32]);
        // The crash came after the write, before the commit record.
        crash_mid_batch(dir.path(), &key, 3, |len| len);
        let log =
            AuditLog::open(&dir.path().join("audit.jsonl"), key.clone().into(), &cfg()).unwrap();
        log.close().unwrap();
        let entries = entries(dir.path());
        assert_eq!(entries.len(), 5);
        assert!(entries.iter().all(|e| e["event"] != "recovered"));
        crate::verify_log(&dir.path().join("audit.jsonl"), &key.verifying_key(), None).unwrap();
    }

    #[test]
    fn an_announced_batch_that_never_reached_the_log_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5u8; 32]);
        crash_mid_batch(dir.path(), &key, 3, |_| 0);
        let log =
            AuditLog::open(&dir.path().join("audit.jsonl"), key.clone().into(), &cfg()).unwrap();
        log.close().unwrap();
        assert_eq!(entries(dir.path()).len(), 3);
    }

    #[test]
    fn lines_after_an_announced_batch_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5u8; 32]);
        crash_mid_batch(dir.path(), &key, 3, |len| len);
        let path = dir.path().join("audit.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap().to_owned();
        let prev = leaf_hash(last.as_bytes());
        let forged = assemble(
            5,
            "\"2025-01-01T00:00:00Z\"",
            Some(&prev),
            &AuditEvent::custom(EventType::Approval, json!({"approved": true}))
                .prepare()
                .unwrap(),
        );
        text.push_str(std::str::from_utf8(&forged).unwrap());
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        let err = AuditLog::open(&path, key.into(), &cfg()).unwrap_err();
        assert!(matches!(err, AuditError::Tampered { seq: 5, .. }), "{err}");
    }
}
