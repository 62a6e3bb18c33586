//! Ed25519 keys: generation, PEM files, key ids (RFC 7638 thumbprints), key sets and JWKS.
//!
//! Private keys are PKCS#8 PEM files (`-----BEGIN PRIVATE KEY-----`) created with mode 0600;
//! public keys are SPKI PEM files (`-----BEGIN PUBLIC KEY-----`). Identity, ticket and audit
//! signing each use their own key pair, named `<purpose>.key.pem` / `<purpose>.pub.pem`.
//!
//! **Architecture Invariant:** a [`Signer`] never prints, serializes or reports its secret
//! bytes; its `Debug` shows only the key id. Verifiers hold public keys only ([`KeySet`]).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use ed25519_dalek::pkcs8::{EncodePublicKey as _, KeypairBytes};
use ed25519_dalek::{Signature, SigningKey};
use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256, Sha512};

pub use ed25519_dalek::VerifyingKey;

use crate::error::KeyError;

/// What a key pair is used for; each purpose has its own key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPurpose {
    /// Signing agent identity tokens (and delegated tokens).
    Identity,
    /// Signing execution tickets.
    Ticket,
    /// Signing audit log checkpoints.
    Audit,
}

impl KeyPurpose {
    /// Every purpose, in file-listing order.
    pub const ALL: [KeyPurpose; 3] = [KeyPurpose::Identity, KeyPurpose::Ticket, KeyPurpose::Audit];

    /// The lowercase name, also the key file stem.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Identity => "identity",
            KeyPurpose::Ticket => "ticket",
            KeyPurpose::Audit => "audit",
        }
    }

    /// The private key file in `dir`: `<dir>/<purpose>.key.pem`.
    pub fn private_key_path(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.key.pem", self.as_str()))
    }

    /// The public key file in `dir`: `<dir>/<purpose>.pub.pem`.
    pub fn public_key_path(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.pub.pem", self.as_str()))
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for KeyPurpose {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyPurpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| KeyError::UnknownPurpose(s.to_owned()))
    }
}

/// An ed25519 signing key with its precomputed expanded form and key id.
///
/// # Security
/// The secret never leaves this type except through [`Signer::write_key_files`]; `Debug`
/// prints only the key id. The expanded key is computed once so that each signature costs
/// one SHA-512 over the message and one fixed-base scalar multiplication.
pub struct Signer {
    key: SigningKey,
    expanded: ExpandedSecretKey,
    verifying: VerifyingKey,
    kid: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A fresh random key (32 bytes from the operating system's generator via `rand`).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let signer = Signer::from_seed(&seed);
        wipe(&mut seed);
        signer
    }

    /// The key whose RFC 8032 seed is `seed` (deterministic: for tests and known-answer vectors).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Signer::from_signing_key(SigningKey::from_bytes(seed))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let expanded = ExpandedSecretKey::from(key.as_bytes());
        let verifying = key.verifying_key();
        let kid = key_id(&verifying);
        Signer {
            key,
            expanded,
            verifying,
            kid,
        }
    }

    /// Reads a PKCS#8 PEM private key file.
    ///
    /// # Errors
    /// When the file cannot be read, is readable by group or others (Unix), or is not an
    /// ed25519 PKCS#8 PEM key. The error names the path, never the contents.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        check_private_permissions(path)?;
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let parsed = SigningKey::from_pkcs8_pem(&text);
        wipe_string(text);
        parsed
            .map(Signer::from_signing_key)
            .map_err(|_| KeyError::InvalidPem {
                path: path.to_owned(),
                kind: "PKCS#8 private",
            })
    }

    /// The RFC 7638 JWK thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying
    }

    /// Signs `message` (RFC 8032 Ed25519, deterministic). Crate-private: outside code can
    /// only have this key sign tokens of the type its issuer writes.
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        raw_sign::<Sha512>(&self.expanded, message, &self.verifying)
    }

    /// Writes the key pair: `private` as PKCS#8 PEM with mode 0600 and `public` as SPKI PEM.
    ///
    /// Each file is written to a temporary file in the same folder (the private one created
    /// with mode 0600 from the start) and then moved into place, so a reader never sees a
    /// partial file and the secret is never readable by others, even for an instant.
    ///
    /// # Errors
    /// When a file exists and `force` is false ([`KeyError::Exists`]), or on I/O failure.
    pub fn write_key_files(
        &self,
        private: &Path,
        public: &Path,
        force: bool,
    ) -> Result<(), KeyError> {
        if !force {
            for path in [private, public] {
                if path.exists() {
                    return Err(KeyError::Exists(path.to_owned()));
                }
            }
        }
        // PKCS#8 v1 (no embedded public key) is what OpenSSL, Python `cryptography` and Go
        // all read without surprises.
        let bytes = KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        let pem = bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::Encode("private"))?;
        write_atomically(private, pem.as_bytes(), 0o600, force)?;
        let public_pem = self
            .verifying
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| KeyError::Encode("public"))?;
        write_atomically(public, public_pem.as_bytes(), 0o644, force)
    }
}

