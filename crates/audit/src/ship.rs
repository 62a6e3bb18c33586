//! Shipping entries elsewhere: to a file (append), to an HTTP endpoint as CloudEvents 1.0
//! batches (structured mode, `application/cloudevents-batch+json`), or to S3 as one object per
//! batch (see [`crate::s3`]).
//!
//! Two ways: a [`Shipper`] attached to an open log runs on its own thread, fed through a bounded
//! buffer that never blocks an append (overflow is dropped and counted); and [`ship_log`], used by
//! `agentsafe audit ship`, reads the log from a persisted cursor so it can resume.
//!
//! # Checkpoints go along
//!
//! The latest signed checkpoint travels with the entries, so the destination holds a witness
//! that catches a log later cut back or rolled back together with its checkpoints and state
//! (which no check on the log's own machine can): `agentsafe audit verify --checkpoint` with a
//! shipped checkpoint fails on such a log.
//!
//! * `file:PATH`: the checkpoint's signed note is appended to `PATH.checkpoints` when it is newer
//!   than the last one there, so the copy is a log with its own checkpoints file that
//!   `agentsafe audit verify PATH` checks with the public key alone.
//! * `http(s)://URL`: every batch ends with one more CloudEvent, of type
//!   `dev.agentsafe.audit.checkpoint` ([`CLOUDEVENT_CHECKPOINT_TYPE`]), id
//!   `checkpoint-<size>-<root hex>`, whose `data` is `{"origin", "size", "root" (hex), "note"
//!   (the signed note)}`; after the last entries, a batch with only that event carries the final
//!   checkpoint.
//! * `s3://BUCKET/PREFIX`: the note is put as `<prefix>/checkpoints/<size:020>-<root hex>.checkpoint`
//!   ([`S3Location::checkpoint_key`]), never overwritten.
//!
//! Checkpoints are shipped as they are; the destination checks them with the public key
//! ([`crate::Checkpoint::from_note`]).

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::config::{Destination, ShipTarget};
use crate::merkle::{Hash, hex_encode, leaf_hash};
use crate::note::{Checkpoint, checkpoints_text, split_notes, unverified_size};
use crate::s3::{PutOutcome, S3Client, S3Location};
use crate::verify::CheckpointSummary;
use crate::{AuditError, sibling};

/// The CloudEvents `type` prefix; the entry's event type is appended.
pub const CLOUDEVENT_TYPE_PREFIX: &str = "dev.agentsafe.audit.";
/// The media type of a batch.
pub const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";
/// The CloudEvents `type` of the checkpoint event that ends each batch.
pub const CLOUDEVENT_CHECKPOINT_TYPE: &str = "dev.agentsafe.audit.checkpoint";

/// A signed checkpoint on its way out: read from a verified [`Checkpoint`] (the live shipper) or
/// from the log's checkpoints file ([`ship_log`], which holds no key; destinations verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShipCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub note: Arc<str>,
}

impl From<&Checkpoint> for ShipCheckpoint {
    fn from(cp: &Checkpoint) -> Self {
        ShipCheckpoint {
            origin: cp.origin().to_owned(),
            size: cp.size(),
            root: cp.root(),
            note: Arc::from(cp.note()),
        }
    }
}

impl ShipCheckpoint {
    /// Reads origin, size and root from a note without checking its signature.
    fn parse_unverified(note: &str) -> Option<ShipCheckpoint> {
        let mut lines = note.lines();
        let origin = lines.next()?.to_owned();
        let size = unverified_size(note)?;
        let root = lines.nth(1).and_then(Hash::from_base64)?;
        Some(ShipCheckpoint {
            origin,
            size,
            root,
            note: Arc::from(note),
        })
    }

    fn summary(&self) -> CheckpointSummary {
        CheckpointSummary {
            origin: self.origin.clone(),
            size: self.size,
            root: self.root,
        }
    }
}

/// What the live shipper's queue carries, in log order.
#[derive(Debug, Clone)]
pub(crate) enum ShipMsg {
    Entry(ShipItem),
    Checkpoint(ShipCheckpoint),
}

