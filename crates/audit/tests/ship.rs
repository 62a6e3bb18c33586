//! Shipping to a file (resumable from a cursor) and to a real HTTP server on 127.0.0.1 as
//! CloudEvents batches: retries on 500, counted drops when the bounded buffer overflows, and
//! appends that never wait for the destination.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentsafe_audit::{
    AuditConfig, Destination, ShipTarget, SyncPolicy, read_checkpoints, read_counters, ship_log,
    verify_log,
};
use common::{Fixture, cfg_with, event, read_lines};

/// A request the test server received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    body: serde_json::Value,
}

/// A tiny HTTP/1.1 server answering with the queued statuses (then `default`), recording requests.
struct Server {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
    default: Arc<Mutex<u16>>,
}

impl Server {
    fn start(queued: &[u16], default: u16) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(queued.iter().rev().copied().collect::<Vec<_>>()));
        let default = Arc::new(Mutex::new(default));
        let (r, s, d) = (
            Arc::clone(&received),
            Arc::clone(&statuses),
            Arc::clone(&default),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let status = s.lock().unwrap().pop().unwrap_or(*d.lock().unwrap());
                if let Some(req) = handle(stream, status) {
                    r.lock().unwrap().push(req);
                }
            }
        });
        Server {
            url,
            received,
            statuses,
            default,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every event of every successfully answered (2xx) request is what counts as delivered; the
    /// server records all requests, so tests look at the bodies.
    fn events(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .flat_map(|r| r.body.as_array().cloned().unwrap_or_default())
            .collect()
    }
}

fn handle(mut stream: TcpStream, status: u16) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.lines();
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let mut length = 0usize;
    let mut content_type = String::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "content-type" => content_type = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[header_end..header_end + length])
        .unwrap_or(serde_json::Value::Null);
    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(reply.as_bytes()).ok()?;
    let accepted = (200..300).contains(&status);
    Some(Received {
        path,
        content_type,
        body: if accepted {
            body
        } else {
            serde_json::Value::Null
        },
    })
}

fn http_target(url: &str) -> ShipTarget {
    ShipTarget {
        batch_size: 8,
        retry_initial: Duration::from_millis(5).into(),
        retry_max: Duration::from_millis(50).into(),
        timeout: Duration::from_secs(5).into(),
        flush_timeout: Duration::from_secs(10).into(),
        ..ShipTarget::new(Destination::Http(url.to_owned()))
    }
}

fn with_ship(targets: Vec<ShipTarget>) -> AuditConfig {
    AuditConfig {
        ship: targets,
        ..cfg_with(SyncPolicy::None, 0)
    }
}

#[test]
fn a_file_destination_resumes_from_its_cursor() {
    let fx = Fixture::new();
    fx.write(10, &cfg_with(SyncPolicy::None, 0));
    let dest = fx.dir.path().join("replica.jsonl");
    let target = ShipTarget::new(Destination::File(dest.clone()));

    let r = ship_log(&fx.log, &target, "agentsafe.local/audit", None).unwrap();
    assert_eq!((r.from_seq, r.next_seq, r.shipped), (0, 10, 10));
    assert_eq!(read_lines(&dest), fx.lines());

    fx.write(5, &cfg_with(SyncPolicy::None, 0));
    let r = ship_log(&fx.log, &target, "agentsafe.local/audit", None).unwrap();
    assert_eq!((r.from_seq, r.next_seq, r.shipped), (10, 15, 5));
    assert_eq!(read_lines(&dest), fx.lines());
    let r = ship_log(&fx.log, &target, "agentsafe.local/audit", None).unwrap();
    assert_eq!(r.shipped, 0);

    // A crash after the copy was written but before the cursor was saved: no duplicates.
    fx.write(2, &cfg_with(SyncPolicy::None, 0));
    let lines = fx.lines();
    let mut replica = std::fs::read_to_string(&dest).unwrap();
    replica.push_str(&lines[15]);
    replica.push('\n');
    std::fs::write(&dest, replica).unwrap();
    let r = ship_log(&fx.log, &target, "agentsafe.local/audit", None).unwrap();
    assert_eq!((r.from_seq, r.shipped), (16, 1));
    assert_eq!(read_lines(&dest), fx.lines());
    assert_eq!(
        read_counters(&fx.log).unwrap().shipped[&target.to.to_string()],
        16
    );

    // An explicit start.
    let other = ShipTarget::new(Destination::File(fx.dir.path().join("from-3.jsonl")));
    let r = ship_log(&fx.log, &other, "agentsafe.local/audit", Some(3)).unwrap();
    assert_eq!((r.from_seq, r.shipped), (3, 14));
    assert_eq!(
        read_lines(&fx.dir.path().join("from-3.jsonl")),
        fx.lines()[3..].to_vec()
    );
}

