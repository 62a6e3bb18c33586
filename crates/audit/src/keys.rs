//! Loading and writing the audit key pair (PKCS#8 / SPKI PEM) and the signed-note key id.
//!
//! # Security
//! The signing key is never printed: [`SigningKeySource`] redacts it in `Debug`, and load errors
//! name the file, never its content.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::AuditError;

/// File name of the audit signing key inside the key folder.
pub const SIGNING_KEY_FILE: &str = "audit.key.pem";
/// File name of the audit public key inside the key folder.
pub const PUBLIC_KEY_FILE: &str = "audit.pub.pem";

/// Where the log's signing key comes from.
pub enum SigningKeySource {
    /// A PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`).
    Path(PathBuf),
    /// A key already in memory (tests, or a caller that loaded it itself).
    Key(SigningKey),
}

impl fmt::Debug for SigningKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKeySource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            SigningKeySource::Key(_) => f.write_str("Key(<redacted>)"),
        }
    }
}

impl From<SigningKey> for SigningKeySource {
    fn from(key: SigningKey) -> Self {
        SigningKeySource::Key(key)
    }
}

impl From<PathBuf> for SigningKeySource {
    fn from(path: PathBuf) -> Self {
        SigningKeySource::Path(path)
    }
}

impl From<&Path> for SigningKeySource {
    fn from(path: &Path) -> Self {
        SigningKeySource::Path(path.to_path_buf())
    }
}

/// Reads an Ed25519 signing key from a PKCS#8 PEM file.
///
/// # Errors
/// When the file is missing, unreadable or not an Ed25519 PKCS#8 PEM key; the error names the path.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, AuditError> {
    let err = |reason: String| AuditError::SigningKey {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    SigningKey::from_pkcs8_pem(&text).map_err(|_| {
        err("not an Ed25519 PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`)".into())
    })
}

/// Reads an Ed25519 public key from an SPKI PEM file.
///
/// # Errors
/// When the file is missing, unreadable or not an Ed25519 SPKI PEM key; the error names the path.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let err = |reason: String| AuditError::PublicKey {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    VerifyingKey::from_public_key_pem(&text).map_err(|_| {
        err("not an Ed25519 SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`)".into())
    })
}

/// A fresh random signing key (from a 32-byte seed drawn from the operating system's generator).
pub fn generate_signing_key() -> SigningKey {
    use rand::RngCore as _;
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    key
}

/// Writes `key` as PKCS#8 PEM to a new file created with mode 0600.
///
/// # Errors
/// When the file exists already or cannot be written.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), AuditError> {
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| AuditError::Encode("cannot encode the signing key as PKCS#8".into()))?;
    write_new_file(path, pem.as_bytes(), 0o600)
}

/// Writes `key` as SPKI PEM to a new file.
///
/// # Errors
/// When the file exists already or cannot be written.
pub fn write_verifying_key(path: &Path, key: &VerifyingKey) -> Result<(), AuditError> {
    let pem = key
        .to_public_key_pem(LineEnding::LF)
        .map_err(|_| AuditError::Encode("cannot encode the public key as SPKI".into()))?;
    write_new_file(path, pem.as_bytes(), 0o644)
}

fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuditError> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .map_err(|e| AuditError::io("create key file", path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| AuditError::io("write key file", path, e))
}

/// The signed-note key id: the first four bytes of
/// `SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, 0x01]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut id = [0u8; 4];
    for (o, b) in id.iter_mut().zip(d.iter()) {
        *o = *b;
    }
    id
}

/// Refuses a signing key file that lives anywhere under the log's folder (the folder itself or
/// any subfolder), comparing real paths: symlinks in either path, and a key file that is itself a
/// symlink, are resolved first. Whoever can write the log's folder could otherwise replace or read
/// the key and re-sign an edited log.
pub(crate) fn check_not_beside(key: &Path, log: &Path) -> Result<(), AuditError> {
    let log_dir = log
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (resolve(key), resolve(log_dir)) {
        (Some(k), Some(d)) if k.starts_with(&d) => Err(AuditError::KeyBesideLog {
            key: key.to_path_buf(),
            log: log.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// The real path of `p`; for a path that does not exist (yet), the real path of its nearest
/// existing ancestor joined with the rest.
fn resolve(p: &Path) -> Option<PathBuf> {
    if let Ok(real) = std::fs::canonicalize(p) {
        return Some(real);
    }
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = p.file_name()?;
    if parent == p {
        return None;
    }
    resolve(parent).map(|d| d.join(name))
}
