//! The audit log writer: one writer thread per open log, group commit, an OS file lock shared by
//! every process that appends, crash recovery, and signed checkpoints.
//!
//! **Architecture Invariant:** every byte is appended to the log, the state file and the
//! checkpoints file while holding the exclusive lock on the log file, after re-reading the tail
//! state under that lock. So writers in any number of threads and processes see one sequence of
//! entries: no forks, no interleaving, no duplicate sequence numbers.

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
use crate::state::TreeState;
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
    /// Opening costs O(log n): the tail state comes from `<log>.state`, cross-checked against the
    /// log's length and last line, and is rebuilt from the log only when it does not match.
    ///
    /// # Errors
    /// When the signing key is missing, unreadable or stored in (or under) the log's folder, when the log
    /// cannot be opened for writing, or when the log is inconsistent with its checkpoints.
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
    /// `audit_unavailable` unless failures are allowed), or the log is closed.
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
    /// The bytes this writer last wrote to the state file.
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
            key,
            origin: cfg.origin.clone(),
            sync: cfg.sync,
            window: cfg.group_commit_window.get(),
            cp_every: cfg.checkpoint_every,
            cp_interval: cfg.checkpoint_interval.get(),
            st: TreeState::empty(),
            last_cp: None,
            last_cp_at: Instant::now(),
            buf: Vec::with_capacity(1 << 16),
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
    fn append_locked(
        &mut self,
        items: Vec<Item>,
    ) -> Result<Vec<Result<Appended, AuditError>>, AuditError> {
        let mut results: Vec<Result<Appended, AuditError>> = Vec::with_capacity(items.len());
        let mut shipped: Vec<ShipItem> = Vec::new();
        let ship = !self.shippers.is_empty();
        self.buf.clear();
        let mut pending: Vec<(usize, usize, Appended, String, &'static str)> = Vec::new();
        let chunk_state = self.st.clone();
        let every = self.sync == SyncPolicy::Every;
        let mut failure: Option<AuditError> = None;
        for (event, _) in &items {
            if failure.is_some() {
                results.push(Err(failure
                    .as_ref()
                    .map(duplicate)
                    .unwrap_or_else(|| AuditError::Closed(self.path.clone()))));
                continue;
            }
            let seq = self.st.size();
            let before = if every { Some(self.st.clone()) } else { None };
            let time = time_json(Timestamp::now());
            let line = assemble(seq, &time, self.st.last_leaf.as_ref(), event);
            let leaf = leaf_hash(&line);
            let start = self.buf.len();
            self.buf.extend_from_slice(&line);
            self.buf.push(b'\n');
            self.st.push(leaf, (line.len() + 1) as u64);
            let appended = Appended {
                seq,
                leaf_hash: leaf,
            };
            pending.push((start, self.buf.len(), appended, time, event.event_type));
            if every {
                // One write and one fdatasync per entry.
                match self.write_chunk(true) {
                    Ok(()) => {
                        self.collect(&mut pending, &mut results, &mut shipped, ship);
                        self.buf.clear();
                    }
                    Err(e) => {
                        if let Some(before) = before {
                            self.st = before;
                        }
                        pending.clear();
                        results.push(Err(duplicate(&e)));
                        failure = Some(e);
                    }
                }
            }
        }
        if !every && !pending.is_empty() {
            match self.write_chunk(self.sync == SyncPolicy::Group) {
                Ok(()) => self.collect(&mut pending, &mut results, &mut shipped, ship),
                Err(e) => {
                    self.st = chunk_state;
                    let n = pending.len();
                    pending.clear();
                    results.clear();
                    results.extend((0..n).map(|_| Err(duplicate(&e))));
                    failure = Some(e);
                }
            }
        }
        self.buf.clear();
        if let Some(e) = failure
            && results.iter().all(Result::is_err)
        {
            return Err(e);
        }
        self.save_state();
        if self.checkpoint_due() {
            // The entries are durable; a failed checkpoint is retried at the next commit, timer or close.
            let _ = self.checkpoint_locked();
        }
        for item in shipped {
            for s in self.shippers.iter() {
                s.offer(item.clone());
            }
        }
        Ok(results)
    }

    fn collect(
        &self,
        pending: &mut Vec<(usize, usize, Appended, String, &'static str)>,
        results: &mut Vec<Result<Appended, AuditError>>,
        shipped: &mut Vec<ShipItem>,
        ship: bool,
    ) {
        for (start, end, appended, time, event_type) in pending.drain(..) {
            if ship && let Some(line) = self.buf.get(start..end.saturating_sub(1)) {
                shipped.push(ShipItem {
                    seq: appended.seq,
                    event_type,
                    time: time.trim_matches('"').to_owned(),
                    leaf: appended.leaf_hash,
                    line: Arc::from(line),
                });
            }
            results.push(Ok(appended));
        }
    }

    /// Writes `self.buf` to the log (and fdatasyncs it when `sync`). On failure the log is cut back
    /// to where the chunk started and the in-memory state rewound to the last durable entry.
    fn write_chunk(&mut self, sync: bool) -> Result<(), AuditError> {
        let start_len = self.st.log_len - self.buf.len() as u64;
        let written = (&self.log)
            .write_all(&self.buf)
            .and_then(|()| if sync { self.log.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Cut the partial write off; if that fails too, the next commit finds a torn line and
            // repairs it. The caller rewinds the in-memory state to the entries before this chunk.
            let _ = self.log.set_len(start_len);
            return Err(AuditError::io("append to audit log", self.path.clone(), e));
        }
        Ok(())
    }

    fn save_state(&mut self) {
        let bytes = self.st.encode();
        // The state is a cache cross-checked at every use, so it is not fsynced, and a failed write
        // only costs a rebuild later. The file only needs cutting when the state got shorter.
        let written = self.state_file.write_all_at(&bytes, 0).and_then(|()| {
            if bytes.len() < self.saved_state.len() || self.saved_state.is_empty() {
                self.state_file.set_len(bytes.len() as u64)
            } else {
                Ok(())
            }
        });
        self.saved_state = if written.is_ok() { bytes } else { Vec::new() };
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
        self.save_state();
        Ok(cp)
    }

    /// Brings the in-memory tail state up to date with the files (another process may have
    /// appended, crashed mid-write, or the state file may be stale or missing). Returns the
    /// `recovered` events to record.
    fn sync_tail(&mut self) -> Result<Vec<PreparedEvent>, AuditError> {
        let file_len = self
            .log
            .metadata()
            .map_err(self.io("read audit log metadata"))?
            .len();
        let mut recoveries = Vec::new();
        let raw = self.read_state_bytes();
        if file_len == self.st.log_len
            && !self.saved_state.is_empty()
            && raw.as_deref() == Some(self.saved_state.as_slice())
            && self.cps.metadata().is_ok_and(|m| m.len() == self.st.cp_len)
        {
            // Nobody wrote since this writer did: the log, the state and the checkpoints are as it left them.
            return Ok(recoveries);
        }
        let disk = raw.as_deref().and_then(TreeState::decode);
        let mut done = false;
        if let Some(s) = &disk
            && s.log_len == file_len
            && self.tail_ok(s, file_len)?
        {
            self.st = s.clone();
            done = true;
        }
        if !done && self.st.log_len == file_len && self.tail_ok(&self.st.clone(), file_len)? {
            done = true;
        }
        if !done {
            // Catch up from the most advanced state that still matches the log.
            let mut base = TreeState::empty();
            let mut from_scratch = true;
            for cand in [disk.clone(), Some(self.st.clone())].into_iter().flatten() {
                if cand.log_len <= file_len
                    && cand.log_len >= base.log_len
                    && cand.size() > 0
                    && self.tail_ok(&cand, file_len)?
                {
                    base = cand;
                    from_scratch = false;
                }
            }
            // The checkpoint bookkeeping is re-read from the checkpoints file below.
            base.cp_len = u64::MAX;
            self.st = base;
            let torn = self.catch_up(file_len)?;
            if let Some((offset, bytes)) = torn {
                recoveries.push(recovered(json!({
                    "reason": "torn_tail",
                    "offset": offset,
                    "truncated_bytes": bytes.len(),
                    "truncated_sha256": crate::merkle::hex_encode(&Sha256::digest(&bytes)),
                })));
            } else if from_scratch && file_len > 0 && disk.is_none() {
                recoveries.push(recovered(json!({
                    "reason": "state_rebuilt",
                    "entries": self.st.size(),
                })));
            }
        }
        if let Some(ev) = self.sync_checkpoints()? {
            recoveries.push(ev);
        }
        Ok(recoveries)
    }

    fn read_state_bytes(&self) -> Option<Vec<u8>> {
        let len = self.state_file.metadata().ok()?.len();
        if len == 0 || len > 1 << 20 {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        self.state_file.read_exact_at(&mut buf, 0).ok()?;
        Some(buf)
    }

    /// Whether the log's bytes end, at `s.log_len`, with the line `s` says was last.
    fn tail_ok(&self, s: &TreeState, file_len: u64) -> Result<bool, AuditError> {
        if s.log_len > file_len {
            return Ok(false);
        }
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

    /// Reconciles the checkpoint bookkeeping with the checkpoints file, truncating a torn final
    /// note, and refuses a log shorter than its latest checkpoint.
    fn sync_checkpoints(&mut self) -> Result<Option<PreparedEvent>, AuditError> {
        let cp_len = self
            .cps
            .metadata()
            .map_err(self.io("read audit checkpoints metadata"))?
            .len();
        if cp_len == self.st.cp_len && (cp_len > 0 || self.st.cp_size == 0) {
            return Ok(None);
        }
        let data = std::fs::read(&self.cp_path)
            .map_err(|e| AuditError::io("read audit checkpoints file", &self.cp_path, e))?;
        let text = checkpoints_text(&data).ok_or_else(|| {
            self.corrupt(
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
        // What this writer (or the state file) knows was signed already: never less than that.
        let signed_before = self.st.cp_size;
        self.st.cp_len = end;
        self.st.cp_size = 0;
        self.last_cp = None;
        let latest = spans
            .notes
            .last()
            .map(|(_, _, note)| unverified_size(note).unwrap_or(0))
            .unwrap_or(0);
        if latest < signed_before {
            // Signing on would launder whatever happened to the entries those checkpoints covered.
            return Err(self.corrupt(
                latest,
                format!(
                    "checkpoints were removed from `{}`: it ends at tree size {latest} but {signed_before} entries were signed; \
                     run `agentsafe audit verify` with a checkpoint saved elsewhere",
                    self.cp_path.display()
                ),
            ));
        }
        if let Some((_, _, note)) = spans.notes.last() {
            let cp = Checkpoint::from_note(note, &self.key.verifying_key()).map_err(|e| {
                self.corrupt(
                    self.st.size(),
                    format!(
                        "the latest checkpoint in `{}` is not this log's: {e}",
                        self.cp_path.display()
                    ),
                )
            })?;
            if cp.size() > self.st.size() {
                return Err(self.corrupt(
                    self.st.size(),
                    format!(
                        "the log holds {} entries but its latest checkpoint covers {}: entries were deleted",
                        self.st.size(),
                        cp.size()
                    ),
                ));
            }
            if cp.size() == self.st.size() && !cp.root().ct_eq(&self.st.range.root()) {
                return Err(self.corrupt(
                    self.st.size().saturating_sub(1),
                    "the log does not match its latest checkpoint; run `agentsafe audit verify`",
                ));
            }
            self.st.cp_size = cp.size();
            self.last_cp = Some(cp);
        }
        Ok(recovery)
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
        AuditError::Closed(p) => AuditError::Closed(p.clone()),
        other => AuditError::Encode(other.to_string()),
    }
}