/// One committed entry on its way out.
#[derive(Debug, Clone)]
pub(crate) struct ShipItem {
    pub seq: u64,
    pub event_type: &'static str,
    pub time: String,
    pub leaf: crate::merkle::Hash,
    /// The entry line without its newline.
    pub line: Arc<[u8]>,
}

/// Delivery counters of one shipper.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipStats {
    /// Entries delivered.
    pub shipped: u64,
    /// Entries given up on: the buffer was full, the destination refused them, or closing timed out.
    pub dropped: u64,
    /// Failed delivery attempts that were retried.
    pub retries: u64,
    /// The last delivery error.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct SharedStats {
    shipped: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SharedStats {
    fn snapshot(&self) -> ShipStats {
        ShipStats {
            shipped: self.shipped.load(Ordering::SeqCst),
            dropped: self.dropped.load(Ordering::SeqCst),
            retries: self.retries.load(Ordering::SeqCst),
            last_error: self.last_error.lock().ok().and_then(|g| g.clone()),
        }
    }

    fn set_error(&self, e: String) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e);
        }
    }
}

/// Ships entries of an open log to one destination on a background thread.
///
/// Offering an entry never blocks: when the bounded buffer is full (the destination is down or
/// slow) the entry is dropped and counted. Failed batches are retried with exponential backoff.
#[derive(Debug)]
pub struct Shipper {
    dest: Destination,
    tx: Mutex<Option<SyncSender<ShipMsg>>>,
    /// The newest checkpoint offered, for when the queue was full as it was offered.
    latest_cp: Arc<Mutex<Option<ShipCheckpoint>>>,
    stats: Arc<SharedStats>,
    deadline: Arc<Mutex<Option<Instant>>>,
    closing: Arc<AtomicBool>,
    handle: Mutex<Option<JoinHandle<()>>>,
    flush_timeout: Duration,
}

impl Shipper {
    /// Starts a shipper. `origin` becomes the CloudEvents `source`; counters are persisted beside
    /// `log` when given.
    ///
    /// # Errors
    /// When the shipping thread cannot be started, or an S3 destination has no credentials, no
    /// region or an unusable endpoint.
    pub fn spawn(
        target: ShipTarget,
        origin: &str,
        log: Option<PathBuf>,
    ) -> Result<Shipper, AuditError> {
        let (tx, rx) = mpsc::sync_channel(target.buffer.max(1));
        let stats = Arc::new(SharedStats::default());
        let deadline = Arc::new(Mutex::new(None));
        let closing = Arc::new(AtomicBool::new(false));
        let latest_cp = Arc::new(Mutex::new(None));
        let sink = Sink::new(&target, origin)?;
        let worker = Worker {
            target: target.clone(),
            sink,
            stats: Arc::clone(&stats),
            deadline: Arc::clone(&deadline),
            closing: Arc::clone(&closing),
            latest_cp: Arc::clone(&latest_cp),
            log,
        };
        let handle = std::thread::Builder::new()
            .name("agentsafe-audit-shipper".into())
            .spawn(move || worker.run(&rx))
            .map_err(|e| AuditError::Ship {
                target: target.to.to_string(),
                reason: format!("cannot start the shipping thread: {e}"),
            })?;
        Ok(Shipper {
            dest: target.to.clone(),
            tx: Mutex::new(Some(tx)),
            latest_cp,
            stats,
            deadline,
            closing,
            handle: Mutex::new(Some(handle)),
            flush_timeout: target.flush_timeout.get(),
        })
    }

    /// Queues an entry without blocking; returns `false` (and counts a drop) when the buffer is full
    /// or the shipper is closed.
    pub(crate) fn offer(&self, item: ShipItem) -> bool {
        let sent = self.try_send(ShipMsg::Entry(item));
        if !sent {
            self.stats.dropped.fetch_add(1, Ordering::SeqCst);
        }
        sent
    }

    /// Queues a checkpoint after the entries it covers, without blocking. When the queue is full
    /// it still goes out, with the next batch or on close.
    pub(crate) fn offer_checkpoint(&self, cp: &Checkpoint) {
        let cp = ShipCheckpoint::from(cp);
        if let Ok(mut latest) = self.latest_cp.lock()
            && latest.as_ref().is_none_or(|l| l.size < cp.size)
        {
            *latest = Some(cp.clone());
        }
        self.try_send(ShipMsg::Checkpoint(cp));
    }

