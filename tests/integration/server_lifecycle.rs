//! The server's life while traffic flows: certificate rotation by Secret-style
//! symlink swap, policy reloads (one of them broken), and graceful shutdown.
//! The pass criterion is always the same: no valid request fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{TestCerts, TestServer, fixture_body, misbehaving_wasm, post_review};

const POLICY_SET: &str = r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: headless-service
    module: builtin:headless-service
  - name: custom
    module: ./custom.wasm
    settings: {behaviour: count}
    rules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE"]
        resources: ["services"]
  - name: slow
    module: ./custom.wasm
    timeout: 2s
    failurePolicy: Ignore
    settings: {behaviour: loop}
    rules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE"]
        resources: ["services"]
"#;

async fn start() -> TestServer {
    TestServer::start(POLICY_SET, &[("custom.wasm", &misbehaving_wasm())], |_| {}).await
}

/// A TLS connection to the server at `addr` (as `localhost`, trusting the
/// test CA), offering `alpn`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    certs: &TestCerts,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(certs.client_config(alpn)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Sends valid reviews on `client` until `stop`, counting answers and failures.
async fn traffic(client: reqwest::Client, url: String, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let body = fixture_body("mutating-create-service-sample-headless.json");
    let mut answered = 0;
    let mut failures = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(response) if response.status() == StatusCode::OK => {
                let answer: Value = response.json().await.unwrap();
                if answer["response"]["allowed"] == true {
                    answered += 1;
                } else {
                    failures.push(format!("denied: {answer}"));
                }
            }
            Ok(response) => failures.push(format!("status {}", response.status())),
            Err(error) => failures.push(format!("{error:?}")),
        }
    }
    (answered, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_by_symlink_swap_under_load() {
    let mut server = start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let flows: Vec<_> = (0..4)
        .map(|flow| {
            // Fresh connections as well as kept-alive ones.
            let client = if flow % 2 == 0 {
                server.certs.http1_client()
            } else {
                server.certs.http2_client()
            };
            tokio::spawn(traffic(client, server.url("/mutate/headless-service"), stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let new_leaf = server.certs.rotate();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.server.certificate_generation() < 1 {
        assert!(std::time::Instant::now() < deadline, "the rotation was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for flow in flows {
        let (answered, failures) = flow.await.unwrap();
        assert!(answered > 0, "no request was answered");
        assert!(failures.is_empty(), "failed requests during rotation: {failures:?}");
    }

    // A new handshake sees the new certificate.
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(server.certs.client_config(&[b"http/1.1"]))
        .tls_info(true)
        .build()
        .unwrap();
    let response = client.get(server.url("/healthz")).send().await.unwrap();
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    assert_eq!(info.peer_certificate(), Some(new_leaf.as_ref()));
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_module_on_reload_leaves_every_policy_serving() {
    let server = start().await;
    let client = server.certs.http1_client();
    let body = || fixture_body("mutating-create-service-dry-svc.json");

    let stop = Arc::new(AtomicBool::new(false));
    let flow = tokio::spawn(traffic(
        server.certs.http1_client(),
        server.url("/mutate/headless-service"),
        stop.clone(),
    ));

    // Break the module, then reload.
    std::fs::write(server.path("custom.wasm"), b"\0asm garbage").unwrap();
    server.server.reload_policies().await;

    let (status, answer) = post_review(&client, &server.url("/mutate/custom"), body()).await;
    assert_eq!(status, StatusCode::OK, "the previous version keeps serving");
    assert_eq!(answer["response"]["warnings"][0], "call 1");
    let ready: Value = reqwest::get(server.health_url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["degraded"], true);
    assert_eq!(ready["policies"]["custom"]["state"], "serving-previous-version");
    assert!(
        ready["policies"]["custom"]["loadError"]
            .as_str()
            .unwrap()
            .contains("custom")
    );
    assert_eq!(ready["policies"]["headless-service"]["state"], "serving");
    let metrics = reqwest::get(server.health_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"wasmhook_policy_load_failures_total{policy="custom"} 1"#),
        "{metrics}"
    );

    // Fix it with different settings: the new version serves.
    std::fs::write(server.path("custom.wasm"), misbehaving_wasm()).unwrap();
    let fixed = std::fs::read_to_string(server.policy_set_path()).unwrap().replacen(
        "{behaviour: count}",
        "{behaviour: allow}",
        1,
    );
    std::fs::write(server.policy_set_path(), fixed).unwrap();
    server.server.reload_policies().await;
    let (_, answer) = post_review(&client, &server.url("/mutate/custom"), body()).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(
        answer["response"].get("warnings").is_none(),
        "the new settings apply: {answer}"
    );
    let ready: Value = reqwest::get(server.health_url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["degraded"], false);

    stop.store(true, Ordering::Relaxed);
    let (answered, failures) = flow.await.unwrap();
    assert!(answered > 0);
    assert!(failures.is_empty(), "requests failed during reloads: {failures:?}");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_set_on_reload_changes_nothing() {
    let server = start().await;
    std::fs::write(
        server.policy_set_path(),
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies: [{name: BAD}]\n",
    )
    .unwrap();
    server.server.reload_policies().await;
    let ready: Value = reqwest::get(server.health_url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["degraded"], true);
    assert!(
        ready["policySetError"].as_str().unwrap().contains("policies.yaml"),
        "{ready}"
    );
    let (status, _) = post_review(
        &server.certs.http1_client(),
        &server.url("/mutate/custom"),
        fixture_body("mutating-create-service-dry-svc.json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_accepted_request() {
    let server = start().await;
    let answered = Arc::new(AtomicUsize::new(0));
    // Each review takes ~2 s (the policy times out and is ignored), so all
    // of them are in flight when shutdown begins.
    let requests: Vec<_> = (0..8)
        .map(|index| {
            let client = if index % 2 == 0 {
                server.certs.http1_client()
            } else {
                server.certs.http2_client()
            };
            let url = server.url("/mutate/slow");
            let answered = answered.clone();
            tokio::spawn(async move {
                let (status, answer) =
                    post_review(&client, &url, fixture_body("mutating-create-service-dry-svc.json")).await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(
                    answer["response"]["allowed"], true,
                    "failurePolicy Ignore allows: {answer}"
                );
                answered.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // Shut down only once all of them are being evaluated (accepted).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.server.metrics_text().contains("wasmhook_reviews_in_flight 8") {
        assert!(std::time::Instant::now() < deadline, "the requests never got in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = server.url("/healthz");
    let certs_client = server.certs.http1_client();
    server.server.shutdown().await;
    for request in requests {
        request.await.expect("every accepted request is answered");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 8);
    assert!(
        certs_client.get(&url).send().await.is_err(),
        "no new connections after shutdown"
    );
}

/// A client that opened its connection before shutdown and sends its first
/// request after it began had no sign the server was leaving: that request is
/// answered (`connection: close`), and the connection ends with TLS's
/// close_notify, not a bare TCP close that reads as a truncated answer.
/// HTTP/1.1 negotiated by ALPN, and offered by a client that sent no ALPN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_before_shutdown_has_its_first_request_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let TestServer {
        server,
        certs,
        dir: _dir,
    } = start().await;
    let addr = server.addr;
    let mut connections = Vec::new();
    for alpn in [&[][..], &[&b"http/1.1"[..]][..]] {
        connections.push(tls_connect(addr, &certs, alpn).await);
    }
    let shutdown = tokio::spawn(server.shutdown());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never stopped accepting"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let body = fixture_body("mutating-create-service-dry-svc.json");
    for mut connection in connections {
        let head = format!(
            "POST /mutate/headless-service HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        connection.write_all(head.as_bytes()).await.unwrap();
        connection.write_all(&body).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), connection.read_to_end(&mut answer))
            .await
            .expect("the server answers and closes within the drain")
            .expect("the connection ends with close_notify, not a bare TCP close");
        let answer = String::from_utf8_lossy(&answer);
        let (head, review) = answer.split_once("\r\n\r\n").expect("a complete HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{answer}");
        let review: Value = serde_json::from_str(review).expect("the whole review");
        assert_eq!(review["response"]["allowed"], true, "{review}");
    }
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown ends once the connections have closed")
        .unwrap();
}

/// A connection that never sends a request does not hold shutdown up for the
/// whole drain: five seconds after it was accepted it is closed, with TLS's
/// close_notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_its_grace() {
    use tokio::io::AsyncReadExt;
    let TestServer {
        server,
        certs,
        dir: _dir,
    } = start().await;
    let mut idle = tls_connect(server.addr, &certs, &[b"http/1.1"]).await;
    let accepted = std::time::Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    let mut nothing = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), idle.read_to_end(&mut nothing))
        .await
        .expect("closed well before the 25 s drain")
        .expect("closed with close_notify, not a bare TCP close");
    assert!(nothing.is_empty(), "nothing to answer: {nothing:?}");
    assert!(
        accepted.elapsed() >= Duration::from_secs(4),
        "a new connection gets its grace: closed after {:?}",
        accepted.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown ends with the last connection")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_off_without_blocking_others() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start(POLICY_SET, &[("custom.wasm", &misbehaving_wasm())], |config| {
        config.timeouts.handshake = Duration::from_millis(300);
    })
    .await;
    // Connections that never start (or never finish) a TLS handshake.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(server.server.addr).await.unwrap();
        if stalled.len() % 2 == 0 {
            use tokio::io::AsyncWriteExt;
            stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a ClientHello
        }
        stalled.push(stream);
    }
    let (status, _) = post_review(
        &server.certs.http1_client(),
        &server.url("/mutate/headless-service"),
        fixture_body("mutating-create-service-dry-svc.json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a stalled handshake blocks nobody");
    for mut stream in stalled {
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("the server closes a stalled connection after the handshake timeout");
        assert!(matches!(read, Ok(0) | Err(_)), "closed, not answered: {read:?}");
    }
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_reloaded_without_a_signal() {
    let server = TestServer::start(POLICY_SET, &[("custom.wasm", &misbehaving_wasm())], |config| {
        config.policy_reload_interval = Some(Duration::from_millis(100));
    })
    .await;
    let changed = std::fs::read_to_string(server.policy_set_path()).unwrap().replacen(
        "{behaviour: count}",
        "{behaviour: allow}",
        1,
    );
    std::fs::write(server.policy_set_path(), changed).unwrap();
    let client = server.certs.http1_client();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, answer) = post_review(
            &client,
            &server.url("/mutate/custom"),
            fixture_body("mutating-create-service-dry-svc.json"),
        )
        .await;
        if answer["response"].get("warnings").is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the change was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.server.shutdown().await;
}
