//! End to end: decisions made by the real `agentsafe` binary reach an S3 bucket (moto in
//! development and CI: `cargo xtask moto-up`), through `agentsafe audit ship --to s3://...`
//! (resumable) and through an `[[audit.ship]]` target while `check` runs; the objects read back
//! hold every entry exactly once and reassemble into a log that `agentsafe audit verify`
//! accepts. A missing credential is a clear, fail-closed error.
//!
//! This crate has no S3 client (and no dependency that could sign a request), so the test
//! creates its bucket and reads the objects with plain HTTP carrying an `Authorization` header
//! with a placeholder signature: moto, which does not check signatures unless asked to, treats
//! that as an authenticated request (an anonymous GET would meet the private bucket's ACL). The
//! binary under test signs every request it sends for real (the signer is proven against AWS's
//! published vectors, and was run against a signature-checking moto, in `crates/audit`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentsafe_e2e::{Run, agentsafe_bin, run_in};

const HINT: &str = "needs an S3 endpoint: cargo xtask moto-up";

/// `host:port` of `AWS_ENDPOINT_URL`, after checking every setting the binary needs is there.
fn endpoint() -> String {
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
    let url = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let authority = url.strip_prefix("http://").unwrap_or_else(|| {
        panic!("this test talks plain HTTP to moto; AWS_ENDPOINT_URL is `{url}`")
    });
    authority.trim_end_matches('/').to_owned()
}

/// One unsigned HTTP/1.1 request to the endpoint: `(status, body)`.
fn http(method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let host = endpoint();
    let mut stream = TcpStream::connect(&host).unwrap_or_else(|e| panic!("{HINT}: {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let key_id = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
    let region = std::env::var("AWS_DEFAULT_REGION").unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={key_id}/20240101/{region}/s3/aws4_request, SignedHeaders=host, Signature=placeholder\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut payload = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    (status, payload)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

fn fresh_bucket(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let bucket = format!("as-e2e-{name}-{}-{nanos}", std::process::id());
    let (status, body) = http("PUT", &format!("/{bucket}"), b"");
    assert_eq!(
        status,
        200,
        "create bucket: {}",
        String::from_utf8_lossy(&body)
    );
    bucket
}

/// The keys under `prefix/`, in order (one listing page is plenty here).
fn keys(bucket: &str, prefix: &str) -> Vec<String> {
    let (status, body) = http(
        "GET",
        &format!("/{bucket}?list-type=2&prefix={prefix}%2F"),
        b"",
    );
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("<IsTruncated>true"), "{text}");
    // Checkpoint objects (`<prefix>/checkpoints/...`) are the shipped witness, not entries.
    let checkpoints = format!("{prefix}/checkpoints/");
    text.split("<Key>")
        .skip(1)
        .map(|s| s.split("</Key>").next().unwrap().to_owned())
        .filter(|k| !k.starts_with(&checkpoints))
        .collect()
}

/// Every entry line of every object under `prefix/`, in key order, checking each object's name
/// against the seqs it holds.
fn shipped_lines(bucket: &str, prefix: &str) -> (usize, Vec<String>) {
    let keys = keys(bucket, prefix);
    let mut lines = Vec::new();
    for key in &keys {
        let (status, body) = http("GET", &format!("/{bucket}/{key}"), b"");
        assert_eq!(status, 200, "{key}");
        let text = String::from_utf8(body).unwrap();
        let name = key.strip_prefix(&format!("{prefix}/")).unwrap();
        let (first, last) = name
            .strip_suffix(".jsonl")
            .unwrap()
            .split_once('-')
            .unwrap();
        let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
        let held: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(held, (first..=last).collect::<Vec<_>>(), "{key}");
        lines.extend(text.lines().map(str::to_owned));
    }
    (keys.len(), lines)
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &["init", "."]);
    assert_eq!(r.code, 0, "{r:?}");
    dir
}

fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join(".agentsafe-test-state").join("audit.jsonl")
}

fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(log_path(dir))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn check(dir: &Path, role: &str) -> Run {
    run_in(
        dir,
        &[
            "check",
            "scale-deployment",
            "--target",
            "staging/api-server",
            "--params",
            r#"{"replicas":3}"#,
            "--caller",
            "agent-1",
            "--role",
            role,
            "--output",
            "json",
        ],
    )
}