    fn try_send(&self, msg: ShipMsg) -> bool {
        match self.tx.lock() {
            Ok(guard) => match guard.as_ref() {
                Some(tx) => match tx.try_send(msg) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                },
                None => false,
            },
            Err(_) => false,
        }
    }

    /// The destination.
    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// Current counters.
    pub fn stats(&self) -> ShipStats {
        self.stats.snapshot()
    }

    /// Delivers what is buffered (waiting at most the target's `flush_timeout`; what is left is
    /// counted as dropped), stops the thread and returns the final counters. Idempotent.
    pub fn close(&self) -> ShipStats {
        if let Ok(mut d) = self.deadline.lock() {
            d.get_or_insert(Instant::now() + self.flush_timeout);
        }
        self.closing.store(true, Ordering::SeqCst);
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            handle.thread().unpark();
            let _ = handle.join();
        }
        self.stats()
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.close();
    }
}

struct Worker {
    target: ShipTarget,
    sink: Sink,
    stats: Arc<SharedStats>,
    deadline: Arc<Mutex<Option<Instant>>>,
    closing: Arc<AtomicBool>,
    latest_cp: Arc<Mutex<Option<ShipCheckpoint>>>,
    log: Option<PathBuf>,
}

impl Worker {
    fn past_deadline(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
            && self
                .deadline
                .lock()
                .ok()
                .and_then(|d| *d)
                .is_some_and(|d| Instant::now() >= d)
    }

