//! Embeds the shipped example (actions, policies, policy tests, inventory) into the binary
//! for `agentsafe init` and `agentsafe demo`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !root.join("actions").is_dir() || !root.join("inventory.toml").is_file() {
        // A package built outside the workspace would embed nothing: refuse instead.
        println!(
            "cargo::error=the shipped example is not at `{}`: agentsafe-cli builds inside the agentsafe workspace",
            root.display()
        );
        return;
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for dir in ["actions", "policies", "policies/tests"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let name = format!(
                    "{dir}/{}",
                    path.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                );
                println!("cargo:rerun-if-changed={}", path.display());
                files.push((name, path));
            }
        }
    }
    for file in ["inventory.toml", "agentsafe.toml"] {
        let path = root.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_file() {
            let name = Path::new(file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, path));
        }
    }
    files.sort();
    let mut out = String::from(
        "/// The shipped example: (relative path, contents).\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &files {
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
    }
}
