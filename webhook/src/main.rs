//! The `wasmhook` binary: everything lives in the library (`wasmhook::cli`).

/// mimalloc: a review allocates and frees many small JSON values on every
/// worker thread; glibc's malloc spent ~9 % of the server's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wasmhook::cli::main()
}