    fn run(self, rx: &Receiver<ShipMsg>) {
        let mut persisted = (0u64, 0u64);
        let mut last_persist = Instant::now();
        let batch_size = self.target.batch_size.max(1);
        // The newest checkpoint that arrived after the entries it covers, and the size of the
        // last one delivered.
        let mut latest: Option<ShipCheckpoint> = None;
        let mut delivered = 0u64;
        let newer = |cp: &ShipCheckpoint, than: Option<&ShipCheckpoint>| {
            than.is_none_or(|t| t.size < cp.size)
        };
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::new();
            let mut take = |m: ShipMsg, batch: &mut Vec<ShipItem>| match m {
                ShipMsg::Entry(item) => batch.push(item),
                ShipMsg::Checkpoint(cp) => {
                    if newer(&cp, latest.as_ref()) {
                        latest = Some(cp);
                    }
                }
            };
            take(first, &mut batch);
            while batch.len() < batch_size {
                match rx.try_recv() {
                    Ok(m) => take(m, &mut batch),
                    Err(_) => break,
                }
            }
            let fresh = latest.as_ref().is_some_and(|cp| cp.size > delivered);
            if (!batch.is_empty() || fresh)
                && self.deliver_with_retry(&batch, latest.as_ref())
                && let Some(cp) = &latest
            {
                delivered = delivered.max(cp.size);
            }
            if last_persist.elapsed() >= Duration::from_secs(1) {
                self.persist(&mut persisted);
                last_persist = Instant::now();
            }
        }
        // Closing: the final checkpoint, also when the queue had no room for it.
        let offered = self.latest_cp.lock().ok().and_then(|l| l.clone());
        if let Some(cp) = offered.filter(|cp| newer(cp, latest.as_ref())) {
            latest = Some(cp);
        }
        if let Some(cp) = latest.filter(|cp| cp.size > delivered) {
            self.deliver_with_retry(&[], Some(&cp));
        }
        self.persist(&mut persisted);
    }

    /// Delivers a batch and the latest checkpoint, retrying; returns whether the checkpoint
    /// arrived (or was there already).
    fn deliver_with_retry(&self, batch: &[ShipItem], cp: Option<&ShipCheckpoint>) -> bool {
        if !batch.is_empty() {
            let n = batch.len() as u64;
            if self.retry(n, || self.sink.deliver(batch, cp)).is_err() {
                return false;
            }
            self.stats.shipped.fetch_add(n, Ordering::SeqCst);
            if self.sink.sends_checkpoints_in_batches() {
                return cp.is_some();
            }
        }
        match cp {
            Some(cp) => self
                .retry(0, || self.sink.deliver_checkpoint(cp).map(|_| ()))
                .is_ok(),
            None => false,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the close deadline passes (then the
    /// `n` entries at stake are counted as dropped).
    fn retry(&self, n: u64, attempt: impl Fn() -> Result<(), Failure>) -> Result<(), ()> {
        let mut delay = self
            .target
            .retry_initial
            .get()
            .max(Duration::from_millis(1));
        loop {
            if self.past_deadline() {
                self.stats.dropped.fetch_add(n, Ordering::SeqCst);
                return Err(());
            }
            match attempt() {
                Ok(()) => return Ok(()),
                Err(Failure::Permanent(e)) => {
                    self.stats.set_error(e);
                    self.stats.dropped.fetch_add(n, Ordering::SeqCst);
                    return Err(());
                }
                Err(Failure::Retry(e)) => {
                    self.stats.set_error(e);
                    self.stats.retries.fetch_add(1, Ordering::SeqCst);
                    let wake = Instant::now() + delay;
                    // Sleep, but wake early when closing so the flush deadline is honoured.
                    while Instant::now() < wake && !self.past_deadline() {
                        std::thread::park_timeout(
                            wake.saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(50)),
                        );
                    }
                    delay =
                        (delay * 2).min(self.target.retry_max.get().max(Duration::from_millis(1)));
                }
            }
        }
    }

    fn persist(&self, persisted: &mut (u64, u64)) {
        let Some(log) = &self.log else { return };
        let s = self.stats.snapshot();
        let delta = (
            s.shipped - persisted.0.min(s.shipped),
            s.dropped - persisted.1.min(s.dropped),
        );
        if crate::counters::add_ship_counts(log, &self.target.to.to_string(), delta.0, delta.1)
            .is_ok()
        {
            *persisted = (s.shipped, s.dropped);
        }
    }
}

enum Failure {
    /// Worth trying again (network error, 5xx, 408, 429, file error).
    Retry(String),
    /// The destination refused the batch for good (other 4xx).
    Permanent(String),
}

enum Sink {
    File {
        path: PathBuf,
        /// The size of the last checkpoint in `<path>.checkpoints` (read on first use).
        cp_size: Mutex<Option<Option<u64>>>,
    },
    Http {
        url: String,
        source: String,
        agent: ureq::Agent,
    },
    S3 {
        client: S3Client,
        location: S3Location,
        /// The size of the last checkpoint this sink put.
        cp_size: Mutex<Option<u64>>,
    },
}

impl Sink {
    fn new(target: &ShipTarget, origin: &str) -> Result<Sink, AuditError> {
        Ok(match &target.to {
            Destination::S3(location) => Sink::S3 {
                client: S3Client::from_env(
                    target.region.as_deref(),
                    target.endpoint.as_deref(),
                    target.timeout.get(),
                )
                .map_err(|e| AuditError::Ship {
                    target: target.to.to_string(),
                    reason: match e {
                        AuditError::Config(reason) => reason,
                        other => other.to_string(),
                    },
                })?,
                location: location.clone(),
                cp_size: Mutex::new(None),
            },
            Destination::File(p) => Sink::File {
                path: p.clone(),
                cp_size: Mutex::new(None),
            },
            Destination::Http(url) => {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(target.timeout.get()))
                    .http_status_as_error(false)
                    .build()
                    .into();
                Sink::Http {
                    url: url.clone(),
                    source: origin.to_owned(),
                    agent,
                }
            }
        })
    }

    /// Whether a checkpoint travels inside the batch (HTTP) rather than on its own.
    fn sends_checkpoints_in_batches(&self) -> bool {
        matches!(self, Sink::Http { .. })
    }

    /// Delivers a checkpoint on its own unless the destination has it (or a newer one) already;
    /// returns whether it was sent.
    fn deliver_checkpoint(&self, cp: &ShipCheckpoint) -> Result<bool, Failure> {
        match self {
            Sink::File { path, cp_size } => {
                let cps = sibling(path, "checkpoints");
                let mut known = cp_size
                    .lock()
                    .map_err(|_| Failure::Permanent("the shipper's state is poisoned".into()))?;
                let last = match *known {
                    Some(last) => last,
                    None => last_checkpoint_size(&cps),
                };
                if last.is_some_and(|l| l >= cp.size) {
                    *known = Some(last);
                    return Ok(false);
                }
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&cps)
                    .and_then(|mut f| f.write_all(cp.note.as_bytes()).and_then(|()| f.sync_data()))
                    .map_err(|e| {
                        Failure::Retry(format!("cannot append to `{}`: {e}", cps.display()))
                    })?;
                *known = Some(Some(cp.size));
                Ok(true)
            }
            Sink::S3 {
                client,
                location,
                cp_size,
            } => {
                let mut known = cp_size
                    .lock()
                    .map_err(|_| Failure::Permanent("the shipper's state is poisoned".into()))?;
                if known.is_some_and(|l| l >= cp.size) {
                    return Ok(false);
                }
                let key = location.checkpoint_key(cp.size, &cp.root);
                let outcome = client
                    .put_object_new_inner(
                        location.bucket(),
                        &key,
                        cp.note.as_bytes(),
                        "text/plain; charset=utf-8",
                    )
                    .map_err(s3_failure)?;
                *known = Some(cp.size);
                Ok(outcome == PutOutcome::Created)
            }
            Sink::Http { .. } => self.deliver(&[], Some(cp)).map(|()| true),
        }
    }

    /// Delivers entries; an HTTP batch also carries `cp` as its last event.
    fn deliver(&self, batch: &[ShipItem], cp: Option<&ShipCheckpoint>) -> Result<(), Failure> {
        match self {
            Sink::S3 {
                client, location, ..
            } => {
                // One object per run of consecutive entries: an object's name promises every
                // entry from its first to its last seq (the in-process shipper may have dropped
                // some in between).
                for run in batch.chunk_by(|a, b| b.seq == a.seq + 1) {
                    let (Some(first), Some(last)) = (run.first(), run.last()) else {
                        continue;
                    };
                    let key = location.object_key(first.seq, last.seq);
                    client
                        .put_object_new_inner(
                            location.bucket(),
                            &key,
                            &jsonl(run),
                            "application/x-ndjson",
                        )
                        .map_err(s3_failure)?;
                }
                Ok(())
            }
            Sink::File { path, .. } => {
                let bytes = jsonl(batch);
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_data()))
                    .map_err(|e| {
                        Failure::Retry(format!("cannot append to `{}`: {e}", path.display()))
                    })
            }
            Sink::Http { url, source, agent } => {
                let mut events: Vec<Value> = batch.iter().map(|i| cloud_event(source, i)).collect();
                events.extend(cp.map(|cp| checkpoint_event(source, cp)));
                let body =
                    serde_json::to_vec(&events).map_err(|e| Failure::Permanent(e.to_string()))?;
                match agent
                    .post(url.as_str())
                    .header("content-type", CLOUDEVENTS_BATCH)
                    .send(&body[..])
                {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        // Read the body so the connection can be reused.
                        let _ = resp.into_body().read_to_vec();
                        match status {
                            200..=299 => Ok(()),
                            408 | 429 | 500..=599 => {
                                Err(Failure::Retry(format!("`{url}` answered {status}")))
                            }
                            _ => Err(Failure::Permanent(format!(
                                "`{url}` refused the batch with {status}"
                            ))),
                        }
                    }
                    Err(e) => Err(Failure::Retry(format!("cannot reach `{url}`: {e}"))),
                }
            }
        }
    }
}

