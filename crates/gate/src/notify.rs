//! Notifications about approval requests: CloudEvents JSON or Slack incoming-webhook
//! messages, sent from one background thread through a bounded queue, with bounded retries.
//!
//! Notifications are sent only after the approval request is stored, which happens only
//! after the decision's audit record; they carry the request as stored, sensitive params
//! HMAC-redacted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentsafe_state::StateStore;
use agentsafe_tickets::HumanDuration;
use serde::Deserialize;

/// The `[notifications]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Endpoints notified on creation and resolution of approval requests.
    pub webhooks: Vec<WebhookConfig>,
    /// Time limit of one delivery attempt (default `2s`).
    pub timeout: HumanDuration,
    /// Retries after a failed attempt (default 2), with a doubling pause from 200 ms.
    pub retries: u32,
    /// How long a command waits at exit for deliveries under way (default `5s`).
    pub flush_timeout: HumanDuration,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            webhooks: Vec::new(),
            timeout: HumanDuration::from_secs(2),
            retries: 2,
            flush_timeout: HumanDuration::from_secs(5),
        }
    }
}

/// One `[[notifications.webhooks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The `http://` URL to POST to.
    pub url: String,
    /// The message format (default `cloudevents`).
    #[serde(default)]
    pub kind: WebhookKind,
}

/// The message format of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// A structured-mode CloudEvents 1.0 JSON event.
    #[default]
    Cloudevents,
    /// A Slack incoming-webhook message (`{"text": ...}`).
    Slack,
}

/// A notification waiting to be delivered.
struct Job {
    bodies: Vec<(String, String, &'static str)>,
}

/// Sends approval notifications from one background thread, through a bounded queue.
///
/// A notification never blocks or changes a decision: [`Notifier::send`] only enqueues.
/// When the queue is full the notification is dropped and counted (`notify_dropped`);
/// deliveries that fail after their retries count as `notify_failures`, successes as
/// `notify_sent`, and whatever is still queued when [`Notifier::flush`] gives up as
/// `notify_unfinished`. Counters live in the state store, so `agentsafe approval stats`
/// sees them across processes.
pub struct Notifier {
    cfg: NotificationsConfig,
    tx: Mutex<Option<SyncSender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    queued: Arc<AtomicUsize>,
    counters: Option<Arc<dyn StateStore>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("webhooks", &self.cfg.webhooks.len())
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// How many notifications may wait for delivery before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 1024;

impl Notifier {
    /// A notifier for `cfg`, counting into `counters`. Without webhooks it starts no thread.
    pub fn new(cfg: NotificationsConfig, counters: Option<Arc<dyn StateStore>>) -> Notifier {
        let queued = Arc::new(AtomicUsize::new(0));
        let mut tx = None;
        let mut worker = None;
        if !cfg.webhooks.is_empty() {
            let (sender, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE_CAPACITY);
            let (timeout, retries) = (cfg.timeout.as_std(), cfg.retries);
            let q = Arc::clone(&queued);
            let c = counters.clone();
            let spawned = std::thread::Builder::new()
                .name("agentsafe-notify".to_owned())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        for (url, body, content_type) in &job.bodies {
                            let ok = deliver(url, content_type, body, timeout, retries);
                            count(
                                c.as_deref(),
                                if ok { "notify_sent" } else { "notify_failures" },
                            );
                        }
                        q.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            match spawned {
                Ok(handle) => {
                    tx = Some(sender);
                    worker = Some(handle);
                }
                Err(_) => count(counters.as_deref(), "notify_failures"),
            }
        }
        Notifier {
            cfg,
            tx: Mutex::new(tx),
            worker: Mutex::new(worker),
            queued,
            counters,
        }
    }

    /// Queues `event_type` (such as `approval.created`) with `data` for every configured
    /// webhook. `summary` is the Slack text; it is escaped for Slack here.
    pub fn send(&self, event_type: &str, data: serde_json::Value, summary: &str) {
        if self.cfg.webhooks.is_empty() {
            return;
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let cloudevent = serde_json::json!({
            "specversion": "1.0",
            "id": id,
            "source": "agentsafe",
            "type": format!("dev.agentsafe.{event_type}"),
            "time": agentsafe_core::Timestamp::now().to_string(),
            "datacontenttype": "application/json",
            "data": data,
        });
        let slack = serde_json::json!({ "text": slack_escape(summary) });
        let bodies = self
            .cfg
            .webhooks
            .iter()
            .map(|hook| match hook.kind {
                WebhookKind::Cloudevents => (
                    hook.url.clone(),
                    cloudevent.to_string(),
                    "application/cloudevents+json",
                ),
                WebhookKind::Slack => (hook.url.clone(), slack.to_string(), "application/json"),
            })
            .collect();
        let guard = self.tx.lock().ok();
        let Some(tx) = guard.as_ref().and_then(|g| g.as_ref()) else {
            count(self.counters.as_deref(), "notify_dropped");
            return;
        };
        self.queued.fetch_add(1, Ordering::SeqCst);
        if tx.try_send(Job { bodies }).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            count(self.counters.as_deref(), "notify_dropped");
        }
    }

    /// Notifications queued or being delivered.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Waits for queued deliveries, at most `flush_timeout`; counts the unfinished ones
    /// and stops the worker. Called once before the process exits (and on drop).
    pub fn flush(&self) {
        let deadline = Instant::now() + self.cfg.flush_timeout.as_std();
        while self.queued() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let left = self.queued();
        if left > 0 {
            if let Some(c) = &self.counters {
                let _ = c.add_counter("notify_unfinished", u64::try_from(left).unwrap_or(0));
            }
            // The worker is blocked in a delivery; it ends with the process.
            return;
        }
        if let Some(handle) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Escapes `&`, `<` and `>` as Slack's message format asks, so an id chosen by an agent
/// (`<https://evil.example|CHG-1>`) shows as text, never as a link or a mention; control
/// characters are shown escaped.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

fn deliver(url: &str, content_type: &str, body: &str, timeout: Duration, retries: u32) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(true)
        .build()
        .into();
    let mut delay = Duration::from_millis(200);
    for attempt in 0..=retries {
        if attempt > 0 {
            std::thread::sleep(delay);
            delay = delay.saturating_mul(2);
        }
        let sent = agent
            .post(url)
            .header("content-type", content_type)
            .send(body);
        if sent.is_ok() {
            return true;
        }
    }
    false
}

fn count(store: Option<&dyn StateStore>, name: &str) {
    if let Some(s) = store {
        let _ = s.add_counter(name, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_cannot_carry_links_or_extra_lines() {
        assert_eq!(
            slack_escape("<https://evil.example|CHG-1> & more\nline"),
            "&lt;https://evil.example|CHG-1&gt; &amp; more\\nline"
        );
    }
}
