//! Measures the audit log on this machine: group-commit appends with concurrent callers (real
//! fdatasync), verification speed, and a short-lived process's open + append + close on a big log.
//!
//! `cargo run --release -p agentsafe-audit --example audit_bench [-- ENTRIES_FOR_OPEN_TEST]`;
//! `-- group` runs only the group-commit rows, `-- cpu` appends without fdatasync (CPU cost only).

#![allow(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::process::ExitCode;

use agentsafe_audit::bench;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("cpu") {
        for threads in [1usize, 4, 64] {
            let dir = tempfile::tempdir()?;
            let rate = bench::appends_per_sec_with(
                dir.path(),
                threads,
                50_000,
                agentsafe_audit::SyncPolicy::None,
            )?;
            println!("no fdatasync, {threads:>3} callers: {rate:>9.0} appends/s");
        }
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("group") {
        for threads in [16usize, 64, 128] {
            let dir = tempfile::tempdir()?;
            let rate = bench::appends_per_sec(dir.path(), threads, threads * 40)?;
            println!("group commit, {threads:>3} callers: {rate:>9.0} appends/s");
        }
        return Ok(());
    }
    let big: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    for threads in [1usize, 16, 64, 128, 256] {
        let dir = tempfile::tempdir()?;
        let n = (threads * 40).max(500);
        let rate = bench::appends_per_sec(dir.path(), threads, n)?;
        println!("group commit, {threads:>3} callers, {n:>6} appends: {rate:>9.0} appends/s");
    }
    let dir = tempfile::tempdir()?;
    let rate = bench::verify_entries_per_sec(dir.path(), 200_000)?;
    println!("verify, 200000 entries: {rate:>9.0} entries/s");
    let dir = tempfile::tempdir()?;
    let micros = bench::open_append_close_micros(dir.path(), big)?;
    println!("open + append + close on a {big}-entry log: {micros:.0} us");
    Ok(())
}