/// The entry lines of a batch, each followed by a newline.
fn jsonl(batch: &[ShipItem]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(batch.iter().map(|i| i.line.len() + 1).sum());
    for item in batch {
        bytes.extend_from_slice(&item.line);
        bytes.push(b'\n');
    }
    bytes
}

/// A CloudEvents 1.0 event (structured JSON) for an entry: `id` is the entry's leaf hash,
/// `sequence` its seq, `data` the entry itself.
fn cloud_event(source: &str, item: &ShipItem) -> Value {
    let data: Value = serde_json::from_slice(&item.line).unwrap_or(Value::Null);
    let mut ev = Map::new();
    ev.insert("specversion".into(), Value::String("1.0".into()));
    ev.insert("id".into(), Value::String(item.leaf.to_hex()));
    ev.insert("source".into(), Value::String(source.to_owned()));
    ev.insert(
        "type".into(),
        Value::String(format!("{CLOUDEVENT_TYPE_PREFIX}{}", item.event_type)),
    );
    ev.insert("time".into(), Value::String(item.time.clone()));
    ev.insert(
        "datacontenttype".into(),
        Value::String("application/json".into()),
    );
    ev.insert("sequence".into(), Value::String(item.seq.to_string()));
    ev.insert("data".into(), data);
    Value::Object(ev)
}

