//! The `agentsafe` binary: the command line with the executors this build has.

fn main() -> std::process::ExitCode {
    agentsafe_cli::main()
}
