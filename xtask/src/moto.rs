//! moto, the AWS emulator the AWS executor's tests run against (being written).

/// Starts moto; returns the path of the env file.
pub fn up() -> anyhow::Result<std::path::PathBuf> {
    anyhow::bail!("moto-up is being written")
}

/// Stops moto.
pub fn down() -> anyhow::Result<()> {
    anyhow::bail!("moto-down is being written")
}
