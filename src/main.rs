//! The `pointsledger` command: see `pointsledger --help`.

fn main() -> std::process::ExitCode {
    pointsledger::cli::main()
}