/// The CloudEvents 1.0 event for a checkpoint: `id` `checkpoint-<size>-<root hex>`, `data` its
/// origin, size, root (hex) and signed note.
fn checkpoint_event(source: &str, cp: &ShipCheckpoint) -> Value {
    let mut data = Map::new();
    data.insert("origin".into(), Value::String(cp.origin.clone()));
    data.insert("size".into(), Value::from(cp.size));
    data.insert("root".into(), Value::String(cp.root.to_hex()));
    data.insert("note".into(), Value::String(cp.note.to_string()));
    let mut ev = Map::new();
    ev.insert("specversion".into(), Value::String("1.0".into()));
    ev.insert(
        "id".into(),
        Value::String(format!("checkpoint-{}-{}", cp.size, cp.root.to_hex())),
    );
    ev.insert("source".into(), Value::String(source.to_owned()));
    ev.insert(
        "type".into(),
        Value::String(CLOUDEVENT_CHECKPOINT_TYPE.into()),
    );
    ev.insert(
        "datacontenttype".into(),
        Value::String("application/json".into()),
    );
    ev.insert("data".into(), Value::Object(data));
    Value::Object(ev)
}

/// The latest complete checkpoint note of a checkpoints file, unverified.
fn latest_note(path: &Path) -> Option<ShipCheckpoint> {
    let bytes = std::fs::read(path).ok()?;
    let text = checkpoints_text(&bytes)?;
    let spans = split_notes(text);
    let (_, _, note) = spans.notes.last()?;
    ShipCheckpoint::parse_unverified(note)
}

/// The tree size of the last checkpoint of a checkpoints file (`None` when it has none).
fn last_checkpoint_size(path: &Path) -> Option<u64> {
    latest_note(path).map(|cp| cp.size)
}

/// Where `agentsafe audit ship` left off for one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    destination: String,
    next_seq: u64,
    offset: u64,
}

/// The outcome of [`ship_log`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipReport {
    /// The destination.
    pub destination: String,
    /// The first sequence number shipped this time.
    pub from_seq: u64,
    /// The next sequence number to ship (the cursor after this run).
    pub next_seq: u64,
    /// Entries shipped this time.
    pub shipped: u64,
    /// Entries found already delivered (S3 objects of an earlier, interrupted run or of the
    /// in-process shipper), checked byte for byte and not sent again.
    #[serde(default)]
    pub skipped: u64,
    /// The latest signed checkpoint of the log, when this run sent it (with the batches for
    /// HTTP, on its own for a file or S3, where it is not sent again once there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSummary>,
}

/// The cursor file of a destination, beside the log.
pub fn cursor_path(log: &Path, dest: &Destination) -> PathBuf {
    let digest = Sha256::digest(dest.to_string().as_bytes());
    sibling(
        log,
        &format!(
            "ship-{}.cursor",
            hex_encode(digest.get(..8).unwrap_or_default())
        ),
    )
}

