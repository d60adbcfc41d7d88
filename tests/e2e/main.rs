//! End to end against the real `wasmhook` binary: what an operator does.
//! `serve` with no configuration (what `make run` runs) prints a `curl` that
//! must return a patch; SIGTERM must end it cleanly; a bad policy set must
//! stop it before it binds a port.
//!
//! This test target is declared by `webhook/Cargo.toml` (so cargo builds the
//! binary and passes its path in `CARGO_BIN_EXE_wasmhook`); it lives here with
//! the other end-to-end tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use wasmhook::server::ready_file::ReadyFile;

const BINARY: &str = env!("CARGO_BIN_EXE_wasmhook");

/// Starts `wasmhook serve` with `args`, on loopback ports chosen by the OS
/// (read back from the ready file, `ready.json` in `state`).
fn serve(state: &tempfile::TempDir, args: &[&str]) -> Child {
    serve_with(state, args, Stdio::piped)
}

fn serve_with(state: &tempfile::TempDir, args: &[&str], output: impl Fn() -> Stdio) -> Child {
    Command::new(BINARY)
        .arg("serve")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
            "--no-cache",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .arg("--ready-file")
        .arg(ready_path(state))
        .args(args)
        .stdout(output())
        .stderr(output())
        .spawn()
        .expect("the wasmhook binary starts")
}

fn ready_path(state: &tempfile::TempDir) -> std::path::PathBuf {
    state.path().join("ready.json")
}

/// Waits for the server's ready file.
fn ready(state: &tempfile::TempDir, child: &mut Child) -> ReadyFile {
    ReadyFile::wait(&ready_path(state), child, Duration::from_secs(60)).unwrap()
}

/// Sends SIGTERM and waits for the exit status (at most 30 s).
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    terminate_wait(child)
}

/// Waits for the exit status of a child already sent SIGTERM (at most 30 s).
fn terminate_wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "wasmhook did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_with_no_configuration_answers_the_printed_curl_and_stops_on_sigterm() {
    let state = tempfile::tempdir().unwrap();
    let mut child = serve(&state, &[]);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    let mut curl = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        printed.push(line.clone());
        if line.trim_start().starts_with("curl ") {
            curl = Some(line.trim().to_owned());
            break;
        }
    }
    let curl = curl.unwrap_or_else(|| panic!("no curl printed; stdout was:\n{}", printed.join("\n")));
    assert!(
        printed[0].contains("headless-service, statefulset-service-name"),
        "{printed:?}"
    );
    assert!(
        curl.contains(&state.path().display().to_string()),
        "dev files live in the state dir: {curl}"
    );

    let output = Command::new("sh")
        .args(["-c", &format!("{curl} --silent --show-error --max-time 20")])
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("the answer is JSON");
    assert_eq!(answer["response"]["allowed"], true);
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().expect("a patch"))
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&patch).unwrap(),
        json!([
            {"op": "add", "path": "/spec/clusterIP", "value": "None"},
            {"op": "add", "path": "/spec/clusterIPs", "value": ["None"]},
        ])
    );

    let status = terminate(&mut child);
    assert_eq!(status.code(), Some(0), "a graceful shutdown exits 0");
}

