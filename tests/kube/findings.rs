//! The built-ins' cluster findings reaching `kubectl`, through webhooks
//! registered by `url:` with the real API server: warnings by default, a
//! denial where the settings ask for one — the StatefulSet / Service relation
//! wasmhook exists for, checked against the cluster the objects land in.

use std::time::{Duration, Instant};

use wasmhook::server::RunningServer;
use wasmhook_tests::kube::KubeApi;

use super::{start_api, statefulset};

/// The StatefulSet check in mutate mode (a missing Service warns; one that
/// is not headless is denied), and the Service dependents check.
const POLICY_SET: &str = r#"apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: statefulset-service-name
    module: builtin:statefulset-service-name
    settings:
      serviceChecks: {notHeadless: deny}
    context: [{apiVersion: v1, kind: Service}]
  - name: headless-service-dependents
    module: builtin:headless-service
    mode: validate
    failurePolicy: Ignore
    context: [{apiVersion: apps/v1, kind: StatefulSet}]
    rules:
      - {operations: [UPDATE, DELETE], apiGroups: [""], apiVersions: [v1], resources: [services]}
"#;

/// Starts the server with [`POLICY_SET`] and registers its webhooks by URL.
async fn serve_and_register(api: &KubeApi) -> RunningServer {
    let policies = api.dir().join("findings-policies.yaml");
    std::fs::write(&policies, POLICY_SET).unwrap();
    super::serve_and_register(api, &policies, "findings").await
}

/// Waits until the server's cache holds `count` objects of `kind`
/// (`"v1 Service"`): the watch's lag, which a real `kubectl apply` of both
/// objects at once may meet (policies/README.md).
async fn wait_for_cache(server: &RunningServer, kind: &str, count: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body: serde_json::Value = reqwest::get(format!("http://{}/readyz", server.health_addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["context"][kind]["objects"].as_u64().is_some_and(&count) {
            return;
        }
        assert!(Instant::now() < deadline, "the cache did not follow: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn services_in_cluster(api: &KubeApi) -> u64 {
    let names = api
        .kubectl_ok(&["get", "services", "-A", "-o", "jsonpath={.items[*].metadata.name}"])
        .unwrap();
    names.split_whitespace().count() as u64
}

/// kubectl's exit status and its standard error (where warnings go).
fn kubectl(api: &KubeApi, args: &[&str], input: Option<&str>) -> (bool, String) {
    let output = match input {
        Some(input) => api.kubectl_with_input(args, input),
        None => api.kubectl(args),
    }
    .expect("kubectl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_and_service_findings_reach_kubectl() {
    let api = start_api();
    api.kubectl_ok(&["create", "namespace", "shop"]).unwrap();
    let server = serve_and_register(&api).await;

    // No Service yet: created, with a warning that says what to create.
    let (created, stderr) = kubectl(
        &api,
        &["apply", "-f", "-"],
        Some(&statefulset("web", Some("web-headless"), "web")),
    );
    assert!(created, "{stderr}");
    assert!(stderr.contains("Warning:"), "{stderr}");
    assert!(
        stderr.contains("Service \"web-headless\" (spec.serviceName) does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("clusterIP: None"), "{stderr}");

    // A Service with a cluster IP: denied (serviceChecks.notHeadless: deny).
    api.kubectl_ok(&["-n", "shop", "create", "service", "clusterip", "db", "--tcp=5432"])
        .unwrap();
    let expected = services_in_cluster(&api);
    wait_for_cache(&server, "v1 Service", |n| n == expected).await;
    let (created, stderr) = kubectl(&api, &["apply", "-f", "-"], Some(&statefulset("db", Some("db"), "db")));
    assert!(!created, "a StatefulSet naming a Service with a cluster IP is denied");
    assert!(
        stderr.contains("admission webhook \"statefulset-service-name.wasmhook.dev\" denied"),
        "{stderr}"
    );
    assert!(stderr.contains("is not headless"), "{stderr}");
    assert!(stderr.contains("re-create it with clusterIP: None"), "{stderr}");

    // Headless, but selecting other pods: a warning naming both label sets.
    api.kubectl_with_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: api-headless, namespace: shop}\n\
         spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}\n",
    )
    .unwrap();
    let expected = services_in_cluster(&api);
    wait_for_cache(&server, "v1 Service", |n| n == expected).await;
    let (created, stderr) = kubectl(
        &api,
        &["apply", "-f", "-"],
        Some(&statefulset("api", Some("api-headless"), "nginx")),
    );
    assert!(created, "{stderr}");
    assert!(stderr.contains("app=web"), "the Service's selector: {stderr}");
    assert!(stderr.contains("app=nginx"), "the pods' labels: {stderr}");

    // Deleting the Service a StatefulSet depends on: a warning naming it.
    wait_for_cache(&server, "apps/v1 StatefulSet", |n| n == 2).await;
    let (deleted, stderr) = kubectl(&api, &["-n", "shop", "delete", "service", "api-headless"], None);
    assert!(deleted, "{stderr}");
    assert!(stderr.contains("Warning:"), "{stderr}");
    assert!(stderr.contains("StatefulSet \"api\""), "{stderr}");
    server.shutdown().await;
}
