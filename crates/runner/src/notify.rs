//! Notifications about approval requests: CloudEvents JSON or Slack incoming-webhook
//! messages, sent on background threads with bounded retries.
//!
//! A notification never blocks or changes a decision: sending starts after the request
//! is stored, and before the process exits [`flush`] waits a bounded time (the
//! `flush_timeout`, default 5s) for what is still under way. Every delivery that fails
//! after its retries, and every one still unfinished at exit, is counted in the state
//! store (`notify_failures`, `notify_unfinished`; `notify_sent` for successes), so
//! `agentsafe approval stats` shows them across processes.

use std::path::PathBuf;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentsafe_state::{SqliteStateStore, StateStore};
use agentsafe_tickets::HumanDuration;
use serde::Deserialize;

use crate::context::Context;

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

struct Pending {
    handle: JoinHandle<()>,
    db: PathBuf,
    flush: Duration,
}

static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

/// Sends `event_type` (such as `approval.created`) with `data` to every configured
/// webhook, in the background. `summary` is the Slack text.
pub fn send(ctx: &Context, event_type: &str, data: serde_json::Value, summary: String) {
    let cfg = &ctx.config.notifications;
    if cfg.webhooks.is_empty() {
        return;
    }
    let db = ctx
        .config
        .limits
        .database_path(&ctx.config_base(), &ctx.state_dir);
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
    let slack = serde_json::json!({ "text": summary });
    for hook in &cfg.webhooks {
        let (body, content_type) = match hook.kind {
            WebhookKind::Cloudevents => (cloudevent.to_string(), "application/cloudevents+json"),
            WebhookKind::Slack => (slack.to_string(), "application/json"),
        };
        let url = hook.url.clone();
        let timeout = cfg.timeout.as_std();
        let retries = cfg.retries;
        let db_path = db.clone();
        let spawned = std::thread::Builder::new()
            .name("agentsafe-notify".to_owned())
            .spawn(move || {
                let ok = deliver(&url, content_type, &body, timeout, retries);
                count(&db_path, if ok { "notify_sent" } else { "notify_failures" });
            });
        match spawned {
            Ok(handle) => {
                if let Ok(mut p) = PENDING.lock() {
                    p.push(Pending {
                        handle,
                        db: db.clone(),
                        flush: cfg.flush_timeout.as_std(),
                    });
                }
            }
            Err(_) => count(&db, "notify_failures"),
        }
    }
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

fn count(db: &std::path::Path, name: &str) {
    if let Ok(store) = SqliteStateStore::open(db) {
        let _ = store.add_counter(name, 1);
    }
}

/// Waits for deliveries under way, at most the configured `flush_timeout`; counts the
/// unfinished ones. Called once before the process exits.
pub fn flush_configured() {
    let pending: Vec<Pending> = match PENDING.lock() {
        Ok(mut p) => std::mem::take(&mut *p),
        Err(_) => return,
    };
    let timeout = pending.iter().map(|p| p.flush).max().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && pending.iter().any(|p| !p.handle.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in pending {
        if p.handle.is_finished() {
            let _ = p.handle.join();
        } else {
            count(&p.db, "notify_unfinished");
        }
    }
}
