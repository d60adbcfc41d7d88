//! The `cluster-context` import through the real engine: components built
//! before the interface existed load and answer exactly as before, and the
//! built-ins read a cluster given as files — the same store the server's
//! watches fill.

use std::path::{Path, PathBuf};

use wasmhook::engine::{Engine, EngineConfig, Limits};
use wasmhook::review::AdmissionInput;

/// tests/fixtures/components/: components kept as they were built.
fn component(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/components")
        .join(name)
}

fn review(name: &str) -> AdmissionInput {
    let body = std::fs::read(wasmhook_tests::reviews_dir().join(name)).unwrap();
    AdmissionInput::from_review(&body).expect("a recorded review")
}

#[test]
fn a_component_built_before_cluster_context_loads_and_answers_as_before() {
    // The Rust require-labels example as built at the commit before the
    // interface was added: it imports request-layout and nothing else.
    let wasm = std::fs::read(component("require-labels-before-cluster-context.wasm")).unwrap();
    let imports = String::from_utf8_lossy(&wasm);
    assert!(imports.contains("wasmhook:policy/request-layout@0.1.0"));
    assert!(!imports.contains("cluster-context"), "built before the interface");
    let engine = Engine::new(EngineConfig {
        max_concurrent_evaluations: 2,
        ..EngineConfig::default()
    })
    .unwrap();
    let policy = engine
        .load("require-labels", &wasm, r#"{"labels":["app"]}"#, Limits::default())
        .expect("links against the server's imports");
    let allowed = review("mutating-create-service-dry-svc.json");
    let verdict = policy.evaluate_blocking(allowed.request_text(), None).unwrap();
    assert!(verdict.allowed && verdict.mutated_object.is_none(), "{verdict:?}");
    let denied = review("mutating-create-service-mysql-svc.json");
    let verdict = policy.evaluate_blocking(denied.request_text(), None).unwrap();
    assert!(!verdict.allowed);
    assert_eq!(
        verdict.message.as_deref(),
        Some("Service handson/mysql-svc is missing the required label(s) app: set them in metadata.labels")
    );
}
