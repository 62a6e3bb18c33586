//! Shipping to a real S3 endpoint (moto in development and CI: `cargo xtask moto-up`): the
//! in-process shipper and `ship_log` put one object per batch, a resumed or repeated run never
//! overwrites or duplicates a batch, gaps are filled exactly once, and the objects read back
//! reassemble into a log that verifies against its signed checkpoints.
//!
//! Each test makes its own bucket with a request signed by the crate's own SigV4 signer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentsafe_audit::{
    AuditConfig, Destination, PutOutcome, S3Client, S3Location, ShipTarget, SyncPolicy,
    read_counters, ship_log, verify_log,
};
use common::{Fixture, cfg_with, event};

const HINT: &str = "needs an S3 endpoint: cargo xtask moto-up";
const ORIGIN: &str = "agentsafe.local/audit";

/// Checks that the S3 settings are in the environment, naming what is missing.
fn require_env() {
    let missing: Vec<&str> = [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ]
    .into_iter()
    .filter(|v| std::env::var(v).map_or(true, |s| s.is_empty()))
    .collect();
    assert!(
        missing.is_empty(),
        "{HINT} (then export AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION); missing: {}",
        missing.join(", ")
    );
}

fn client() -> S3Client {
    require_env();
    S3Client::from_env(None, None, Duration::from_secs(10)).unwrap()
}

/// Creates a bucket no other test (or earlier run) uses.
fn fresh_bucket(client: &S3Client, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let bucket = format!("as-{name}-{}-{nanos}", std::process::id());
    client.create_bucket(&bucket).unwrap();
    bucket
}

fn s3_target(location: &S3Location, batch_size: usize) -> ShipTarget {
    ShipTarget {
        batch_size,
        retry_initial: Duration::from_millis(5).into(),
        retry_max: Duration::from_millis(50).into(),
        flush_timeout: Duration::from_secs(20).into(),
        ..ShipTarget::new(Destination::S3(location.clone()))
    }
}

/// The checkpoint objects under the location, in key order: `(key, note)`.
fn checkpoint_objects(client: &S3Client, location: &S3Location) -> Vec<(String, String)> {
    let prefix = format!("{}checkpoints/", location.key_prefix());
    client
        .list_keys(location.bucket(), &prefix, None)
        .unwrap()
        .into_iter()
        .map(|k| {
            let body = client.get_object(location.bucket(), &k).unwrap();
            (k, String::from_utf8(body).unwrap())
        })
        .collect()
}

/// Every batch object under the location, in key order: `(first, last, lines)`. Checkpoint
/// objects (`<prefix>/checkpoints/...`) are left out.
fn objects(client: &S3Client, location: &S3Location) -> Vec<(u64, u64, Vec<String>)> {
    let keys = client
        .list_keys(location.bucket(), &location.key_prefix(), None)
        .unwrap();
    let checkpoints = format!("{}checkpoints/", location.key_prefix());
    keys.iter()
        .filter(|k| !k.starts_with(&checkpoints))
        .map(|k| {
            let (first, last) = location
                .parse_object_key(k)
                .unwrap_or_else(|| panic!("`{k}` is not a batch object name"));
            let body = client.get_object(location.bucket(), k).unwrap();
            let text = String::from_utf8(body).unwrap();
            assert!(text.ends_with('\n'), "`{k}` ends with a newline");
            (first, last, text.lines().map(str::to_owned).collect())
        })
        .collect()
}

/// Every entry of the log is in exactly one object, objects are named by the seqs they hold and
/// sort in log order, and the entries read back form a log that verifies against the original
/// signed checkpoints.
fn assert_exactly_once(fx: &Fixture, objs: &[(u64, u64, Vec<String>)]) {
    let mut next = 0u64;
    let mut shipped: Vec<String> = Vec::new();
    for (first, last, lines) in objs {
        assert_eq!(
            *first, next,
            "objects follow each other without gap or overlap"
        );
        assert_eq!(
            lines.len() as u64,
            last - first + 1,
            "object {first}-{last}"
        );
        for (i, l) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["seq"], first + i as u64);
        }
        shipped.extend(lines.iter().cloned());
        next = last + 1;
    }
    let original = fx.lines();
    assert_eq!(shipped.len(), original.len(), "every entry arrived once");
    assert_eq!(shipped, original, "the entries arrived byte for byte");

    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("audit.jsonl");
    std::fs::write(&copy, format!("{}\n", shipped.join("\n"))).unwrap();
    std::fs::copy(fx.checkpoints(), agentsafe_audit::checkpoints_path(&copy)).unwrap();
    let report = verify_log(&copy, &fx.key.verifying_key(), None).unwrap();
    assert_eq!(report.entries, original.len() as u64);
}

