//! Context watches against the real API server: the caches sync before the
//! server is ready, follow creations and deletions, survive the API server
//! restarting, and a ServiceAccount allowed to list but not to watch is
//! reported clearly (degraded, not unready).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmhook::server::registry::PolicySource;
use wasmhook::server::{ContextConfig, RunningServer, ServerConfig};
use wasmhook::tls::{TlsFiles, generate_ca};
use wasmhook_tests::kube::KubeApi;

use super::start_api;

/// statefulset-service-name reading Services.
const POLICY_SET: &str = "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n  \
    - name: statefulset-service-name\n    module: builtin:statefulset-service-name\n    \
    context: [{apiVersion: v1, kind: Service}]\n";

/// Starts a server in process whose watches use `kubeconfig`.
async fn serve(api: &KubeApi, kubeconfig: PathBuf) -> RunningServer {
    wasmhook_tests::certs::install_crypto_provider();
    let dir = api.dir();
    let ca = generate_ca("wasmhook context-tier CA", 1).unwrap();
    let serving = ca.issue_serving_cert(&["localhost".to_owned()], 1).unwrap();
    std::fs::write(dir.join("context.crt"), &serving.cert_pem).unwrap();
    std::fs::write(dir.join("context.key"), &serving.key_pem).unwrap();
    std::fs::write(dir.join("context-policies.yaml"), POLICY_SET).unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let tls = TlsFiles {
        cert: dir.join("context.crt"),
        key: dir.join("context.key"),
    };
    let mut config = ServerConfig::new(
        loopback,
        loopback,
        tls,
        PolicySource::File(dir.join("context-policies.yaml")),
    );
    config.engine.cache_dir = None;
    config.policy_reload_interval = None;
    config.context = ContextConfig {
        kubeconfig: Some(kubeconfig),
        timeout: Duration::from_secs(10),
    };
    RunningServer::start(config).await.expect("the server starts")
}

async fn readyz(server: &RunningServer) -> (u16, Value) {
    let response = reqwest::get(format!("http://{}/readyz", server.health_addr))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `/readyz` until `done` holds of its status and body.
async fn wait_for(server: &RunningServer, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readyz(server).await;
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: /readyz is {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn services(body: &Value) -> u64 {
    body["context"]["v1 Service"]["objects"].as_u64().unwrap_or(u64::MAX)
}

fn count_services(api: &KubeApi) -> u64 {
    let names = api
        .kubectl_ok(&["get", "services", "-A", "-o", "jsonpath={.items[*].metadata.name}"])
        .unwrap_or_else(|error| panic!("{error}"));
    names.split_whitespace().count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_sync_follow_changes_and_survive_an_api_server_restart() {
    let mut api = start_api();
    api.kubectl_ok(&["create", "namespace", "shop"]).unwrap();
    api.kubectl_ok(&[
        "-n",
        "shop",
        "create",
        "service",
        "clusterip",
        "web-headless",
        "--clusterip=None",
    ])
    .unwrap();
    let admin = api.kubeconfig.clone();
    let server = serve(&api, admin).await;
    let body = wait_for(&server, "synced", |status, _| status == 200).await;
    let listed = count_services(&api);
    assert_eq!(services(&body), listed, "the first list holds every Service: {body}");
    assert_eq!(body["context"]["v1 Service"]["synced"], true);
    assert_eq!(body["context"]["v1 Service"]["resource"], "services");

    api.kubectl_ok(&["-n", "shop", "create", "service", "clusterip", "late", "--tcp=80"])
        .unwrap();
    wait_for(&server, "a created Service is seen", |_, body| {
        services(body) == listed + 1
    })
    .await;
    api.kubectl_ok(&["-n", "shop", "delete", "service", "late"]).unwrap();
    wait_for(&server, "a deleted Service disappears", |_, body| {
        services(body) == listed
    })
    .await;

    // The API server goes away and comes back on the same port and etcd.
    api.restart_apiserver(&[]).expect("kube-apiserver restarts");
    let (status, _) = readyz(&server).await;
    assert_eq!(status, 200, "a broken watch never makes the server unready");
    api.kubectl_ok(&[
        "-n",
        "shop",
        "create",
        "service",
        "clusterip",
        "after-restart",
        "--tcp=80",
    ])
    .unwrap();
    let body = wait_for(&server, "the watch resumes after the restart", |_, body| {
        services(body) == listed + 1
    })
    .await;
    assert!(
        body["context"]["v1 Service"]["watchErrors"].as_u64().unwrap_or(0) >= 1,
        "{body}"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", server.health_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "wasmhook_context_objects{{resource=\"services\"}} {}",
            listed + 1
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmhook_context_synced{resource=\"services\"} 1"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_that_may_list_but_not_watch_is_reported_clearly() {
    let api = start_api();
    for args in [
        &["create", "serviceaccount", "reader", "-n", "default"][..],
        &[
            "create",
            "clusterrole",
            "list-services",
            "--verb=get,list",
            "--resource=services",
        ],
        &[
            "create",
            "clusterrolebinding",
            "list-services",
            "--clusterrole=list-services",
            "--serviceaccount=default:reader",
        ],
    ] {
        api.kubectl_ok(args).unwrap_or_else(|error| panic!("{error}"));
    }
    let token = api.kubectl_ok(&["-n", "default", "create", "token", "reader"]).unwrap();
    let kubeconfig = api.kubeconfig_for_token("reader", token.trim()).unwrap();
    let server = serve(&api, kubeconfig).await;
    // The list works, so the cache syncs and the server becomes ready; the
    // watch is refused, which is reported, not hidden and not fatal.
    let body = wait_for(&server, "the refused watch is reported", |status, body| {
        status == 200 && body["context"]["v1 Service"]["failing"] == true
    })
    .await;
    let error = body["context"]["v1 Service"]["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("forbidden"), "{error}");
    assert!(error.contains("cannot watch resource \"services\""), "{error}");
    assert!(error.contains("system:serviceaccount:default:reader"), "{error}");
    assert_eq!(body["degraded"], true, "{body}");
    server.shutdown().await;
}