/// Reads an SPKI PEM public key file.
///
/// # Errors
/// When the file cannot be read or is not an ed25519 SPKI PEM key.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    VerifyingKey::from_public_key_pem(&text).map_err(|_| KeyError::InvalidPem {
        path: path.to_owned(),
        kind: "SPKI public",
    })
}

/// The key id of `key`: the RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of
/// its OKP JWK `{"crv":"Ed25519","kty":"OKP","x":"..."}`.
pub fn key_id(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    // RFC 7638 §3.2: only the required members, in lexicographic order, no white space.
    let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()))
}

/// One public key as a JWK (RFC 8037 OKP), with `kid`, `alg` and `use`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: &'static str,
    /// Always `Ed25519`.
    pub crv: &'static str,
    /// The public key, base64url without padding.
    pub x: String,
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

impl Jwk {
    /// The JWK of `key`.
    pub fn new(key: &VerifyingKey) -> Self {
        Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
            kid: key_id(key),
            alg: "EdDSA",
            use_: "sig",
        }
    }
}

/// Trusted public keys, looked up by key id. Several keys can be active at once, so keys
/// rotate by adding the new key before signing with it and removing the old one after the
/// last token it signed expired.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<String, VerifyingKey>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        KeySet::default()
    }

    /// A set holding `keys`.
    ///
    /// # Errors
    /// [`KeyError::WeakKey`] when a key has small order.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Result<Self, KeyError> {
        let mut set = KeySet::new();
        for key in keys {
            set.insert(key)?;
        }
        Ok(set)
    }

    /// Reads every SPKI PEM file in `paths`.
    ///
    /// # Errors
    /// When a file cannot be read or parsed, or when `paths` is empty.
    pub fn load(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut set = KeySet::new();
        for path in paths {
            set.insert(load_public_key(path)?)?;
        }
        if set.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(set)
    }

    /// Adds `key` and returns its key id.
    ///
    /// # Errors
    /// [`KeyError::WeakKey`] when the key has small order: any signature would verify under
    /// it. Refusing such keys here is what lets verification use the RFC 8032 check rather
    /// than the slower "strict" one.
    pub fn insert(&mut self, key: VerifyingKey) -> Result<String, KeyError> {
        let kid = key_id(&key);
        if key.is_weak() {
            return Err(KeyError::WeakKey(kid));
        }
        self.keys.insert(kid.clone(), key);
        Ok(kid)
    }

    /// The key with id `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The set as a JWKS document (`{"keys":[...]}`), ordered by key id.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<Jwk> = self.keys.values().map(Jwk::new).collect();
        serde_json::json!({ "keys": keys })
    }
}

/// A key pair written by [`generate_key_files`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeneratedKey {
    /// What it is for.
    pub purpose: KeyPurpose,
    /// Its key id.
    pub kid: String,
    /// The private key file (mode 0600).
    pub private_key: PathBuf,
    /// The public key file.
    pub public_key: PathBuf,
}

/// Generates one fresh key pair per purpose in `dir` (created with mode 0700 when missing).
///
/// # Errors
/// When any of the files exists and `force` is false (checked for all purposes before
/// anything is written), or on I/O failure.
pub fn generate_key_files(
    dir: &Path,
    purposes: &[KeyPurpose],
    force: bool,
) -> Result<Vec<GeneratedKey>, KeyError> {
    if !force {
        for purpose in purposes {
            for path in [purpose.private_key_path(dir), purpose.public_key_path(dir)] {
                if path.exists() {
                    return Err(KeyError::Exists(path));
                }
            }
        }
    }
    create_private_dir(dir)?;
    let mut out = Vec::with_capacity(purposes.len());
    for &purpose in purposes {
        let signer = Signer::generate();
        let private_key = purpose.private_key_path(dir);
        let public_key = purpose.public_key_path(dir);
        signer.write_key_files(&private_key, &public_key, force)?;
        out.push(GeneratedKey {
            purpose,
            kid: signer.kid().to_owned(),
            private_key,
            public_key,
        });
    }
    Ok(out)
}

