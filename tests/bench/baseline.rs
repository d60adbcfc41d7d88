//! `wasmhook-baseline`: the measuring stick of `make bench`.
//!
//! It is `wasmhook serve` — same arguments, TLS, HTTP, routing, review
//! parsing, response encoding, metrics and logging — except that every review
//! is allowed without running a policy. The load benchmark drives it and
//! `wasmhook` with the same load in the same run, so the ratio between the
//! two is what the Wasm policies cost. It is built only here, never shipped.

/// The allocator `wasmhook` uses, so the two differ only in the policies.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wasmhook::cli::baseline_main()
}
