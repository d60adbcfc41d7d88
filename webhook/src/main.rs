//! The `wasmhook` binary: everything lives in the library (`wasmhook::cli`).

fn main() -> std::process::ExitCode {
    wasmhook::cli::main()
}