/// The public keys (`*.pub.pem`) found in `dir`, sorted by file name.
///
/// # Errors
/// When the folder or a key file cannot be read.
pub fn public_keys_in(dir: &Path) -> Result<Vec<(PathBuf, VerifyingKey)>, KeyError> {
    let io = |source| KeyError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".pub.pem"))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| load_public_key(&p).map(|k| (p, k)))
        .collect()
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| KeyError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to a fresh temporary file beside `path` created with `mode`, then moves it
/// into place: with `replace`, by rename; without, by hard link, which fails if `path`
/// appeared in the meantime (no check-then-write race).
fn write_atomically(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(mode);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        #[cfg(unix)]
        {
            // The umask can only have removed bits; set them exactly anyway.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io)?;
        }
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        if replace {
            fs::rename(&tmp, path).map_err(io)
        } else {
            match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(KeyError::Exists(path.to_owned()))
                }
                Err(e) => Err(io(e)),
            }
        }
    })();
    // After a rename the temporary name is gone already; after a link (or a failure) it
    // must be removed.
    let _ = fs::remove_file(&tmp);
    #[cfg(not(unix))]
    let _ = mode;
    result?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn check_private_permissions(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_permissions(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(bytes);
}

fn wipe_string(text: String) {
    let mut bytes = text.into_bytes();
    wipe(&mut bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_rfc7638_thumbprint() {
        // RFC 8037 appendix A.1/A.3: the example Ed25519 key and its JWK thumbprint.
        let seed: [u8; 32] =
            hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let signer = Signer::from_seed(&seed);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(signer.verifying_key().as_bytes()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(signer.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let seed = [7u8; 32];
        let signer = Signer::from_seed(&seed);
        let debug = format!("{signer:?}");
        assert!(debug.contains(signer.kid()));
        assert!(!debug.contains("7, 7"));
        assert!(!debug.contains("0707"));
    }

    #[test]
    fn key_files_are_private_and_not_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let made = generate_key_files(&keys, &KeyPurpose::ALL, false).unwrap();
        assert_eq!(made.len(), 3);
        for k in &made {
            let mode = fs::metadata(&k.private_key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", k.private_key.display());
            let text = fs::read_to_string(&k.private_key).unwrap();
            assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
            let public = fs::read_to_string(&k.public_key).unwrap();
            assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
            let signer = Signer::load(&k.private_key).unwrap();
            assert_eq!(signer.kid(), k.kid);
            assert_eq!(key_id(&load_public_key(&k.public_key).unwrap()), k.kid);
        }
        let dir_mode = fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        // No leftover temporary files.
        assert_eq!(fs::read_dir(&keys).unwrap().count(), 6);

        let before = fs::read(KeyPurpose::Ticket.private_key_path(&keys)).unwrap();
        let err = generate_key_files(&keys, &[KeyPurpose::Ticket], false).unwrap_err();
        assert!(matches!(err, KeyError::Exists(_)), "{err}");
        assert_eq!(
            fs::read(KeyPurpose::Ticket.private_key_path(&keys)).unwrap(),
            before
        );

        let again = generate_key_files(&keys, &[KeyPurpose::Ticket], true).unwrap();
        assert_ne!(again[0].kid, made[1].kid);
        let mode = fs::metadata(&again[0].private_key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn world_readable_private_key_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let made = generate_key_files(dir.path(), &[KeyPurpose::Identity], false).unwrap();
        let path = &made[0].private_key;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Signer::load(path).unwrap_err();
        assert!(matches!(err, KeyError::InsecurePermissions { .. }), "{err}");
        assert!(err.to_string().contains("identity.key.pem"));
    }

    #[test]
    fn keyset_and_jwks() {
        let a = Signer::from_seed(&[1; 32]);
        let b = Signer::from_seed(&[2; 32]);
        let set = KeySet::from_keys([a.verifying_key(), b.verifying_key()]).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.get(a.kid()).is_some());
        assert!(set.get("nope").is_none());
        let jwks = set.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for k in keys {
            assert_eq!(k["kty"], "OKP");
            assert_eq!(k["crv"], "Ed25519");
            assert_eq!(k["alg"], "EdDSA");
            assert!(k["kid"] == a.kid() || k["kid"] == b.kid());
        }
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (y = 1) has small order: every signature would verify.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        let err = KeySet::new().insert(weak).unwrap_err();
        assert!(matches!(err, KeyError::WeakKey(_)), "{err}");
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