/// Ships the log's entries from the destination's cursor (or from `since_seq`) to the end, in
/// batches, retrying each failed batch with exponential backoff up to five attempts. The cursor
/// is saved after every delivered batch, so an interrupted run resumes where it stopped. For a
/// file destination the cursor is also checked against the file's last entry, so entries that
/// were written but not yet recorded in the cursor are not shipped twice. For an S3 destination
/// the objects from the starting point on are listed first: entries they already hold are
/// compared with the log and skipped, batches are cut so they never overlap an existing object,
/// and each batch is one new object, so every entry lands in the bucket exactly once.
///
/// # Errors
/// When the log cannot be read, an S3 destination has no credentials or region, an existing
/// S3 object does not hold the log's entries, or a batch still fails after its retries (the
/// cursor then points at that batch).
pub fn ship_log(
    log: &Path,
    target: &ShipTarget,
    origin: &str,
    since_seq: Option<u64>,
) -> Result<ShipReport, AuditError> {
    let dest = target.to.to_string();
    let ship_err = |reason: String| AuditError::Ship {
        target: dest.clone(),
        reason,
    };
    let sink = Sink::new(target, origin)?;
    // The latest checkpoint now; it covers no more than the entries shipped below.
    let checkpoint = latest_note(&crate::verify::checkpoints_path(log));
    let mut checkpoint_sent = false;
    let cpath = cursor_path(log, &target.to);
    let saved: Option<Cursor> = std::fs::read(&cpath)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|c: &Cursor| c.destination == dest);
    let mut want = match since_seq {
        Some(s) => s,
        None => saved.as_ref().map_or(0, |c| c.next_seq),
    };
    if since_seq.is_none()
        && let Destination::File(p) = &target.to
        && let Some(last) = last_seq_in(p)
    {
        want = want.max(last + 1);
    }
    let file = crate::read::open_log(log)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    // Find the byte offset of `want`: from the cursor when it still points at that entry.
    let mut offset = 0u64;
    let mut seq = 0u64;
    if let Some(c) = &saved
        && c.next_seq <= want
        && entry_seq_at(log, c.offset) == Some(c.next_seq)
    {
        offset = c.offset;
        seq = c.next_seq;
    }
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(|e| AuditError::io("read audit log", log, e))?;
    let mut line = Vec::new();
    while seq < want {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read audit log", log, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        offset += n as u64;
        seq += 1;
    }
    let from_seq = seq;
    // Entry ranges already at the destination, in order (S3 only).
    let mut covered: VecDeque<(u64, u64)> = match &sink {
        Sink::S3 {
            client, location, ..
        } => {
            let start_after = format!("{}{seq:020}", location.key_prefix());
            let keys = retrying(target, || {
                client
                    .list_keys_inner(
                        location.bucket(),
                        &location.key_prefix(),
                        Some(&start_after),
                    )
                    .map_err(s3_failure)
            })
            .map_err(&ship_err)?;
            let mut ranges: Vec<(u64, u64)> = keys
                .iter()
                .filter_map(|k| location.parse_object_key(k))
                .filter(|&(_, last)| last >= seq)
                .collect();
            ranges.sort_unstable();
            ranges.into()
        }
        _ => VecDeque::new(),
    };
    let mut shipped = 0u64;
    let mut skipped = 0u64;
    let batch_size = target.batch_size.max(1) as u64;
    loop {
        // Entries an existing object holds: check them against the log, then step over them.
        while let Some(&(first, last)) = covered.front() {
            if last < seq {
                covered.pop_front();
                continue;
            }
            if first > seq {
                break;
            }
            let Sink::S3 {
                client, location, ..
            } = &sink
            else {
                break;
            };
            let mut bytes = Vec::new();
            let mut n = 0u64;
            while seq + n <= last {
                line.clear();
                let read = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| AuditError::io("read audit log", log, e))?;
                if read == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                bytes.extend_from_slice(&line);
                n += 1;
            }
            let key = location.object_key(first, last);
            let existing = retrying(target, || {
                client
                    .get_object_inner(location.bucket(), &key)
                    .map_err(s3_failure)
            })
            .map_err(&ship_err)?;
            let holds = if first == seq {
                existing == bytes
            } else {
                existing.ends_with(&bytes)
            };
            if seq + n <= last || !holds {
                return Err(ship_err(format!(
                    "object `{key}` in bucket `{}` does not hold this log's entries {seq}..={last}; is another audit log shipping to the same bucket and prefix?",
                    location.bucket()
                )));
            }
            seq += n;
            offset += bytes.len() as u64;
            skipped += n;
            covered.pop_front();
            save_cursor(
                &cpath,
                &Cursor {
                    destination: dest.clone(),
                    next_seq: seq,
                    offset,
                },
            )?;
        }
        // A batch never reaches into the next existing object.
        let room = covered
            .front()
            .map_or(batch_size, |&(first, _)| (first - seq).min(batch_size));
        let mut batch: Vec<ShipItem> = Vec::new();
        let mut batch_bytes = 0u64;
        while (batch.len() as u64) < room {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| AuditError::io("read audit log", log, e))?;
            let Some(body) = line.strip_suffix(b"\n") else {
                break;
            };
            let entry: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            batch.push(ShipItem {
                seq: seq + batch.len() as u64,
                event_type: event_type_name(entry.get("event").and_then(Value::as_str)),
                time: entry
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                leaf: leaf_hash(body),
                line: Arc::from(body),
            });
            batch_bytes += n as u64;
        }
        if batch.is_empty() {
            break;
        }
        retrying(target, || sink.deliver(&batch, checkpoint.as_ref())).map_err(&ship_err)?;
        checkpoint_sent |= checkpoint.is_some() && sink.sends_checkpoints_in_batches();
        let n = batch.len() as u64;
        seq += n;
        offset += batch_bytes;
        shipped += n;
        save_cursor(
            &cpath,
            &Cursor {
                destination: dest.clone(),
                next_seq: seq,
                offset,
            },
        )?;
        let _ = crate::counters::add_ship_counts(log, &dest, n, 0);
    }
    if let Some(cp) = &checkpoint
        && !checkpoint_sent
    {
        checkpoint_sent = retrying(target, || sink.deliver_checkpoint(cp)).map_err(&ship_err)?;
    }
    Ok(ShipReport {
        destination: dest,
        from_seq,
        next_seq: seq,
        shipped,
        skipped,
        checkpoint: checkpoint
            .filter(|_| checkpoint_sent)
            .map(|cp| cp.summary()),
    })
}

