//! One module per subcommand group.

pub mod decide;
pub mod demo;
pub mod project;

// helpers: add `pub mod NAME;` lines below this line
pub mod audit;
pub mod keys;
pub mod ticket;
pub mod token;
