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

// The soak's port picker (a file of the test-support crate, which this crate
// cannot depend on).
#[path = "../support/ports.rs"]
mod ports;

const BINARY: &str = env!("CARGO_BIN_EXE_wasmhook");

/// Starts `wasmhook serve` with `args`, on loopback ports chosen by the OS.
fn serve(state: &tempfile::TempDir, args: &[&str]) -> Child {
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
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wasmhook binary starts")
}

/// Sends SIGTERM and waits for the exit status (at most 30 s).
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
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

/// Reads stdout until the health address is printed; returns it.
fn health_address(child: &mut Child) -> String {
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("health and metrics: http://") {
            return rest.split('/').next().unwrap().to_owned();
        }
    }
    panic!("no health address printed");
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
    let health = health_address(&mut child);
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
        let health = ports::free_loopback_addr().unwrap().to_string();
        let mut child = Command::new(BINARY)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--no-cache",
                "--health-listen",
                &health,
            ])
            .arg("--state-dir")
            .arg(state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the wasmhook binary starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&health).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "wasmhook exited before it served");
            assert!(Instant::now() < deadline, "wasmhook never bound {health}");
            std::thread::sleep(Duration::from_millis(1));
        }
        let status = terminate(&mut child);
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}
