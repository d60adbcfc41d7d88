//! The `wasmhook` command: parses the command line and runs it.

fn main() -> std::process::ExitCode {
    wasmhook::cli::main()
}
