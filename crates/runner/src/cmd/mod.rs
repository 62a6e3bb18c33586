//! One module per subcommand group.

pub mod decide;
pub mod demo;
pub mod project;
pub mod rollback;
pub mod run;

// helpers: add `pub mod NAME;` lines below this line
pub mod approval;
pub mod audit;
pub mod caller;
pub mod keys;
pub mod ticket;
pub mod token;