fn no_checkpoint_timer() -> AuditConfig {
    cfg_with(SyncPolicy::None, 0)
}

#[test]
#[ignore = "needs an S3 endpoint: cargo xtask moto-up"]
fn the_in_process_shipper_puts_one_object_per_batch() {
    let s3 = client();
    let bucket = fresh_bucket(&s3, "live");
    let location = S3Location::new(&bucket, "agentsafe/prod").unwrap();
    let fx = Fixture::new();
    let log = fx.open(&AuditConfig {
        ship: vec![s3_target(&location, 8)],
        ..no_checkpoint_timer()
    });
    for i in 0..30 {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    let counters = read_counters(&fx.log).unwrap();
    let dest = location.to_string();
    assert_eq!(counters.shipped[&dest], 30);
    assert_eq!(counters.dropped.get(&dest).copied().unwrap_or(0), 0);

    let objs = objects(&s3, &location);
    assert!(
        objs.len() >= 4,
        "batches of at most 8: {} objects",
        objs.len()
    );
    for (first, last, _) in &objs {
        assert!(last - first < 8, "batch_size is respected");
    }
    assert_exactly_once(&fx, &objs);
    // The final signed checkpoint went along, as a witness for the log.
    let cps = checkpoint_objects(&s3, &location);
    let (key, note) = cps.last().expect("no checkpoint object was put");
    let cp = agentsafe_audit::Checkpoint::from_note(note, &fx.key.verifying_key()).unwrap();
    assert_eq!(cp.size(), 30);
    assert_eq!(key, &location.checkpoint_key(30, &cp.root()));

    // `ship_log` after the live shipper finds everything there and sends nothing again.
    let r = ship_log(&fx.log, &s3_target(&location, 8), ORIGIN, None).unwrap();
    assert_eq!((r.shipped, r.skipped, r.next_seq), (0, 30, 30));
    assert_eq!(r.checkpoint, None, "the checkpoint was there already");
    assert_eq!(objects(&s3, &location), objs);
    assert_eq!(checkpoint_objects(&s3, &location), cps);
}

#[test]
#[ignore = "needs an S3 endpoint: cargo xtask moto-up"]
fn ship_log_resumes_without_overwriting_or_duplicating() {
    let s3 = client();
    let bucket = fresh_bucket(&s3, "resume");
    let location = S3Location::new(&bucket, "audit").unwrap();
    let target = s3_target(&location, 10);
    let fx = Fixture::new();
    fx.write(25, &no_checkpoint_timer());

    let r = ship_log(&fx.log, &target, ORIGIN, None).unwrap();
    assert_eq!(
        (r.from_seq, r.next_seq, r.shipped, r.skipped),
        (0, 25, 25, 0)
    );
    let objs = objects(&s3, &location);
    let ranges: Vec<(u64, u64)> = objs.iter().map(|(f, l, _)| (*f, *l)).collect();
    assert_eq!(ranges, vec![(0, 9), (10, 19), (20, 24)]);
    assert_exactly_once(&fx, &objs);

    // New entries: the next run starts at the cursor and adds one object.
    fx.write(7, &no_checkpoint_timer());
    let r = ship_log(&fx.log, &target, ORIGIN, None).unwrap();
    assert_eq!(
        (r.from_seq, r.next_seq, r.shipped, r.skipped),
        (25, 32, 7, 0)
    );
    let r = ship_log(&fx.log, &target, ORIGIN, None).unwrap();
    assert_eq!((r.shipped, r.skipped), (0, 0), "up to date");
    assert_exactly_once(&fx, &objects(&s3, &location));

    // A crash after S3 stored a batch but before the cursor moved: the old cursor comes back,
    // the run finds the object, checks it against the log and does not put it again.
    let cursor = agentsafe_audit::ship::cursor_path(&fx.log, &target.to);
    let before = std::fs::read(&cursor).unwrap();
    fx.write(5, &no_checkpoint_timer());
    let r = ship_log(&fx.log, &target, ORIGIN, None).unwrap();
    assert_eq!((r.from_seq, r.shipped), (32, 5));
    std::fs::write(&cursor, &before).unwrap();
    fx.write(3, &no_checkpoint_timer());
    let r = ship_log(&fx.log, &target, ORIGIN, None).unwrap();
    assert_eq!(
        (r.from_seq, r.next_seq, r.shipped, r.skipped),
        (32, 40, 3, 5),
        "the lost batch is found, the new entries get their own object"
    );
    let objs = objects(&s3, &location);
    assert_eq!(objs.len(), 6);
    assert_exactly_once(&fx, &objs);

    // The cursor lost entirely: everything is found, nothing is sent.
    std::fs::remove_file(&cursor).unwrap();
    let r = ship_log(&fx.log, &target, ORIGIN, None).unwrap();
    assert_eq!((r.from_seq, r.shipped, r.skipped), (0, 0, 40));
    assert_eq!(objects(&s3, &location), objs);
    assert_eq!(
        read_counters(&fx.log).unwrap().shipped[&location.to_string()],
        40,
        "skipped entries are not counted as shipped twice"
    );
}

#[test]
#[ignore = "needs an S3 endpoint: cargo xtask moto-up"]
fn gaps_are_filled_exactly_once() {
    let s3 = client();
    let bucket = fresh_bucket(&s3, "gaps");
    let location = S3Location::new(&bucket, "").unwrap();
    let fx = Fixture::new();
    fx.write(30, &no_checkpoint_timer());

    // Entries 12.. first (an explicit start), then everything from 0: the second run ships
    // 0..=11 in batches cut short of the existing object and skips the rest.
    let r = ship_log(&fx.log, &s3_target(&location, 7), ORIGIN, Some(12)).unwrap();
    assert_eq!((r.from_seq, r.shipped), (12, 18));
    let r = ship_log(&fx.log, &s3_target(&location, 5), ORIGIN, Some(0)).unwrap();
    assert_eq!(
        (r.from_seq, r.next_seq, r.shipped, r.skipped),
        (0, 30, 12, 18)
    );
    let objs = objects(&s3, &location);
    let ranges: Vec<(u64, u64)> = objs.iter().map(|(f, l, _)| (*f, *l)).collect();
    assert_eq!(
        ranges,
        vec![(0, 4), (5, 9), (10, 11), (12, 18), (19, 25), (26, 29)]
    );
    assert_exactly_once(&fx, &objs);
}

#[test]
#[ignore = "needs an S3 endpoint: cargo xtask moto-up"]
fn an_object_with_other_entries_is_never_overwritten() {
    let s3 = client();
    let bucket = fresh_bucket(&s3, "clash");
    let location = S3Location::new(&bucket, "shared").unwrap();
    let key = location.object_key(0, 4);
    let foreign = b"{\"seq\":0,\"from\":\"another log\"}\n";
    assert_eq!(
        s3.put_object_new(&bucket, &key, foreign).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        s3.put_object_new(&bucket, &key, foreign).unwrap(),
        PutOutcome::AlreadyPresent,
        "the same bytes again are recognised, not rewritten"
    );

    let fx = Fixture::new();
    fx.write(8, &no_checkpoint_timer());
    let err = ship_log(&fx.log, &s3_target(&location, 5), ORIGIN, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("`{key}`")) && err.contains(&format!("`{bucket}`")),
        "{err}"
    );
    assert!(
        err.contains("does not hold this log's entries 0..=4"),
        "{err}"
    );
    assert_eq!(s3.get_object(&bucket, &key).unwrap(), foreign, "untouched");

    // The in-process shipper (one entry per batch, so the names are known) meets such an
    // object for entry 0: that batch is refused and counted as dropped, the others arrive.
    let live = S3Location::new(&bucket, "shared-live").unwrap();
    let clash = live.object_key(0, 0);
    s3.put_object_new(&bucket, &clash, foreign).unwrap();
    let fx = Fixture::new();
    let log = fx.open(&AuditConfig {
        ship: vec![s3_target(&live, 1)],
        ..no_checkpoint_timer()
    });
    for i in 0..5 {
        log.append(event(i)).unwrap();
    }
    // Wait (bounded) for the shipper's verdict on every entry, then close.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = log.ship_stats()[0].1.clone();
        if stats.shipped + stats.dropped >= 5 || std::time::Instant::now() > deadline {
            break stats;
        }
        std::thread::yield_now();
    };
    log.close().unwrap();
    assert_eq!((stats.shipped, stats.dropped), (4, 1), "{stats:?}");
    let last = stats.last_error.as_deref().unwrap_or_default();
    assert!(
        last.contains(&format!("`{clash}`")) && last.contains("already holds other entries"),
        "{last}"
    );
    assert_eq!(
        read_counters(&fx.log).unwrap().dropped[&live.to_string()],
        1
    );
    assert_eq!(
        s3.get_object(&bucket, &clash).unwrap(),
        foreign,
        "untouched"
    );
    let keys = s3.list_keys(&bucket, &live.key_prefix(), None).unwrap();
    // Entry objects only: the shipper also writes the signed checkpoint as the witness.
    let entries = keys.iter().filter(|k| !k.contains("/checkpoints/")).count();
    assert_eq!(entries, 5, "{keys:?}");
}