/// Runs `attempt` until it succeeds, fails for good, or failed five times, sleeping with
/// exponential backoff between attempts; returns the last error.
fn retrying<T>(
    target: &ShipTarget,
    mut attempt: impl FnMut() -> Result<T, Failure>,
) -> Result<T, String> {
    let mut delay = target.retry_initial.get().max(Duration::from_millis(1));
    let mut tries = 0;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(Failure::Permanent(e)) => return Err(e),
            Err(Failure::Retry(e)) if tries >= 4 => return Err(e),
            Err(Failure::Retry(_)) => {
                tries += 1;
                std::thread::sleep(delay);
                delay = (delay * 2).min(target.retry_max.get());
            }
        }
    }
}

fn s3_failure(f: crate::s3::S3Failure) -> Failure {
    if f.retry {
        Failure::Retry(f.message)
    } else {
        Failure::Permanent(f.message)
    }
}

/// Maps an event name read from the log to the static name used in CloudEvents types.
fn event_type_name(name: Option<&str>) -> &'static str {
    name.and_then(|n| n.parse::<crate::EventType>().ok())
        .map_or("unknown", crate::EventType::as_str)
}

fn save_cursor(path: &Path, cursor: &Cursor) -> Result<(), AuditError> {
    let tmp = path.with_extension("cursor.tmp");
    let bytes = serde_json::to_vec(cursor).map_err(|e| AuditError::Encode(e.to_string()))?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| AuditError::io("save shipping cursor", path, e))
}

/// The seq of the entry starting at `offset`, if a complete entry starts there.
fn entry_seq_at(log: &Path, offset: u64) -> Option<u64> {
    let mut f = std::fs::File::open(log).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut line = Vec::new();
    BufReader::new(f).read_until(b'\n', &mut line).ok()?;
    let body = line.strip_suffix(b"\n")?;
    crate::entry::EntryHead::parse(body).ok().map(|h| h.seq)
}

/// The seq of the last complete entry of a file (reads only its tail).
fn last_seq_in(path: &Path) -> Option<u64> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut window = 4096u64;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start)).ok()?;
        let mut buf = Vec::new();
        (&mut f).take(len - start).read_to_end(&mut buf).ok()?;
        let trimmed = buf.strip_suffix(b"\n")?;
        match trimmed.iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                return crate::entry::EntryHead::parse(trimmed.get(i + 1..)?)
                    .ok()
                    .map(|h| h.seq);
            }
            None if start == 0 => {
                return crate::entry::EntryHead::parse(trimmed).ok().map(|h| h.seq);
            }
            None => window = window.saturating_mul(4),
        }
    }
}
