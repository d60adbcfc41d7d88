//! The tier that needs a real Kubernetes API server: kube-apiserver v1.28 —
//! the oldest version wasmhook supports — and etcd on loopback, started by
//! `wasmhook_tests::kube` from the binaries this machine has.
//!
//! Not part of a plain `cargo test` (the target has `test = false`): `make
//! e2e` runs it, and `make test` does when the binaries are found and says
//! how to enable it when not. Here a missing binary is a failure, never a
//! silent skip.
//!
//! - `deploy`: `deploy/` applied as an operator applies it — strict field
//!   validation by the 1.28 API server, server-side dry runs of every
//!   rendering, and installs that fail halfway or never become ready
//!   blocking no write; the PolicyReport CRDs checking reports and never
//!   applied over another tool's, and the audit overlay's account allowed
//!   exactly what `wasmhook audit --report` needs;
//! - `registration`: `serve --register` with exactly deploy/base's RBAC,
//!   through a real service-account token;
//! - `context`: the context watches — syncing before readiness, following
//!   changes, surviving an API server restart, reporting a refused watch;
//! - `backstop`: `wasmhook manifests --backstop` evaluated by the API server
//!   itself — agreeing with the validate-mode built-ins on every fixture, in
//!   their words, and holding while the webhook is down;
//! - `findings`: the built-ins' cluster findings reaching `kubectl` as
//!   warnings and denials through webhooks registered by `url:`.

mod audit;
mod backstop;
mod context;
mod deploy;
mod findings;
mod registration;

use std::path::{Path, PathBuf};

use wasmhook_tests::kube::KubeApi;

/// Starts an API server for one test, or fails saying how to get one.
fn start_api() -> KubeApi {
    KubeApi::start(&[]).unwrap_or_else(|error| panic!("cannot start the test API server: {error}"))
}

/// The repository's `deploy/` directory.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `kubectl kustomize deploy/<dir>`.
fn render(dir: &str) -> String {
    let output = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(deploy_dir().join(dir))
        .output()
        .expect("kubectl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Names of the webhook configurations of `kind` (plural resource) in the cluster.
fn webhook_configurations(api: &KubeApi, resource: &str) -> Vec<String> {
    let names = api
        .kubectl_ok(&["get", resource, "-o", "jsonpath={.items[*].metadata.name}"])
        .unwrap_or_else(|error| panic!("{error}"));
    names.split_whitespace().map(str::to_owned).collect()
}

/// Creates a Service that the built-in headless-service policy selects: what
/// a fail-closed webhook with no server behind it would refuse.
fn create_service(api: &KubeApi, name: &str) -> Result<String, String> {
    api.kubectl_ok(&["-n", "default", "create", "service", "clusterip", name, "--tcp=80:8080"])
}
