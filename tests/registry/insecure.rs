//! `--insecure-registry`, against a real registry that speaks plain HTTP
//! without auth: a registry named there is pushed to and pulled from in
//! plain HTTP; without it the client speaks HTTPS to the plain port and
//! says it cannot reach the registry; and naming another registry does not
//! make this one insecure. Each failure names the reference.

use std::time::Duration;

use wasmhook::oci::{OciError, PolicyReference, Registry, RegistryConfig};
use wasmhook_tests::registry::TestRegistry;

use super::digest;

/// The bound of one operation here: a refused handshake is retried with
/// back-off, and a test should not wait the default minute for it.
const TIMEOUT: &str = "10s";

/// Starts a plain-HTTP registry for one test, or fails saying how to get one.
fn start_plain_registry() -> TestRegistry {
    TestRegistry::start_plain_http().unwrap_or_else(|error| panic!("cannot start the plain-HTTP registry: {error}"))
}

/// The built-in headless-service component.
fn headless() -> &'static [u8] {
    wasmhook_policy_artifacts::builtin("headless-service")
        .unwrap()
        .component(false)
}

/// `wasmhook <args>` in process, with the registry's empty Docker config (not
/// the user's) and a short timeout: exit status, stdout, stderr.
fn wasmhook(registry: &TestRegistry, args: &[&str]) -> (u8, String, String) {
    let config = registry.docker_config().display().to_string();
    let options = ["--registry-config", &config, "--registry-timeout", TIMEOUT];
    let args = std::iter::once(&"wasmhook").chain(args).chain(&options);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = wasmhook::cli::run(args.map(|arg| (*arg).to_owned()), &mut out, &mut err);
    (status, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

/// Pushes the component to `reference` in plain HTTP; returns the manifest
/// digest `push` reports.
fn push(registry: &TestRegistry, reference: &str) -> String {
    let file = registry.dir().join("headless.wasm");
    std::fs::write(&file, headless()).unwrap();
    let file = file.display().to_string();
    let host = registry.host();
    let (status, out, err) = wasmhook(registry, &["push", &file, reference, "--insecure-registry", &host]);
    assert_eq!(status, 0, "push failed: {err}\n{}", registry.log_tail());
    out.lines()
        .find_map(|line| line.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("push names the digest: {out}"))
        .to_owned()
}

/// A pull of `reference` by the library, in plain HTTP to `insecure` only.
fn pull(reference: &str, insecure: Vec<String>) -> Result<Vec<u8>, OciError> {
    let registry = Registry::new(RegistryConfig {
        insecure,
        timeout: Some(Duration::from_secs(10)),
        ..RegistryConfig::default()
    });
    registry
        .pull(&PolicyReference::parse(reference).unwrap(), None)
        .map(|pulled| pulled.wasm)
}

#[test]
fn push_and_pull_speak_plain_http_to_an_insecure_registry() {
    let registry = start_plain_registry();
    let reference = format!("oci://{}/policies/headless:v1", registry.host());
    let manifest_digest = push(&registry, &reference);

    // What reached the registry, as skopeo reads it.
    let manifest = registry.skopeo_inspect_raw("policies/headless:v1").unwrap();
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["digest"], digest(headless()));
    assert_eq!(
        registry
            .skopeo_inspect_raw(&format!("policies/headless@{manifest_digest}"))
            .unwrap(),
        manifest
    );

    let output = registry.dir().join("pulled.wasm");
    let output = output.display().to_string();
    let host = registry.host();
    let (status, out, err) = wasmhook(
        &registry,
        &["pull", &reference, "-o", &output, "--insecure-registry", &host],
    );
    assert_eq!(status, 0, "pull failed: {err}\n{}", registry.log_tail());
    assert!(out.contains(&manifest_digest), "{out}");
    assert_eq!(std::fs::read(&output).unwrap(), headless());
}

#[test]
fn without_insecure_registry_the_pull_speaks_https_and_cannot_reach_it() {
    let registry = start_plain_registry();
    let reference = format!("oci://{}/policies/headless:v1", registry.host());
    push(&registry, &reference);

    let output = registry.dir().join("pulled.wasm");
    let output_arg = output.display().to_string();
    let (status, out, err) = wasmhook(&registry, &["pull", &reference, "-o", &output_arg]);
    assert_eq!(status, 1, "out: {out}\nerr: {err}");
    assert!(
        err.contains(&format!("{reference}: cannot reach the registry")),
        "names the reference and why: {err}"
    );
    let https = format!("https://{}/v2/", registry.host());
    assert!(err.contains(&https), "spoke HTTPS: {err}");
    assert!(!output.exists(), "nothing written");
}

#[test]
fn only_the_registries_named_are_spoken_to_in_plain_http() {
    let registry = start_plain_registry();
    let reference = format!("oci://{}/policies/headless:v1", registry.host());
    push(&registry, &reference);

    let other_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let https = format!("https://{}/v2/", registry.host());
    // Another port on the same address, and the same port by another name.
    for other in [
        format!("127.0.0.1:{other_port}"),
        format!("localhost:{}", registry.port()),
    ] {
        let error = pull(&reference, vec![other.clone()]).expect_err("this registry is not insecure");
        assert!(
            matches!(error, OciError::Unreachable { .. }),
            "insecure: [{other}]: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{reference}: cannot reach the registry")),
            "insecure: [{other}]: {message}"
        );
        assert!(message.contains(&https), "spoke HTTPS: {message}");
    }

    // The same client naming this registry (among others) reaches it.
    let wasm = pull(&reference, vec![format!("127.0.0.1:{other_port}"), registry.host()]).unwrap();
    assert_eq!(digest(&wasm), digest(headless()));
}
