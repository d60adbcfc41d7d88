//! `wasmhook serve --register` against a stand-in API server on loopback:
//! what is applied, how (server-side apply as field manager `wasmhook`,
//! owned by the ClusterRole), that nothing is applied before the Service has
//! a ready endpoint, that a rotated CA bundle and a changed policy set are
//! applied again, and that an unreachable API server fails start-up clearly
//! and quickly instead of hanging. The same registration against a real
//! kube-apiserver, with deploy/base's RBAC, is in `tests/kube/`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use base64::Engine as _;
use serde_json::Value;
use wasmhook::registration::RegisterConfig;

use crate::harness::TestServer;

const POLICY_SET: &str = r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: headless-service
    module: builtin:headless-service
  - name: statefulset-service-name
    module: builtin:statefulset-service-name
  - name: headless-validate
    module: builtin:headless-service
    mode: validate
"#;

/// One request the stand-in API server received.
#[derive(Debug, Clone)]
struct Applied {
    resource: String,
    name: String,
    query: String,
    content_type: String,
    body: Value,
}

type Log = Arc<Mutex<Vec<Applied>>>;

/// What the stand-in API server knows and records.
#[derive(Clone, Default)]
struct Fake {
    log: Log,
    /// Whether wasmhook's Service has a ready endpoint.
    endpoints_ready: Arc<AtomicBool>,
    /// The label selectors of the EndpointSlice lists received.
    endpoint_queries: Arc<Mutex<Vec<String>>>,
}

/// The owning ClusterRole's uid.
const OWNER_UID: &str = "8d1c6c64-0b9f-4c1e-a8a6-2f4e0d6b9a11";

/// Answers a GET of the ClusterRole `wasmhook-register`; 404 for any other.
async fn cluster_role(UrlPath(name): UrlPath<String>) -> (StatusCode, axum::Json<Value>) {
    if name != "wasmhook-register" {
        let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("clusterroles.rbac.authorization.k8s.io \"{name}\" not found"),
            "reason": "NotFound", "code": 404});
        return (StatusCode::NOT_FOUND, axum::Json(status));
    }
    let role = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "uid": OWNER_UID}, "rules": []});
    (StatusCode::OK, axum::Json(role))
}