#[test]
fn an_invalid_policy_set_stops_serve_before_it_binds() {
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("policies.yaml");
    std::fs::write(
        &config,
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n  - name: web\n    module: builtin:headless-service\n    timout: 2s\n",
    )
    .unwrap();
    let child = serve(&state, &["--config", config.to_str().unwrap()]);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("policies.yaml"), "{stderr}");
    assert!(stderr.contains("policy \"web\""), "{stderr}");
    assert!(stderr.contains("timout"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing was served");
}

fn readyz(health: &str) -> Value {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            &format!("http://{health}/readyz"),
        ])
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn sighup_reloads_the_policy_set() {
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("policies.yaml");
    let one = "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n  - name: headless-service\n    module: builtin:headless-service\n";
    std::fs::write(&config, one).unwrap();
    let mut child = serve(&state, &["--config", config.to_str().unwrap(), "--no-policy-watch"]);
    let health = ready(&state, &mut child).health_listen.to_string();
    assert_eq!(readyz(&health)["policies"].as_object().unwrap().len(), 1);

    let two = format!("{one}  - name: sts\n    module: builtin:statefulset-service-name\n    mode: validate\n");
    std::fs::write(&config, two).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = readyz(&health);
        if ready["policies"].get("sts").is_some() {
            assert_eq!(ready["policies"]["sts"]["state"], "serving");
            assert_eq!(ready["policies"]["sts"]["mode"], "validate");
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {ready}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(terminate(&mut child).code(), Some(0));
}

#[test]
fn sigterm_the_moment_the_server_is_reachable_still_shuts_it_down_gracefully() {
    // The load benchmark found it: signal handlers installed after binding
    // left a window in which SIGTERM killed the server (default action).
    for _ in 0..5 {
        let state = tempfile::tempdir().unwrap();
        let mut child = serve_with(&state, &[], Stdio::null);
        let bound = ready(&state, &mut child);
        assert_eq!(bound.pid, child.id());
        let status = terminate(&mut child);
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(!ready_path(&state).exists(), "the ready file is removed at shutdown");
    }
}

#[test]
fn the_ready_file_names_the_ports_bound_for_port_zero() {
    let state = tempfile::tempdir().unwrap();
    let mut child = serve_with(&state, &[], Stdio::null);
    let bound = ready(&state, &mut child);
    assert!(bound.listen.ip().is_loopback() && bound.listen.port() != 0, "{bound:?}");
    assert!(
        bound.health_listen.port() != 0 && bound.health_listen != bound.listen,
        "{bound:?}"
    );
    // Both addresses are the server's: /readyz answers on the health port,
    // and the admission port speaks TLS (curl fails the handshake's trust,
    // not the connection).
    assert_eq!(readyz(&bound.health_listen.to_string())["ready"], true);
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .arg(format!("https://{}/", bound.listen))
        .output()
        .expect("curl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(60),
        "an untrusted certificate, so TLS answered: {stderr}"
    );
    assert_eq!(terminate(&mut child).code(), Some(0));
}

/// `curl` exit code and HTTP status of `args` (status 0 when none came).
fn curl_status(args: &[&str]) -> (Option<i32>, u16) {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "10",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    (output.status.code(), status)
}

#[test]
fn during_the_shutdown_delay_the_server_is_unready_but_still_answers_reviews() {
    // What a preStop sleep did, without a hook: on SIGTERM the server turns
    // /readyz to 503 (the endpoints drop it) and answers every review sent
    // meanwhile; only after the delay does it stop accepting and drain.
    let state = tempfile::tempdir().unwrap();
    let mut child = serve_with(&state, &["--shutdown-delay", "3s"], Stdio::null);
    let bound = ready(&state, &mut child);
    let readyz = format!("http://{}/readyz", bound.health_listen);
    assert_eq!(curl_status(&[&readyz]), (Some(0), 200));
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(2);
    while curl_status(&[&readyz]).1 != 503 {
        assert!(Instant::now() < deadline, "/readyz still ready after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ca = state.path().join("dev-tls").join("ca.pem");
    let sample = state.path().join("sample-review.json");
    std::fs::write(&sample, serde_json::to_vec(&sample_service_review()).unwrap()).unwrap();
    let url = format!("https://127.0.0.1:{}/mutate/headless-service", bound.listen.port());
    let review = curl_status(&[
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", sample.display()),
        &url,
    ]);
    assert_eq!(review, (Some(0), 200), "a review sent during the delay is answered");
    assert!(child.try_wait().unwrap().is_none(), "still running within the delay");
    let status = terminate_wait(&mut child);
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "exited {:?} after SIGTERM, before the delay",
        signalled.elapsed()
    );
}

/// A CREATE review of a Service the built-in makes headless.
fn sample_service_review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0f0e7a4c-4a43-4b8e-9f3c-6f1f5d1b2c3d",
            "kind": {"group": "", "version": "v1", "kind": "Service"},
            "resource": {"group": "", "version": "v1", "resource": "services"},
            "name": "web-headless",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "e2e"},
            "object": {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web-headless", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
            },
            "dryRun": false
        }
    })
}
