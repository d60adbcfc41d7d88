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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmhook::config::PolicySet;
use wasmhook::registration::{Trust, WebhookConfigurations, WebhookTarget};
use wasmhook::server::registry::PolicySource;
use wasmhook::server::{ContextConfig, RunningServer, ServerConfig};
use wasmhook::tls::{TlsFiles, generate_ca};
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

/// A StatefulSet `name` in namespace `shop` whose pods are labelled
/// `app: <app>`, with `spec.serviceName` when given.
fn statefulset(name: &str, service_name: Option<&str>, app: &str) -> String {
    let service_name = service_name
        .map(|service| format!("  serviceName: {service}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{service_name}  \
         replicas: 1\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    \
         spec:\n      containers: [{{name: c, image: nginx}}]\n"
    )
}

/// Starts wasmhook on loopback with the policy set `policies` (its context
/// watches reading `api`), waits until it is ready, and registers its
/// webhooks by URL, trusted through a CA made for it. `name` tells the
/// certificate files of several servers in one API server's directory apart.
async fn serve_and_register(api: &KubeApi, policies: &Path, name: &str) -> RunningServer {
    wasmhook_tests::certs::install_crypto_provider();
    let dir = api.dir();
    let ca = generate_ca(&format!("wasmhook {name} CA"), 1).unwrap();
    let serving = ca.issue_serving_cert(&["127.0.0.1".to_owned()], 1).unwrap();
    let tls = TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&tls.cert, &serving.cert_pem).unwrap();
    std::fs::write(&tls.key, &serving.key_pem).unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = ServerConfig::new(loopback, loopback, tls, PolicySource::File(policies.to_owned()));
    config.engine.cache_dir = None;
    config.policy_reload_interval = None;
    config.context = ContextConfig {
        kubeconfig: Some(api.kubeconfig.clone()),
        timeout: Duration::from_secs(10),
    };
    let server = RunningServer::start(config).await.expect("the server starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = reqwest::get(format!("http://{}/readyz", server.health_addr))
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or(0);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let set = PolicySet::from_file(policies, usize::MAX).unwrap();
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let trust = Trust::ca_bundle("the test CA", ca.cert_pem.clone().into_bytes()).unwrap();
    let target = WebhookTarget::new("wasmhook-system", "wasmhook", 443, Some(&url), trust).unwrap();
    let yaml = WebhookConfigurations::build(&set, &target)
        .to_yaml(&format!("the {name} test"))
        .unwrap();
    let output = api.kubectl_with_input(&["apply", "-f", "-"], &yaml).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    server
}