/// Lists the Service's EndpointSlices: one, whose endpoint is ready or not.
async fn endpoint_slices(State(fake): State<Fake>, RawQuery(query): RawQuery) -> axum::Json<Value> {
    fake.endpoint_queries.lock().unwrap().push(query.unwrap_or_default());
    let ready = fake.endpoints_ready.load(Ordering::SeqCst);
    axum::Json(
        serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "1"},
        "items": [{"metadata": {"name": "wasmhook-abcde", "namespace": "wasmhook-system",
            "labels": {"kubernetes.io/service-name": "wasmhook"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": ready}}]}]}),
    )
}

/// Records server-side-apply PATCHes and answers with the applied object.
async fn apply(
    State(Fake { log, .. }): State<Fake>,
    UrlPath((resource, name)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).expect("kube sends apply patches as JSON");
    log.lock().unwrap().push(Applied {
        resource,
        name,
        query: query.unwrap_or_default(),
        content_type: headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.clone(),
    });
    axum::Json(body)
}

/// Starts the stand-in API server, its Service's endpoint ready or not;
/// returns its kubeconfig text and what it knows.
async fn fake_api_server(endpoints_ready: bool) -> (String, Fake) {
    let fake = Fake::default();
    fake.endpoints_ready.store(endpoints_ready, Ordering::SeqCst);
    let app = Router::new()
        .route("/apis/admissionregistration.k8s.io/v1/{resource}/{name}", patch(apply))
        .route(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
            get(cluster_role),
        )
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/wasmhook-system/endpointslices",
            get(endpoint_slices),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (kubeconfig(&format!("http://{address}")), fake)
}

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n\
         users:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: test\n  context:\n    \
         cluster: test\n    user: test\ncurrent-context: test\n"
    )
}

fn registration(dir: &Path, timeout: Duration) -> RegisterConfig {
    RegisterConfig {
        namespace: "wasmhook-system".into(),
        service: "wasmhook".into(),
        port: 443,
        ca_bundle: dir.join("ca.pem"),
        kubeconfig: Some(dir.join("kubeconfig")),
        timeout,
        owner: wasmhook::registration::DEFAULT_OWNER.into(),
    }
}

fn webhook_names(applied: &Applied) -> Vec<String> {
    applied.body["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|webhook| webhook["name"].as_str().unwrap().to_owned())
        .collect()
}

fn ca_bundles(applied: &Applied) -> Vec<Vec<u8>> {
    applied.body["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|webhook| {
            base64::engine::general_purpose::STANDARD
                .decode(webhook["clientConfig"]["caBundle"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

/// Waits until the log holds at least `count` requests.
async fn wait_for(log: &Log, count: usize) -> Vec<Applied> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let applied = log.lock().unwrap().clone();
        if applied.len() >= count {
            return applied;
        }
        assert!(
            Instant::now() < deadline,
            "only {} applies arrived: {applied:#?}",
            applied.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_at_startup_and_again_when_the_ca_or_the_policies_change() {
    let (kubeconfig, fake) = fake_api_server(true).await;
    let log = fake.log.clone();
    let first_ca = wasmhook::tls::generate_ca("first", 1).unwrap().cert_pem;
    let server = TestServer::try_start(POLICY_SET, &[], |config, dir| {
        std::fs::write(dir.join("kubeconfig"), &kubeconfig).unwrap();
        std::fs::write(dir.join("ca.pem"), &first_ca).unwrap();
        config.registration = Some(registration(dir, Duration::from_secs(5)));
    })
    .await
    .expect("the server starts and registers");

    let applied = wait_for(&log, 2).await;
    let (mutating, validating) = (&applied[0], &applied[1]);
    assert_eq!(mutating.resource, "mutatingwebhookconfigurations");
    assert_eq!(validating.resource, "validatingwebhookconfigurations");
    for request in [mutating, validating] {
        assert_eq!(request.name, "wasmhook");
        assert!(request.query.contains("fieldManager=wasmhook"), "{}", request.query);
        assert!(request.query.contains("force=true"), "{}", request.query);
        assert_eq!(request.content_type, "application/apply-patch+yaml");
        assert!(ca_bundles(request).iter().all(|bundle| bundle == first_ca.as_bytes()));
        assert_eq!(
            request.body["metadata"]["ownerReferences"],
            serde_json::json!([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "name": "wasmhook-register", "uid": OWNER_UID}]),
            "owned by the ClusterRole, so deleting it deletes them"
        );
    }
    assert_eq!(
        webhook_names(mutating),
        ["headless-service.wasmhook.dev", "statefulset-service-name.wasmhook.dev"],
        "policy-set order"
    );
    assert_eq!(webhook_names(validating), ["headless-validate.wasmhook.dev"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(log.lock().unwrap().len(), 2, "nothing changed, nothing re-applied");

    // The CA rotates (as a Secret volume update would).
    let second_ca = wasmhook::tls::generate_ca("second", 1).unwrap().cert_pem;
    std::fs::write(server.path("ca.pem"), &second_ca).unwrap();
    let applied = wait_for(&log, 4).await;
    assert!(
        ca_bundles(&applied[2])
            .iter()
            .all(|bundle| bundle == second_ca.as_bytes())
    );
    assert!(
        ca_bundles(&applied[3])
            .iter()
            .all(|bundle| bundle == second_ca.as_bytes())
    );

    // A policy leaves the set: its webhook leaves the configuration.
    let fewer = POLICY_SET.replace(
        "  - name: headless-validate\n    module: builtin:headless-service\n    mode: validate\n",
        "",
    );
    std::fs::write(server.policy_set_path(), fewer).unwrap();
    server.server.reload_policies().await;
    let applied = wait_for(&log, 6).await;
    assert_eq!(
        webhook_names(&applied[5]),
        Vec::<String>::new(),
        "an empty list removes our webhooks"
    );
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_fails_startup_clearly_and_quickly() {
    // What the same start-up costs without registration (compiling the
    // policies, slow on a loaded machine): registration must add little to it.
    let started = Instant::now();
    let control = TestServer::start(POLICY_SET, &[], |_| {}).await;
    let without_registration = started.elapsed();
    control.server.shutdown().await;
    let started = Instant::now();
    let error = TestServer::try_start(POLICY_SET, &[], |config, dir| {
        std::fs::write(dir.join("kubeconfig"), kubeconfig("http://127.0.0.1:1")).unwrap();
        std::fs::write(
            dir.join("ca.pem"),
            wasmhook::tls::generate_ca("ca", 1).unwrap().cert_pem,
        )
        .unwrap();
        config.registration = Some(registration(dir, Duration::from_secs(2)));
    })
    .await
    .err()
    .expect("start-up fails");
    let elapsed = started.elapsed();
    let message = error.to_string();
    assert!(
        message.contains("cannot register the webhook configurations"),
        "{message}"
    );
    assert!(message.contains("127.0.0.1:1"), "{message}");
    // The 2 s registration timeout, its last attempt, and slack.
    assert!(
        elapsed < without_registration + Duration::from_secs(8),
        "took {elapsed:?}, against {without_registration:?} without registration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_bundle_fails_startup_at_once() {
    let (kubeconfig, fake) = fake_api_server(true).await;
    let log = fake.log;
    let error = TestServer::try_start(POLICY_SET, &[], |config, dir| {
        std::fs::write(dir.join("kubeconfig"), &kubeconfig).unwrap();
        config.registration = Some(registration(dir, Duration::from_secs(30)));
    })
    .await
    .err()
    .expect("start-up fails");
    let message = error.to_string();
    assert!(message.contains("ca.pem"), "{message}");
    assert!(log.lock().unwrap().is_empty(), "nothing was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_registered_before_the_service_has_a_ready_endpoint() {
    // A first install whose pods never become ready (or that fails halfway)
    // must leave no fail-closed webhook behind: the server serves, but
    // registers only once the API server can reach a ready wasmhook.
    let (kubeconfig, fake) = fake_api_server(false).await;
    let server = TestServer::try_start(POLICY_SET, &[], |config, dir| {
        std::fs::write(dir.join("kubeconfig"), &kubeconfig).unwrap();
        std::fs::write(
            dir.join("ca.pem"),
            wasmhook::tls::generate_ca("ca", 1).unwrap().cert_pem,
        )
        .unwrap();
        config.registration = Some(registration(dir, Duration::from_secs(5)));
    })
    .await
    .expect("start-up does not wait for the endpoints");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(fake.log.lock().unwrap().is_empty(), "nothing applied while not ready");
    let queries = fake.endpoint_queries.lock().unwrap().clone();
    assert!(!queries.is_empty(), "the endpoints were asked for");
    assert!(
        queries[0].contains("labelSelector=kubernetes.io%2Fservice-name%3Dwasmhook"),
        "{queries:?}"
    );

    fake.endpoints_ready.store(true, Ordering::SeqCst);
    let applied = wait_for(&fake.log, 2).await;
    assert_eq!(applied[0].resource, "mutatingwebhookconfigurations");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_owner_fails_startup_naming_it() {
    let (kubeconfig, fake) = fake_api_server(true).await;
    let error = TestServer::try_start(POLICY_SET, &[], |config, dir| {
        std::fs::write(dir.join("kubeconfig"), &kubeconfig).unwrap();
        std::fs::write(
            dir.join("ca.pem"),
            wasmhook::tls::generate_ca("ca", 1).unwrap().cert_pem,
        )
        .unwrap();
        let mut registration = registration(dir, Duration::from_secs(1));
        registration.owner = "no-such-role".into();
        config.registration = Some(registration);
    })
    .await
    .err()
    .expect("start-up fails");
    let message = error.to_string();
    assert!(message.contains("ClusterRole \"no-such-role\""), "{message}");
    assert!(message.contains("--register-owner"), "{message}");
    assert!(message.contains("not found"), "{message}");
    assert!(fake.log.lock().unwrap().is_empty(), "nothing was applied");
}
