//! Dev automation: `cargo xtask ci`, `cargo xtask bench` and friends.

fn main() -> anyhow::Result<()> {
    Ok(())
}
