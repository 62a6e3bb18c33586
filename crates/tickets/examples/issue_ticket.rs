//! Issues a ticket for a sample ALLOW decision, for trying `agentsafe ticket ...` by hand.
//!
//! `issue_ticket TICKET_KEY_PEM [DATABASE [--crash]]`: prints the ticket; with a database,
//! records it as issued; with `--crash`, also begins its redemption and "crashes" (drops the
//! guard), leaving it PENDING for `agentsafe ticket reconcile`.

use std::io::Write as _;
use std::path::PathBuf;

use agentsafe_tickets::danger::TicketIssuer;
use agentsafe_tickets::{
    KeySet, Redemption, Signer, SqliteTicketStore, TicketConfig, TicketStore, TicketVerifier,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let key = PathBuf::from(
        args.next()
            .ok_or("usage: issue_ticket KEY [DB [--crash]]")?,
    );
    let db = args.next().map(PathBuf::from);
    let crash = args.next().is_some_and(|a| a == "--crash");
    let signer = Signer::load(&key)?;
    let keys = KeySet::from_keys([signer.verifying_key()])?;
    let config = TicketConfig::default();
    let issuer = TicketIssuer::new(signer, &config)?;
    let now = jiff::Timestamp::now();
    let ticket = issuer.issue(&agentsafe_tickets::bench::sample_decision(1), now)?;
    if let Some(db) = db {
        let store = SqliteTicketStore::open(&db)?;
        store.record_issued(&ticket)?;
        if crash {
            let verified = TicketVerifier::new(keys, &config).verify(ticket.token(), now)?;
            if let Redemption::Execute(guard) = store.begin(&verified)? {
                drop(guard);
            }
        }
    }
    writeln!(std::io::stdout().lock(), "{}", ticket.token())?;
    Ok(())
}
