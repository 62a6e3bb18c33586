//! Prints ticket issuance, verification and durable redemption throughput; run with `--release`.

use std::io::Write as _;

fn main() -> Result<(), agentsafe_tickets::bench::BenchError> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let results = agentsafe_tickets::bench::run_all(&dir)?;
    let mut out = std::io::stdout().lock();
    for r in results {
        writeln!(out, "{r}")?;
    }
    Ok(())
}
