//! File plumbing the agentsafe stores share: SQLite database files created private
//! (0600, folders 0700) and tightened when found readable by others. A crate of its own
//! because the state store and the ticket store both need it and neither depends on the
//! other, while `agentsafe-core` does no I/O.

mod private;

pub use private::prepare as prepare_private_database;