/// The shipped lines, written as a log beside the original's checkpoints, verify.
fn assert_verifies(dir: &Path, lines: &[String]) {
    let copy = dir.join("from-s3.jsonl");
    std::fs::write(&copy, format!("{}\n", lines.join("\n"))).unwrap();
    let mut cps = log_path(dir).into_os_string();
    cps.push(".checkpoints");
    std::fs::copy(&cps, dir.join("from-s3.jsonl.checkpoints")).unwrap();
    let v = run_in(
        dir,
        &[
            "audit",
            "verify",
            copy.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    assert_eq!(v.code, 0, "{v:?}");
}

#[test]
#[ignore = "needs an S3 endpoint: cargo xtask moto-up"]
fn audit_ship_puts_every_decision_in_the_bucket_once() {
    let bucket = fresh_bucket("ship");
    let p = project();
    for role in ["developer", "nobody", "sre"] {
        let r = check(p.path(), role);
        assert!(r.code == 0 || r.code == 3, "{r:?}");
    }
    let dest = format!("s3://{bucket}/e2e");
    let ship = |extra: &[&str]| {
        let mut args = vec!["audit", "ship", "--to", dest.as_str(), "--output", "json"];
        args.extend_from_slice(extra);
        let r = run_in(p.path(), &args);
        assert_eq!(r.code, 0, "{r:?}");
        r.json()
    };
    let first = ship(&["--batch-size", "2"]);
    let n = log_lines(p.path()).len() as u64;
    assert_eq!(first["from_seq"], 0);
    assert_eq!(first["shipped"], n);
    assert_eq!(first["next_seq"], n);
    let (objects, lines) = shipped_lines(&bucket, "e2e");
    assert_eq!(objects as u64, n.div_ceil(2), "one object per batch of 2");
    assert_eq!(lines, log_lines(p.path()));

    // More decisions, then a resumed run: only the new entries, in new objects.
    for role in ["developer", "sre"] {
        let _ = check(p.path(), role);
    }
    let second = ship(&[]);
    let total = log_lines(p.path()).len() as u64;
    assert_eq!(second["from_seq"], n);
    assert_eq!(second["shipped"], total - n);
    assert_eq!(second["skipped"], 0);
    let (_, lines) = shipped_lines(&bucket, "e2e");
    assert_eq!(lines, log_lines(p.path()), "every entry exactly once");

    let third = ship(&[]);
    assert_eq!(third["shipped"], 0, "{third}");
    // A lost cursor: the bucket is listed, nothing is sent again.
    let cursor_dir = p.path().join(".agentsafe-test-state");
    for e in std::fs::read_dir(&cursor_dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "cursor") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let again = ship(&[]);
    assert_eq!(
        (again["shipped"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(total))
    );
    let (_, lines) = shipped_lines(&bucket, "e2e");
    assert_eq!(lines.len() as u64, total);

    // `audit verify` accepts the log reassembled from the bucket (the final checkpoint of the
    // last `check` covers every entry).
    assert_verifies(p.path(), &lines);
}

#[test]
#[ignore = "needs an S3 endpoint: cargo xtask moto-up"]
fn a_configured_s3_target_ships_while_check_runs() {
    let bucket = fresh_bucket("live");
    let p = project();
    let config = p.path().join("agentsafe.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let target = format!(
        "[[audit.ship]]\nto = \"s3://{bucket}/live\"\nendpoint = \"{}\"\nbatch_size = 50\n",
        std::env::var("AWS_ENDPOINT_URL").unwrap()
    );
    assert!(text.contains("sync = \"group\"\n"));
    std::fs::write(
        &config,
        text.replacen(
            "sync = \"group\"\n",
            &format!("sync = \"group\"\n\n{target}\n"),
            1,
        ),
    )
    .unwrap();
    for role in ["developer", "nobody", "sre"] {
        let r = check(p.path(), role);
        assert!(r.code == 0 || r.code == 3, "{r:?}");
    }
    let (_, lines) = shipped_lines(&bucket, "live");
    assert_eq!(
        lines,
        log_lines(p.path()),
        "every entry shipped once, in order"
    );
    assert_verifies(p.path(), &lines);

    let stats = run_in(p.path(), &["audit", "stats"]);
    assert!(
        stats.stdout.contains(&format!(
            "s3://{bucket}/live: {} shipped, 0 dropped",
            lines.len()
        )),
        "{stats:?}"
    );

    // Without credentials the log cannot start shipping: the decision fails closed, and the
    // message says what is missing.
    let out = Command::new(agentsafe_bin())
        .args([
            "check",
            "scale-deployment",
            "--target",
            "staging/api-server",
            "--params",
            r#"{"replicas":3}"#,
            "--caller",
            "agent-1",
            "--role",
            "developer",
            "--output",
            "json",
        ])
        .current_dir(p.path())
        .env_remove("AGENTSAFE_CONFIG")
        .env_remove("AGENTSAFE_TOKEN")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env(
            "AGENTSAFE_STATE_DIR",
            p.path().join(".agentsafe-test-state"),
        )
        .env("AGENTSAFE_KEY_DIR", p.path().join(".agentsafe-test-keys"))
        .output()
        .unwrap();
    let r = Run::from(out);
    assert_eq!(r.code, 3, "{r:?}");
    let d = r.json();
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(d["reason_code"], "audit_unavailable", "{d}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("AWS_SECRET_ACCESS_KEY not set"), "{all}");
}