#[test]
#[ignore = "needs an S3 endpoint: cargo xtask moto-up"]
fn errors_name_the_bucket_key_and_s3_code_but_no_secret() {
    let s3 = client();
    let missing = format!("as-missing-{}", std::process::id());
    let location = S3Location::new(&missing, "p").unwrap();
    let fx = Fixture::new();
    fx.write(3, &no_checkpoint_timer());

    let err = ship_log(&fx.log, &s3_target(&location, 10), ORIGIN, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("`s3://{missing}/p`")), "{err}");
    assert!(err.contains("NoSuchBucket"), "{err}");
    assert!(
        !err.contains(&std::env::var("AWS_SECRET_ACCESS_KEY").unwrap()),
        "{err}"
    );

    let err = s3
        .get_object(&fresh_bucket(&s3, "nokey"), "p/none.jsonl")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`p/none.jsonl`") && err.contains("NoSuchKey"),
        "{err}"
    );

    // The cursor did not move: nothing was delivered.
    assert!(!agentsafe_audit::ship::cursor_path(&fx.log, &Destination::S3(location)).exists());
}

/// The shipped entries are the log's own lines, so their leaf hashes are the log's leaves.
#[test]
#[ignore = "needs an S3 endpoint: cargo xtask moto-up"]
fn shipped_lines_hash_to_the_logs_leaves() {
    let s3 = client();
    let bucket = fresh_bucket(&s3, "leaves");
    let location = S3Location::new(&bucket, "x").unwrap();
    let fx = Fixture::new();
    fx.write(12, &no_checkpoint_timer());
    ship_log(&fx.log, &s3_target(&location, 100), ORIGIN, None).unwrap();
    let objs = objects(&s3, &location);
    assert_eq!(objs.len(), 1);
    let leaves: Vec<String> = objs[0]
        .2
        .iter()
        .map(|l| agentsafe_audit::merkle::leaf_hash(l.as_bytes()).to_hex())
        .collect();
    let want: Vec<String> = fx
        .lines()
        .iter()
        .map(|l| agentsafe_audit::merkle::leaf_hash(l.as_bytes()).to_hex())
        .collect();
    assert_eq!(leaves, want);
    // Each entry's `prev` is the leaf hash of the entry before it, as in the log.
    for (i, l) in objs[0].2.iter().enumerate().skip(1) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["prev"], want[i - 1], "entry {i}");
    }
}