#[test]
fn an_in_process_file_shipper_copies_every_entry() {
    let fx = Fixture::new();
    let dest = fx.dir.path().join("copy.jsonl");
    let log = fx.open(&with_ship(vec![ShipTarget::new(Destination::File(
        dest.clone(),
    ))]));
    for i in 0..20 {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    assert_eq!(read_lines(&dest), fx.lines());
    let counters = read_counters(&fx.log).unwrap();
    assert_eq!(counters.shipped[&format!("file:{}", dest.display())], 20);
}

#[test]
fn http_delivers_cloudevents_batches() {
    let server = Server::start(&[], 200);
    let fx = Fixture::new();
    let log = fx.open(&with_ship(vec![http_target(&server.url)]));
    for i in 0..20 {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    let requests = server.received();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.path, "/ingest");
        assert_eq!(r.content_type, "application/cloudevents-batch+json");
        assert!(
            r.body
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] != "dev.agentsafe.audit.checkpoint")
                .count()
                <= 8,
            "batches respect batch_size"
        );
    }
    // Entry events; each batch also carries the latest signed checkpoint as an event of its own
    // (see `http_batches_carry_the_latest_signed_checkpoint`).
    let events: Vec<serde_json::Value> = server
        .events()
        .into_iter()
        .filter(|e| e["type"] != "dev.agentsafe.audit.checkpoint")
        .collect();
    let lines = fx.lines();
    assert_eq!(events.len(), 20);
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev["specversion"], "1.0");
        assert_eq!(ev["type"], "dev.agentsafe.audit.execution");
        assert_eq!(ev["source"], "agentsafe.local/audit");
        assert_eq!(ev["datacontenttype"], "application/json");
        assert_eq!(ev["data"]["seq"], i as u64);
        assert_eq!(ev["sequence"], i.to_string());
        assert_eq!(
            ev["id"],
            agentsafe_audit::merkle::leaf_hash(lines[i].as_bytes()).to_hex()
        );
        assert_eq!(ev["time"], ev["data"]["time"]);
    }
}

