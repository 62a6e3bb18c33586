//! Interoperability with a standard implementation: OpenSSL reads the key files this crate
//! writes and verifies the EdDSA signatures of its identity tokens and tickets.
//!
//! Needs the `openssl` command (OpenSSL 3). Without it the test says so loudly and, in CI
//! (`CI` set), fails.

use std::path::Path;
use std::process::Command;

use agentsafe_tickets::bench::sample_decision;
use agentsafe_tickets::danger::TicketIssuer;
use agentsafe_tickets::keys::{self, KeyPurpose};
use agentsafe_tickets::{
    HumanDuration, IdentityConfig, IdentityIssuer, IdentityRequest, Signer, TicketConfig,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[cfg(test)]
fn openssl_available() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "!!! SKIPPED: the `openssl` command is missing; OpenSSL interoperability NOT checked"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "`openssl` is required in CI"
        );
    }
    found
}

#[cfg(test)]
fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[cfg(test)]
/// Has OpenSSL verify `token`'s signature with `public_pem`, as any JWS library would.
fn openssl_verifies(token: &str, public_pem: &Path, dir: &Path) {
    let (input, signature) = token.rsplit_once('.').unwrap();
    std::fs::write(dir.join("input"), input).unwrap();
    std::fs::write(dir.join("sig"), URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    let out = openssl(
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            public_pem.to_str().unwrap(),
            "-rawin",
            "-in",
            "input",
            "-sigfile",
            "sig",
        ],
        dir,
    );
    assert!(out.contains("Signature Verified Successfully"), "{out}");
}

#[test]
fn openssl_reads_keys_and_verifies_tokens() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let made = keys::generate_key_files(dir.path(), &KeyPurpose::ALL, false).unwrap();
    for key in &made {
        // OpenSSL derives the same SPKI public key from our PKCS#8 private key.
        let derived = openssl(
            &["pkey", "-in", key.private_key.to_str().unwrap(), "-pubout"],
            dir.path(),
        );
        assert_eq!(derived, std::fs::read_to_string(&key.public_key).unwrap());
    }

    let now = jiff::Timestamp::now();
    let identity_key = KeyPurpose::Identity.private_key_path(dir.path());
    let identity = IdentityIssuer::new(
        Signer::load(&identity_key).unwrap(),
        &IdentityConfig::default(),
    )
    .unwrap()
    .issue(
        &IdentityRequest {
            agent: "deploy-bot".into(),
            roles: vec!["operator".into()],
            groups: vec![],
        },
        HumanDuration::from_secs(60),
        now,
    )
    .unwrap();
    openssl_verifies(
        &identity.token,
        &KeyPurpose::Identity.public_key_path(dir.path()),
        dir.path(),
    );

    let ticket_key = KeyPurpose::Ticket.private_key_path(dir.path());
    let ticket = TicketIssuer::new(Signer::load(&ticket_key).unwrap(), &TicketConfig::default())
        .unwrap()
        .issue(&sample_decision(1), now)
        .unwrap();
    openssl_verifies(
        ticket.token(),
        &KeyPurpose::Ticket.public_key_path(dir.path()),
        dir.path(),
    );
}
