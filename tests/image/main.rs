//! The tier that needs the server image (`make image`, deploy/Containerfile) and podman:
//!
//! - `run`: the image run exactly as deploy/base's Deployment runs the container (flags
//!   derived from the rendered Deployment), against a real kube-apiserver — ready, a review
//!   over TLS, a rotated certificate, SIGTERM, nothing written outside its volumes;
//! - `push`: `make image-push REGISTRY=…` to a real OCI registry on loopback (CNCF
//!   distribution with TLS and basic auth, `wasmhook_tests::registry`), read back with
//!   skopeo.
//!
//! Not part of a plain `cargo test` (`test = false`): `make image-test` builds the image
//! and runs this tier; `make test` does when podman, buildah, musl-gcc and the musl target,
//! the kube tier's binaries and the registry tier's are found, and says how to enable it
//! when not. Here a missing binary is a failure, never a silent skip.

mod push;
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs podman (no machine flags: commands that start no container need none).
fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().expect("podman runs")
}

/// The repository's root (where the Makefile is).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_owned()
}
