//! `make image-push REGISTRY=host:port` against a real registry on loopback (TLS with a CA
//! made here, basic auth): the image lands under `<REGISTRY>/wasmhook/wasmhook:<version>`
//! and skopeo — a client independent of podman — reads back the labels, user, entrypoint
//! and ports `make image` gave it.

use std::process::Command;

use serde_json::Value;
use wasmhook_tests::registry::TestRegistry;

use super::{podman, workspace_root};

/// The image `make image` built: `IMAGE` (the Makefile passes it), else the default.
fn image() -> String {
    std::env::var("IMAGE").unwrap_or_else(|_| "ghcr.io/wasmhook/wasmhook:0.1.0".to_owned())
}

#[test]
fn make_image_push_puts_the_built_image_in_the_registry() {
    let registry = TestRegistry::start().unwrap_or_else(|error| panic!("cannot start the test registry: {error}"));
    let image = image();
    let local = podman(&["image", "inspect", "--format", "{{json .Config.Labels}}", &image]);
    assert!(
        local.status.success(),
        "no local image {image} (make image first): {}",
        String::from_utf8_lossy(&local.stderr)
    );
    let local_labels: Value = serde_json::from_slice(&local.stdout).expect("labels as JSON");

    let flags = format!(
        "--cert-dir {} --authfile {}",
        registry.cert_dir().display(),
        registry.docker_config().display()
    );
    let make = std::env::var_os("MAKE").unwrap_or_else(|| "make".into());
    let output = Command::new(make)
        .current_dir(workspace_root())
        .args(["--no-print-directory", "image-push"])
        .arg(format!("REGISTRY={}", registry.host()))
        .arg(format!("IMAGE={image}"))
        .arg(format!("PUSH_FLAGS={flags}"))
        .env_remove("MAKEFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("make runs");
    assert!(
        output.status.success(),
        "make image-push: {}{}\nregistry log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        registry.log_tail()
    );

    let version = env!("CARGO_PKG_VERSION");
    let pushed = format!("wasmhook/wasmhook:{version}");
    let config = registry
        .skopeo_inspect_config(&pushed)
        .unwrap_or_else(|error| panic!("skopeo inspect {pushed}: {error}"));
    let config = &config["config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/wasmhook"]));
    let ports: Vec<&String> = config["ExposedPorts"].as_object().expect("ports").keys().collect();
    assert_eq!(ports, ["8443/tcp", "9090/tcp"]);
    let labels = &config["Labels"];
    assert_eq!(labels, &local_labels, "the labels make image gave it");
    assert_eq!(labels["org.opencontainers.image.version"], version);
    assert_eq!(labels["org.opencontainers.image.title"], "wasmhook");
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/wasmhook/wasmhook"
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .expect("a revision");
    // The commit, marked `-dirty` when the working tree had changes.
    let commit = revision.strip_suffix("-dirty").unwrap_or(revision);
    assert!(
        commit.len() == 40 && commit.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "revision {revision:?} is not a git commit"
    );
    // Two layers, one per COPY of deploy/Containerfile (the binary, the CA bundle): FROM
    // scratch, nothing else.
    let manifest = registry.skopeo_inspect_raw(&pushed).expect("the manifest");
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(2), "{manifest}");
}
