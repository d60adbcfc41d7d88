//! The tier that needs a real OCI registry: the CNCF distribution registry
//! (Debian's `docker-registry`, 2.8) with TLS and htpasswd basic auth on
//! loopback, started by `wasmhook_tests::registry`, and skopeo to check what
//! reached it.
//!
//! Not part of a plain `cargo test` (the target has `test = false`): `make
//! registry-test` runs it, and `make test` does when the binaries are found
//! and says how to enable it when not. Here a missing binary is a failure,
//! never a silent skip.
//!
//! - `harness`: the harness itself — authentication, a registry that stops
//!   and comes back with its content, skopeo reading and pushing;
//! - `oci`: policies pushed, pulled, served, cached, pinned and signed;
//! - `insecure`: `--insecure-registry`, against the same registry in plain
//!   HTTP without auth.

mod harness;
mod insecure;
mod oci;

use wasmhook_tests::registry::TestRegistry;

/// Starts a registry for one test, or fails saying how to get one.
fn start_registry() -> TestRegistry {
    TestRegistry::start().unwrap_or_else(|error| panic!("cannot start the test registry: {error}"))
}

/// `sha256:<hex>`: the OCI digest of `bytes`.
fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}
