//! The whole `agentsafe` command line with `--executor replica-book` added.

use std::sync::Arc;

use agentsafe_example_custom_executor::ReplicaBook;
use agentsafe_runner::Executors;

fn main() -> std::process::ExitCode {
    agentsafe_cli::main_with(Executors::built_in().with(
        "replica-book",
        Arc::new(|_env: &agentsafe_runner::ExecutorEnv<'_>| {
            let book = ReplicaBook::default();
            book.set("staging/api-server", 2);
            Ok(Arc::new(book) as _)
        }),
    ))
}
