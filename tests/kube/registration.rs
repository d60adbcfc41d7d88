//! `serve --register` against the real API server with exactly deploy/base's
//! RBAC, through a service-account token: nothing is registered until the
//! Service has a ready endpoint; then both configurations are applied, owned
//! by the ClusterRole that `kubectl delete -k` deletes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmhook::registration::RegisterConfig;
use wasmhook::server::registry::PolicySource;
use wasmhook::server::{RunningServer, ServerConfig, ServerError};
use wasmhook::tls::{TlsFiles, generate_ca};
use wasmhook_tests::kube::KubeApi;

use super::{deploy_dir, start_api, webhook_configurations};

/// deploy/base applied, and a kubeconfig for its ServiceAccount's token.
fn installed(api: &KubeApi) -> std::path::PathBuf {
    api.kubectl_ok(&["apply", "-k", deploy_dir().join("base").to_str().unwrap()])
        .unwrap_or_else(|error| panic!("{error}"));
    let token = api
        .kubectl_ok(&["-n", "wasmhook-system", "create", "token", "wasmhook"])
        .unwrap_or_else(|error| panic!("{error}"));
    api.kubeconfig_for_token("wasmhook", token.trim()).unwrap()
}

/// Starts the server in process with deploy/base's policy set, registering
/// with `kubeconfig`; the CA bundle is written to the API server's directory.
async fn serve(api: &KubeApi, kubeconfig: std::path::PathBuf) -> Result<(RunningServer, String), ServerError> {
    wasmhook_tests::certs::install_crypto_provider();
    let ca = generate_ca("wasmhook kube-tier CA", 1).unwrap();
    let serving = ca.issue_serving_cert(&["localhost".to_owned()], 1).unwrap();
    let dir = api.dir();
    std::fs::write(dir.join("wasmhook-ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.join("wasmhook.crt"), &serving.cert_pem).unwrap();
    std::fs::write(dir.join("wasmhook.key"), &serving.key_pem).unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let tls = TlsFiles {
        cert: dir.join("wasmhook.crt"),
        key: dir.join("wasmhook.key"),
    };
    let policies = PolicySource::File(deploy_dir().join("base/policies.yaml"));
    let mut config = ServerConfig::new(loopback, loopback, tls, policies);
    config.engine.cache_dir = None;
    config.tls_reload_interval = Duration::from_millis(200);
    // The base's policies read Services and StatefulSets: the watches use the
    // same ServiceAccount, through the base's wasmhook-context ClusterRole.
    config.context.kubeconfig = Some(kubeconfig.clone());
    config.registration = Some(RegisterConfig {
        namespace: "wasmhook-system".into(),
        service: "wasmhook".into(),
        port: 443,
        ca_bundle: dir.join("wasmhook-ca.pem"),
        kubeconfig: Some(kubeconfig),
        timeout: Duration::from_secs(5),
        owner: wasmhook::registration::DEFAULT_OWNER.into(),
    });
    RunningServer::start(config).await.map(|server| (server, ca.cert_pem))
}

/// An EndpointSlice for wasmhook's Service with one ready endpoint, as the
/// endpoint-slice controller writes once a pod passes its readiness probe.
const READY_ENDPOINT: &str = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: wasmhook-ready
  namespace: wasmhook-system
  labels:
    kubernetes.io/service-name: wasmhook
addressType: IPv4
endpoints:
  - addresses: ["10.0.0.7"]
    conditions: {ready: true}
ports:
  - name: https
    port: 8443
    protocol: TCP
"#;

fn get_json(api: &KubeApi, args: &[&str]) -> Value {
    let text = api.kubectl_ok(args).unwrap_or_else(|error| panic!("{error}"));
    serde_json::from_str(&text).expect("kubectl -o json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_register_once_the_service_is_ready_owned_by_their_cluster_role() {
    let api = start_api();
    let kubeconfig = installed(&api);
    let (server, ca_pem) = serve(&api, kubeconfig).await.expect("the server starts");

    // Serving, but the Service has no ready endpoint: nothing registered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for resource in ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"] {
        assert!(webhook_configurations(&api, resource).is_empty(), "{resource}");
    }

    api.kubectl_with_input(&["apply", "-f", "-"], READY_ENDPOINT)
        .expect("kubectl runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while webhook_configurations(&api, "validatingwebhookconfigurations").is_empty() {
        assert!(
            Instant::now() < deadline,
            "not registered after the endpoint became ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let owner_uid =
        get_json(&api, &["get", "clusterrole", "wasmhook-register", "-o", "json"])["metadata"]["uid"].clone();
    for (resource, webhooks) in [
        (
            "mutatingwebhookconfiguration",
            &["headless-service", "statefulset-service-name"][..],
        ),
        (
            "validatingwebhookconfiguration",
            &[
                "headless-service-verify",
                "statefulset-service-name-verify",
                "headless-service-dependents",
            ][..],
        ),
    ] {
        let object = get_json(
            &api,
            &["get", resource, "wasmhook", "-o", "json", "--show-managed-fields"],
        );
        let owners = &object["metadata"]["ownerReferences"];
        assert_eq!(owners.as_array().map(Vec::len), Some(1), "{resource}: {owners}");
        assert_eq!(owners[0]["kind"], "ClusterRole");
        assert_eq!(owners[0]["name"], "wasmhook-register");
        assert_eq!(owners[0]["uid"], owner_uid, "{resource}: the live ClusterRole");
        let names: Vec<&str> = object["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|webhook| webhook["name"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = webhooks.iter().map(|name| format!("{name}.wasmhook.dev")).collect();
        assert_eq!(names, expected, "{resource}");
        for webhook in object["webhooks"].as_array().unwrap() {
            use base64::Engine as _;
            let bundle = base64::engine::general_purpose::STANDARD
                .decode(webhook["clientConfig"]["caBundle"].as_str().unwrap())
                .unwrap();
            assert_eq!(bundle, ca_pem.as_bytes(), "{resource}");
            assert_eq!(webhook["clientConfig"]["service"]["name"], "wasmhook");
        }
        let managers: Vec<&str> = object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["wasmhook"], "{resource}: server-side apply as wasmhook");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bases_rbac_start_up_fails_saying_what_is_forbidden() {
    let api = start_api();
    let kubeconfig = installed(&api);
    api.kubectl_ok(&["delete", "clusterrolebinding", "wasmhook-register"])
        .unwrap_or_else(|error| panic!("{error}"));
    let error = match serve(&api, kubeconfig).await {
        Ok(_) => panic!("start-up must fail without the rights to register"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("ClusterRole \"wasmhook-register\""), "{error}");
    assert!(error.contains("forbidden"), "{error}");
    assert!(
        error.contains("system:serviceaccount:wasmhook-system:wasmhook"),
        "{error}"
    );
}
