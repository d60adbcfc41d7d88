//! Policies from a real registry, end to end: `wasmhook push` writes what
//! skopeo reads as a CNCF Wasm artifact; the server pulls by tag and by
//! digest, starts from its cache with the registry down, picks up a moved
//! tag on reload, and refuses wrong credentials, wrong pins, artifacts that
//! are not policies and missing or wrong signatures — each as a load error
//! that names the policy and the reference.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use wasmhook::oci::RegistryConfig;
use wasmhook::server::registry::PolicySource;
use wasmhook::server::{RunningServer, ServerConfig};
use wasmhook_tests::certs::{TestCerts, install_crypto_provider};
use wasmhook_tests::registry::{PASSWORD, TestRegistry, USER};

use super::{digest, start_registry};

/// A review headless-service mutates (it sets `clusterIP: None`).
const SERVICE_REVIEW: &str = "crafted-mutating-create-service-db-headless.json";

/// `wasmhook <args>` in process, off the async runtime (the registry client
/// runs a runtime of its own): exit status, stdout, stderr.
async fn wasmhook(args: Vec<String>) -> (u8, String, String) {
    tokio::task::spawn_blocking(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = wasmhook::cli::run(std::iter::once("wasmhook".to_owned()).chain(args), &mut out, &mut err);
        (status, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    })
    .await
    .unwrap()
}

/// The flags that reach the test registry.
fn registry_flags(registry: &TestRegistry) -> Vec<String> {
    vec![
        "--registry-config".into(),
        registry.docker_config().display().to_string(),
        "--registry-ca".into(),
        registry.ca_file().display().to_string(),
    ]
}

/// Writes `wasm` to a file and pushes it to `reference` (a tag); returns the
/// manifest digest `push` reports.
async fn push(registry: &TestRegistry, wasm: &[u8], reference: &str, extra: &[&str]) -> String {
    let file = registry
        .dir()
        .join(format!("push-{}.wasm", digest(wasm).trim_start_matches("sha256:")));
    std::fs::write(&file, wasm).unwrap();
    let mut args = vec!["push".to_owned(), file.display().to_string(), reference.to_owned()];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args.extend(registry_flags(registry));
    let (status, out, err) = wasmhook(args).await;
    assert_eq!(status, 0, "push failed: {err}\n{}", registry.log_tail());
    out.lines()
        .find_map(|line| line.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("push names the digest: {out}"))
        .to_owned()
}

/// Signs `reference` with the private key `key`.
async fn sign(registry: &TestRegistry, reference: &str, key: &Path) {
    let mut args = vec![
        "sign".to_owned(),
        reference.to_owned(),
        "--key".to_owned(),
        key.display().to_string(),
    ];
    args.extend(registry_flags(registry));
    let (status, out, err) = wasmhook(args).await;
    assert_eq!(status, 0, "sign failed: {err}");
    assert!(out.starts_with("signed oci://"), "{out}");
}

/// The built-in headless-service, in both builds: two valid, different
/// components of the same policy.
fn headless(with_context: bool) -> &'static [u8] {
    wasmhook_policy_artifacts::builtin("headless-service")
        .unwrap()
        .component(with_context)
}

/// A policy-set entry for a Service policy from `module`.
fn entry(name: &str, module: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    module: \"{module}\"\n    rules: [{{operations: [CREATE, UPDATE], apiGroups: [\"\"], \
         apiVersions: [v1], resources: [services]}}]\n{extra}"
    )
}

/// A server for `entries`, pulling through the test registry with `cache`.
struct Served {
    server: RunningServer,
    certs: TestCerts,
    _dir: tempfile::TempDir,
}

