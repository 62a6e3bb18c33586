//! One module per subcommand group.
// helpers: add `pub mod NAME;` lines below this line
