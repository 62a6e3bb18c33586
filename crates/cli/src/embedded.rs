//! The shipped example configuration, embedded at build time: what `init` writes and `demo` runs on.

use std::path::Path;

use anyhow::Context as _;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Writes the example into `dir`; refuses to overwrite anything unless `force`.
///
/// # Errors
/// When a file exists (without `force`) or cannot be written.
pub fn write_to(dir: &Path, force: bool) -> anyhow::Result<Vec<String>> {
    if !force {
        for (name, _) in FILES {
            let path = dir.join(name);
            if path.exists() {
                anyhow::bail!(
                    "`{}` already exists; choose an empty folder or pass --force to overwrite",
                    path.display()
                );
            }
        }
    }
    let mut written = Vec::new();
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        written.push((*name).to_owned());
    }
    Ok(written)
}