async fn serve(
    registry: &TestRegistry,
    entries: &[String],
    cache: &Path,
    docker_config: PathBuf,
) -> Result<Served, String> {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let policy_set = dir.path().join("policies.yaml");
    std::fs::write(
        &policy_set,
        format!(
            "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n{}",
            entries.concat()
        ),
    )
    .unwrap();
    // Key files named relative to the policy set live in the registry's dir.
    for entry in std::fs::read_dir(registry.dir()).unwrap().flatten() {
        if entry.path().extension().is_some_and(|extension| extension == "pub") {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let certs = TestCerts::new();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = ServerConfig::new(loopback, loopback, certs.files(), PolicySource::File(policy_set));
    config.policy_reload_interval = None;
    config.engine.cache_dir = Some(cache.join("compiled"));
    config.registry = RegistryConfig {
        docker_config: Some(docker_config),
        ca_bundle: Some(registry.ca_file()),
        timeout: Some(Duration::from_secs(20)),
        cache_dir: Some(cache.to_owned()),
        ..RegistryConfig::default()
    };
    let server = RunningServer::start(config).await.map_err(|error| error.to_string())?;
    Ok(Served {
        server,
        certs,
        _dir: dir,
    })
}

impl Served {
    /// Posts `fixture` to `/mutate/<policy>`: the AdmissionReview response.
    async fn review(&self, policy: &str, fixture: &str) -> Value {
        let body = std::fs::read(wasmhook_tests::reviews_dir().join(fixture)).unwrap();
        let response = self
            .certs
            .http1_client()
            .post(format!("https://localhost:{}/mutate/{policy}", self.server.addr.port()))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["response"].clone()
    }

    /// The sha256 of the module `/readyz` says `policy` serves.
    async fn serving(&self, policy: &str) -> String {
        let readyz: Value = reqwest::get(format!("http://{}/readyz", self.server.health_addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        readyz["policies"][policy]["sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("{policy} in {readyz}"))
            .to_owned()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest(bytes).trim_start_matches("sha256:").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_writes_a_cncf_wasm_artifact_that_skopeo_reads() {
    let registry = start_registry();
    let reference = format!("oci://{}/policies/headless:1.2.0", registry.host());
    let digest = push(
        &registry,
        headless(false),
        &reference,
        &[
            "--mode",
            "mutate",
            "--source",
            "https://github.com/wasmhook/wasmhook",
            "--rules",
            r#"[{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["services"]}]"#,
            "--annotation",
            "com.example.team=platform",
        ],
    )
    .await;
    let manifest = registry.skopeo_inspect_raw("policies/headless:1.2.0").unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(layers[0]["digest"], super::digest(headless(false)));
    let annotations = &manifest["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.title"],
        format!("push-{}", sha256_hex(headless(false)))
    );
    assert_eq!(annotations["org.opencontainers.image.version"], "1.2.0");
    assert_eq!(
        annotations["org.opencontainers.image.source"],
        "https://github.com/wasmhook/wasmhook"
    );
    assert_eq!(annotations["dev.wasmhook.policy.mode"], "mutate");
    let rules: Value = serde_json::from_str(annotations["dev.wasmhook.policy.rules"].as_str().unwrap()).unwrap();
    assert_eq!(rules[0]["resources"][0], "services");
    assert_eq!(annotations["com.example.team"], "platform");
    assert!(
        annotations["org.opencontainers.image.created"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let config = registry.skopeo_inspect_config("policies/headless:1.2.0").unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], layers[0]["digest"]);
    // skopeo reports the manifest digest push printed.
    let raw = registry
        .skopeo_inspect_raw(&format!("policies/headless@{digest}"))
        .unwrap();
    assert_eq!(raw, manifest);

    // pull writes the component back, byte for byte.
    let output = registry.dir().join("pulled.wasm");
    let mut args = vec![
        "pull".to_owned(),
        reference.clone(),
        "-o".to_owned(),
        output.display().to_string(),
    ];
    args.extend(registry_flags(&registry));
    let (status, out, err) = wasmhook(args).await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains(&digest), "{out}");
    assert_eq!(std::fs::read(&output).unwrap(), headless(false));

    // eval runs it from the registry.
    let review = wasmhook_tests::reviews_dir().join(SERVICE_REVIEW);
    let mut args = vec![
        "eval".to_owned(),
        "--policy".to_owned(),
        format!("oci://{}/policies/headless@{digest}", registry.host()),
        "--review".to_owned(),
        review.display().to_string(),
        "--no-cache".to_owned(),
        "--output".to_owned(),
        "json".to_owned(),
    ];
    args.extend(registry_flags(&registry));
    let (status, out, err) = wasmhook(args).await;
    assert_eq!(status, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert!(answer["response"]["patch"].is_string(), "{answer}");

    // A core module is refused before anything is pushed.
    let core = registry.dir().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let mut args = vec!["push".to_owned(), core.display().to_string(), reference];
    args.extend(registry_flags(&registry));
    let (status, _, err) = wasmhook(args).await;
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("core WebAssembly module"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pulls_by_tag_and_digest_and_restarts_from_its_cache_offline() {
    let registry = start_registry();
    let tagged = format!("oci://{}/policies/headless:v1", registry.host());
    let digest = push(&registry, headless(false), &tagged, &[]).await;
    let pinned = format!("oci://{}/policies/headless@{digest}", registry.host());
    let entries = [entry("by-tag", &tagged, ""), entry("by-digest", &pinned, "")];
    let cache = tempfile::tempdir().unwrap();

    let served = serve(&registry, &entries, cache.path(), registry.docker_config())
        .await
        .unwrap();
    for policy in ["by-tag", "by-digest"] {
        let response = served.review(policy, SERVICE_REVIEW).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(response["patch"].is_string(), "{policy} mutates: {response}");
        assert_eq!(served.serving(policy).await, sha256_hex(headless(false)));
    }
    // The tag asked the registry; the digest, pulled just before, came from the cache.
    let pulls = |served: &Served| served.server.metrics_text();
    let counted = |text: &str, reference: &str, result: &str| {
        text.contains(&format!(
            "wasmhook_registry_pulls_total{{reference=\"{reference}\",result=\"{result}\"}} 1"
        ))
    };
    let text = pulls(&served);
    assert!(counted(&text, &tagged, "registry"), "{text}");
    assert!(counted(&text, &pinned, "cache"), "{text}");
    served.server.shutdown().await;

    // The registry goes away: the digest is in the cache, and the tag falls
    // back to the digest it last resolved to.
    registry.stop();
    let served = serve(&registry, &entries, cache.path(), registry.docker_config())
        .await
        .unwrap();
    for policy in ["by-tag", "by-digest"] {
        let response = served.review(policy, SERVICE_REVIEW).await;
        assert!(response["patch"].is_string(), "{policy} from the cache: {response}");
    }
    let text = pulls(&served);
    assert!(counted(&text, &tagged, "stale_tag"), "the tag may have moved: {text}");
    assert!(counted(&text, &pinned, "cache"), "{text}");
    served.server.shutdown().await;

    // Without the cache, the same start fails, naming the policy and why.
    let empty = tempfile::tempdir().unwrap();
    let error = serve(&registry, &entries, empty.path(), registry.docker_config())
        .await
        .err()
        .expect("no registry and no cache: the policy cannot load");
    assert!(error.contains("\"by-tag\""), "{error}");
    assert!(
        error.contains(&tagged) && error.contains("cannot reach the registry"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_load_errors_that_name_the_policy_and_the_reference() {
    let registry = start_registry();
    let tagged = format!("oci://{}/policies/headless:v1", registry.host());
    push(&registry, headless(false), &tagged, &[]).await;
    let cache = tempfile::tempdir().unwrap();
    let start = |entries: Vec<String>, config: PathBuf| {
        let registry = &registry;
        let cache = cache.path().to_owned();
        async move {
            serve(registry, &entries, &cache, config)
                .await
                .err()
                .expect("the policy set is refused")
        }
    };

    // Wrong credentials.
    let wrong = registry.docker_config_with(USER, "not-the-password").unwrap();
    let error = start(vec![entry("web", &tagged, "")], wrong.clone()).await;
    assert!(error.contains("policy \"web\""), "{error}");
    assert!(error.contains(&tagged) && error.contains("refused access"), "{error}");
    assert!(
        error.contains(&wrong.display().to_string()),
        "says where the credentials came from: {error}"
    );

    // No such registry.
    let nowhere = "oci://no-such-registry.invalid/policies/headless:v1";
    let error = start(vec![entry("web", nowhere, "")], registry.docker_config()).await;
    assert!(
        error.contains(nowhere) && error.contains("cannot reach the registry"),
        "{error}"
    );

    // No such tag, no such digest.
    let missing = format!("oci://{}/policies/headless:v9", registry.host());
    let error = start(vec![entry("web", &missing, "")], registry.docker_config()).await;
    assert!(error.contains(&missing) && error.contains("not found"), "{error}");
    let unknown = format!("oci://{}/policies/headless@sha256:{}", registry.host(), "0".repeat(64));
    let error = start(vec![entry("web", &unknown, "")], registry.docker_config()).await;
    assert!(error.contains("not found"), "{error}");

    // A pin the pulled module does not match.
    let pin = format!("    sha256: \"{}\"\n", "f".repeat(64));
    let error = start(vec![entry("web", &tagged, &pin)], registry.docker_config()).await;
    assert!(
        error.contains("sha256 mismatch") && error.contains("pulled module"),
        "{error}"
    );

    // A registry that serves other bytes than the digest it announces (its
    // stored blob overwritten): the pull checks what it received.
    let corrupt = format!("oci://{}/policies/corrupt:v1", registry.host());
    push(&registry, headless(true), &corrupt, &[]).await;
    let hex = sha256_hex(headless(true));
    let blob = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut tampered = headless(true).to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&blob, &tampered).unwrap();
    let error = start(vec![entry("web", &corrupt, "")], registry.docker_config()).await;
    assert!(
        error.contains("policy \"web\"") && error.contains("digest mismatch"),
        "{error}"
    );
    assert!(
        error.contains(&format!("sha256:{hex}")),
        "names the expected digest: {error}"
    );

    // An artifact that is not a policy: Kubewarden's layout.
    super::harness::Artifact::with_media_types(
        "application/vnd.wasm.config.v1+json",
        "application/vnd.wasm.content.layer.v1+wasm",
        b"\0asm\x01\0\0\0",
    )
    .push(&registry, "policies/kubewarden", "v1")
    .await;
    let kubewarden = format!("oci://{}/policies/kubewarden:v1", registry.host());
    let error = start(vec![entry("web", &kubewarden, "")], registry.docker_config()).await;
    assert!(
        error.contains("not a wasmhook policy artifact") && error.contains("Kubewarden"),
        "{error}"
    );

    // An artifact larger than the limit is refused before it is read.
    let limited = registry.dir().join("limited.wasm");
    let mut args = vec![
        "pull".to_owned(),
        tagged.clone(),
        "-o".to_owned(),
        limited.display().to_string(),
    ];
    args.extend(registry_flags(&registry));
    let (status, _, _) = wasmhook(args).await;
    assert_eq!(status, 0, "pull has no limit of its own");
    let served_limit = {
        install_crypto_provider();
        let client = wasmhook::oci::Registry::new(RegistryConfig {
            docker_config: Some(registry.docker_config()),
            ca_bundle: Some(registry.ca_file()),
            max_module_bytes: Some(1024),
            ..RegistryConfig::default()
        });
        let reference = wasmhook::oci::PolicyReference::parse(&tagged).unwrap();
        tokio::task::spawn_blocking(move || client.pull(&reference, None).map(|pulled| pulled.wasm.len()))
            .await
            .unwrap()
    };
    let error = served_limit.unwrap_err().to_string();
    assert!(error.contains("more than the limit of 1024"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_is_picked_up_on_reload() {
    let registry = start_registry();
    let tagged = format!("oci://{}/policies/headless:stable", registry.host());
    push(&registry, headless(false), &tagged, &[]).await;
    let cache = tempfile::tempdir().unwrap();
    let served = serve(
        &registry,
        &[entry("web", &tagged, "")],
        cache.path(),
        registry.docker_config(),
    )
    .await
    .unwrap();
    assert_eq!(served.serving("web").await, sha256_hex(headless(false)));

    push(&registry, headless(true), &tagged, &[]).await;
    assert_eq!(
        served.serving("web").await,
        sha256_hex(headless(false)),
        "not before a reload"
    );
    served.server.reload_policies().await;
    assert_eq!(served.serving("web").await, sha256_hex(headless(true)));
    let response = served.review("web", SERVICE_REVIEW).await;
    assert!(response["patch"].is_string(), "{response}");

    // A reload that cannot pull keeps the version being served.
    registry.stop();
    push_fails_quietly(&registry).await;
    served.server.reload_policies().await;
    assert_eq!(served.serving("web").await, sha256_hex(headless(true)));
    served.server.shutdown().await;
}

/// With the registry stopped, a push fails (sanity check of the test).
async fn push_fails_quietly(registry: &TestRegistry) {
    let file = registry.dir().join("unused.wasm");
    std::fs::write(&file, headless(false)).unwrap();
    let mut args = vec![
        "push".to_owned(),
        file.display().to_string(),
        format!("oci://{}/policies/other:v1", registry.host()),
        "--registry-timeout".to_owned(),
        "3s".to_owned(),
    ];
    args.extend(registry_flags(registry));
    let (status, _, err) = wasmhook(args).await;
    assert_eq!(status, 1, "{err}");
}

/// A P-256 key pair in the registry's directory: (private key, public key).
fn key_pair(registry: &TestRegistry, name: &str) -> (PathBuf, PathBuf) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let private = registry.dir().join(format!("{name}.key"));
    let public = registry.dir().join(format!("{name}.pub"));
    std::fs::write(&private, pair.serialize_pem()).unwrap();
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    (private, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_required_by_key_and_digest() {
    let registry = start_registry();
    let (team_key, _) = key_pair(&registry, "team");
    let (other_key, _) = key_pair(&registry, "other");
    let signed = "    signatures:\n      keys: [team.pub]\n";
    let tagged = format!("oci://{}/policies/headless:v1", registry.host());
    let digest = push(&registry, headless(false), &tagged, &[]).await;
    let cache = tempfile::tempdir().unwrap();
    let start = |module: String| {
        let registry = &registry;
        let cache = cache.path().to_owned();
        async move {
            serve(
                registry,
                &[entry("web", &module, signed)],
                &cache,
                registry.docker_config(),
            )
            .await
        }
    };

    let error = start(tagged.clone()).await.err().unwrap();
    assert!(
        error.contains("policy \"web\"") && error.contains("not signed"),
        "{error}"
    );
    assert!(error.contains(&digest), "names the digest: {error}");

    // Signed by another key.
    sign(&registry, &tagged, &other_key).await;
    let error = start(tagged.clone()).await.err().unwrap();
    assert!(
        error.contains("team.pub: signature 1: not made with this key"),
        "{error}"
    );

    // Signed by the team: served, from the registry and then offline.
    sign(&registry, &tagged, &team_key).await;
    let served = start(tagged.clone()).await.unwrap();
    assert!(served.review("web", SERVICE_REVIEW).await["patch"].is_string());
    served.server.shutdown().await;
    registry.stop();
    let pinned = format!("oci://{}/policies/headless@{digest}", registry.host());
    let served = start(pinned).await.unwrap();
    assert!(served.review("web", SERVICE_REVIEW).await["patch"].is_string());
    served.server.shutdown().await;
    registry.restart().unwrap();

    // The team's signature of one artifact copied onto another: refused.
    let other = format!("oci://{}/policies/headless:v2", registry.host());
    let other_digest = push(&registry, headless(true), &other, &[]).await;
    let signature_tag = |digest: &str| format!("{}.sig", digest.replace(':', "-"));
    let client = registry.http_client();
    let manifest = client
        .get(registry.url(&format!("/v2/policies/headless/manifests/{}", signature_tag(&digest))))
        .basic_auth(USER, Some(PASSWORD))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let copied = client
        .put(registry.url(&format!(
            "/v2/policies/headless/manifests/{}",
            signature_tag(&other_digest)
        )))
        .basic_auth(USER, Some(PASSWORD))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(copied.status(), StatusCode::CREATED);
    let error = start(other).await.err().unwrap();
    assert!(error.contains("a valid signature of another artifact"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_policy_is_pulled_and_evaluated() {
    let python =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/python-require-labels/build/policy.wasm");
    let wasm = std::fs::read(&python)
        .unwrap_or_else(|error| panic!("{}: {error} (make examples builds it)", python.display()));
    assert!(wasm.len() > 10 << 20, "tens of MB: {} bytes", wasm.len());
    let registry = start_registry();
    let tagged = format!("oci://{}/policies/require-labels-python:v1", registry.host());
    push(&registry, &wasm, &tagged, &["--mode", "validate"]).await;
    let cache = tempfile::tempdir().unwrap();
    let settings = "    settings: {labels: [app]}\n";
    let served = serve(
        &registry,
        &[entry("labels", &tagged, settings)],
        cache.path(),
        registry.docker_config(),
    )
    .await
    .unwrap();
    // The recorded Service has no `app` label.
    let response = served.review("labels", "mutating-create-service-mysql-svc.json").await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"].as_str().unwrap().contains("app"),
        "{response}"
    );
    assert_eq!(served.serving("labels").await, sha256_hex(&wasm));
    served.server.shutdown().await;
}