#[test]
fn http_failures_are_retried() {
    let server = Server::start(&[500, 503], 200);
    let fx = Fixture::new();
    let log = fx.open(&with_ship(vec![ShipTarget {
        batch_size: 100,
        ..http_target(&server.url)
    }]));
    for i in 0..5 {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    assert!(server.received().len() >= 3, "two failures then a success");
    let seqs: Vec<u64> = server
        .events()
        .iter()
        .filter_map(|e| e["data"]["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4], "delivered once each, in order");
    let c = read_counters(&fx.log).unwrap();
    assert_eq!(c.shipped[&server.url], 5);
    assert_eq!(c.dropped[&server.url], 0);

    // The one-shot `ship` path retries too.
    *server.statuses.lock().unwrap() = vec![500];
    let target = http_target(&server.url);
    let r = ship_log(&fx.log, &target, "agentsafe.local/audit", None).unwrap();
    assert_eq!(r.shipped, 5);
}

#[test]
fn drops_are_counted_when_the_endpoint_is_down_and_appends_never_wait() {
    let server = Server::start(&[], 500);
    let fx = Fixture::new();
    let target = ShipTarget {
        batch_size: 2,
        buffer: 4,
        flush_timeout: Duration::from_millis(200).into(),
        ..http_target(&server.url)
    };
    let log = fx.open(&with_ship(vec![target]));
    // The endpoint never recovers: if an append waited for it, this loop would never finish.
    for i in 0..50 {
        log.append(event(i)).unwrap();
    }
    let live = log.ship_stats();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].1.shipped, 0);
    assert!(
        live[0].1.dropped >= 50 - 4 - 2,
        "overflow beyond buffer and batch is dropped: {live:?}"
    );
    log.close().unwrap();
    let c = read_counters(&fx.log).unwrap();
    assert_eq!(c.shipped.get(&server.url).copied().unwrap_or(0), 0);
    assert_eq!(
        c.dropped[&server.url], 50,
        "every undelivered entry is counted"
    );
    assert_eq!(
        agentsafe_audit::stats(&fx.log).unwrap().counters.dropped[&server.url],
        50
    );
    *server.default.lock().unwrap() = 200;
    // The log itself is complete: the entries can still be shipped from it later.
    let r = ship_log(
        &fx.log,
        &http_target(&server.url),
        "agentsafe.local/audit",
        None,
    )
    .unwrap();
    assert_eq!(r.shipped, 50);
}

/// The checkpoint CloudEvents among what the server received.
fn checkpoint_events(server: &Server) -> Vec<serde_json::Value> {
    server
        .events()
        .into_iter()
        .filter(|e| e["type"] == "dev.agentsafe.audit.checkpoint")
        .collect()
}

#[test]
fn a_shipped_file_copy_carries_the_signed_checkpoints_and_verifies_on_its_own() {
    let fx = Fixture::new();
    let dest = fx.dir.path().join("replica.jsonl");
    let log = fx.open(&AuditConfig {
        ship: vec![ShipTarget {
            batch_size: 4,
            ..ShipTarget::new(Destination::File(dest.clone()))
        }],
        ..cfg_with(SyncPolicy::Group, 5)
    });
    for i in 0..12 {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    assert_eq!(read_lines(&dest), fx.lines());
    // The copy is a log with its own checkpoints file: it verifies with the public key alone,
    // up to the final checkpoint.
    let report = verify_log(&dest, &fx.key.verifying_key(), None).unwrap();
    assert_eq!(report.entries, 12);
    assert_eq!(report.latest_checkpoint.unwrap().size, 12);

    // It is the witness that catches a log cut back together with its checkpoints.
    let lines = fx.lines();
    fx.set_lines(&lines[..10]);
    let kept: String = read_checkpoints(&fx.log, &fx.key.verifying_key())
        .unwrap()
        .iter()
        .filter(|c| c.size() <= 10)
        .map(|c| c.note().to_owned())
        .collect();
    std::fs::write(fx.checkpoints(), kept).unwrap();
    verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    let witness = agentsafe_audit::checkpoints_path(&dest);
    let saved = fx.dir.path().join("witness.txt");
    let notes = read_checkpoints(&dest, &fx.key.verifying_key()).unwrap();
    std::fs::write(&saved, notes.last().unwrap().note()).unwrap();
    assert!(witness.exists());
    let err = verify_log(&fx.log, &fx.key.verifying_key(), Some(&saved)).unwrap_err();
    assert_eq!(
        err.verify_failure().unwrap().kind,
        agentsafe_audit::TamperKind::Truncated,
        "{err}"
    );
}

#[test]
fn ship_log_sends_the_latest_checkpoint_to_a_file_destination() {
    let fx = Fixture::new();
    fx.write(6, &cfg_with(SyncPolicy::None, 4));
    let dest = fx.dir.path().join("replica.jsonl");
    let target = ShipTarget::new(Destination::File(dest.clone()));
    let r = ship_log(&fx.log, &target, "agentsafe.local/audit", None).unwrap();
    assert_eq!(r.shipped, 6);
    assert_eq!(r.checkpoint.as_ref().map(|c| c.size), Some(6));
    assert_eq!(
        verify_log(&dest, &fx.key.verifying_key(), None)
            .unwrap()
            .entries,
        6
    );
    // Nothing new: neither entries nor a checkpoint are sent again.
    let r = ship_log(&fx.log, &target, "agentsafe.local/audit", None).unwrap();
    assert_eq!((r.shipped, r.checkpoint), (0, None));
    let notes = read_checkpoints(&dest, &fx.key.verifying_key()).unwrap();
    assert_eq!(notes.len(), 1);
    // New entries and a new checkpoint.
    fx.write(3, &cfg_with(SyncPolicy::None, 0));
    let r = ship_log(&fx.log, &target, "agentsafe.local/audit", None).unwrap();
    assert_eq!((r.shipped, r.checkpoint.map(|c| c.size)), (3, Some(9)));
    assert_eq!(
        verify_log(&dest, &fx.key.verifying_key(), None)
            .unwrap()
            .entries,
        9
    );
}

#[test]
fn http_batches_carry_the_latest_signed_checkpoint() {
    let server = Server::start(&[], 200);
    let fx = Fixture::new();
    let log = fx.open(&AuditConfig {
        ship: vec![http_target(&server.url)],
        ..cfg_with(SyncPolicy::None, 5)
    });
    for i in 0..12 {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    let cps = checkpoint_events(&server);
    assert!(!cps.is_empty(), "no checkpoint was shipped");
    let last = cps.last().unwrap();
    assert_eq!(last["specversion"], "1.0");
    assert_eq!(last["source"], "agentsafe.local/audit");
    assert_eq!(last["datacontenttype"], "application/json");
    assert_eq!(
        last["data"]["size"], 12,
        "the final checkpoint reaches the destination"
    );
    let note = last["data"]["note"].as_str().unwrap();
    let cp = agentsafe_audit::Checkpoint::from_note(note, &fx.key.verifying_key()).unwrap();
    assert_eq!(last["data"]["root"], cp.root().to_hex());
    assert_eq!(last["data"]["origin"], cp.origin());
    assert_eq!(last["id"], format!("checkpoint-12-{}", cp.root().to_hex()));
    // Every checkpoint shipped is one the log signed, in order.
    let signed: Vec<u64> = read_checkpoints(&fx.log, &fx.key.verifying_key())
        .unwrap()
        .iter()
        .map(|c| c.size())
        .collect();
    for c in &cps {
        assert!(signed.contains(&c["data"]["size"].as_u64().unwrap()), "{c}");
    }

    // `ship_log` sends one along too, even when no entry is new.
    let before = checkpoint_events(&server).len();
    let r = ship_log(
        &fx.log,
        &http_target(&server.url),
        "agentsafe.local/audit",
        Some(12),
    )
    .unwrap();
    assert_eq!(r.shipped, 0);
    assert_eq!(r.checkpoint.map(|c| c.size), Some(12));
    assert_eq!(checkpoint_events(&server).len(), before + 1);
}
