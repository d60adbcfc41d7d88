//! `wasmhook manifests` and `wasmhook certs`, run in-process through the same
//! entry point as the binary: the webhook configurations for the example
//! policy set, read back as k8s-openapi types, and the generated certificates
//! served by a real wasmhook server and verified in real TLS handshakes under
//! every name the API server may use for the Service.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use wasmhook::server::registry::PolicySource;
use wasmhook::server::{RunningServer, ServerConfig};
use wasmhook::tls::TlsFiles;
use wasmhook_policy::k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use wasmhook_policy::k8s_openapi::api::core::v1::Secret;
use wasmhook_tests::fixtures_dir;

use crate::harness::install_crypto_provider;

/// What a run printed and returned.
struct Run {
    status: u8,
    stdout: String,
    stderr: String,
}

fn wasmhook(args: &[&str]) -> Run {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let status = wasmhook::cli::run(["wasmhook"].iter().chain(args).copied(), &mut stdout, &mut stderr);
    Run {
        status,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn example_set() -> String {
    fixtures_dir().join("policy-sets/example.yaml").display().to_string()
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `wasmhook certs` for `wasmhook` in `wasmhook-system` into a fresh directory.
fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let run = wasmhook(&["certs", "--out", path(dir.path()), "--days", "2"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    dir
}

/// The YAML documents of a stream, as JSON values.
fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).unwrap_or_else(|error| panic!("{error}\n{yaml}"))
}

const WEBHOOK_FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "tls.crt",
    "tls.key",
    "cabundle.b64",
    "secret.yaml",
];

#[test]
fn manifests_register_the_example_set_with_the_generated_ca() {
    let dir = certs();
    let ca = dir.path().join("ca.pem");
    let run = wasmhook(&["manifests", "--config", &example_set(), "--ca-bundle", path(&ca)]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let documents = parse_documents(&run.stdout);
    assert_eq!(documents.len(), 2, "{}", run.stdout);

    let mutating: MutatingWebhookConfiguration = serde_json::from_value(documents[0].clone()).unwrap();
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(documents[1].clone()).unwrap();
    assert_eq!(documents[0]["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(documents[0]["kind"], "MutatingWebhookConfiguration");
    assert_eq!(documents[1]["kind"], "ValidatingWebhookConfiguration");
    assert_eq!(mutating.metadata.name.as_deref(), Some("wasmhook"));
    assert_eq!(validating.metadata.name.as_deref(), Some("wasmhook"));

    let ca_pem = std::fs::read(&ca).unwrap();
    let [hook] = mutating.webhooks.as_deref().unwrap() else {
        panic!("one mutating webhook: {}", run.stdout)
    };
    assert_eq!(hook.name, "headless-service.wasmhook.dev");
    let service = hook.client_config.service.as_ref().unwrap();
    assert_eq!(
        (service.namespace.as_str(), service.name.as_str(), service.port),
        ("wasmhook-system", "wasmhook", Some(443))
    );
    assert_eq!(service.path.as_deref(), Some("/mutate/headless-service"));
    assert_eq!(hook.client_config.ca_bundle.as_ref().unwrap().0, ca_pem);
    assert_eq!(
        hook.timeout_seconds,
        Some(3),
        "a 2 s policy plus the server's 200 ms answer margin"
    );
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(hook.side_effects, "None");
    let expressions = hook
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .as_deref()
        .unwrap();
    let described: Vec<_> = expressions
        .iter()
        .map(|requirement| {
            (
                requirement.key.as_str(),
                requirement.operator.as_str(),
                requirement.values.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            (
                "kubernetes.io/metadata.name",
                "NotIn",
                vec!["kube-system".to_owned(), "kube-public".to_owned()]
            ),
            (
                "kubernetes.io/metadata.name",
                "NotIn",
                vec!["wasmhook-system".to_owned(), "kube-system".to_owned()]
            ),
            ("wasmhook.dev/ignore", "DoesNotExist", vec![]),
        ],
        "the example's own selector first, then wasmhook's exclusions"
    );

    let [hook] = validating.webhooks.as_deref().unwrap() else {
        panic!("one validating webhook: {}", run.stdout)
    };
    assert_eq!(hook.name, "statefulset-service-name.wasmhook.dev");
    assert_eq!(
        hook.client_config.service.as_ref().unwrap().path.as_deref(),
        Some("/validate/statefulset-service-name")
    );
    assert_eq!(hook.client_config.ca_bundle.as_ref().unwrap().0, ca_pem);
    assert_eq!(hook.timeout_seconds, Some(1), "500ms rounds up to 1s");
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));

    // -o writes the same stream to a file, and nothing to stdout.
    let output = dir.path().join("webhooks.yaml");
    let to_file = wasmhook(&[
        "manifests",
        "--config",
        &example_set(),
        "--ca-bundle",
        path(&ca),
        "-o",
        path(&output),
    ]);
    assert_eq!(to_file.status, 0, "{}", to_file.stderr);
    assert!(to_file.stdout.is_empty(), "{}", to_file.stdout);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), run.stdout);
}

#[test]
fn manifests_with_cert_manager_a_url_and_other_names() {
    let run = wasmhook(&[
        "manifests",
        "--config",
        &example_set(),
        "--namespace",
        "admission",
        "--service",
        "policy-hook",
        "--cert-manager",
        "admission/policy-hook-serving",
        "--url",
        "https://hook.example.com:8443",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let documents = parse_documents(&run.stdout);
    for document in &documents {
        assert_eq!(document["metadata"]["name"], "policy-hook");
        assert_eq!(
            document["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "admission/policy-hook-serving"
        );
        let webhook = &document["webhooks"][0];
        assert_eq!(webhook["clientConfig"].get("caBundle"), None);
        assert_eq!(webhook["clientConfig"].get("service"), None);
        let expressions = webhook["namespaceSelector"]["matchExpressions"].as_array().unwrap();
        assert!(
            expressions.contains(&serde_json::json!({
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["admission", "kube-system"],
            })),
            "{expressions:?}"
        );
    }
    assert_eq!(
        documents[0]["webhooks"][0]["clientConfig"]["url"],
        "https://hook.example.com:8443/mutate/headless-service"
    );
    assert_eq!(
        documents[1]["webhooks"][0]["clientConfig"]["url"],
        "https://hook.example.com:8443/validate/statefulset-service-name"
    );

    // A URL alone relies on the API server's public trust roots.
    let public = wasmhook(&["manifests", "--url", "https://hook.example.com"]);
    assert_eq!(public.status, 0, "{}", public.stderr);
    assert!(
        public
            .stdout
            .contains("from the built-in policies.\n# No policy has mode validate"),
        "{}",
        public.stdout
    );
    let public_documents = parse_documents(&public.stdout);
    assert_eq!(public_documents.len(), 1);
    assert_eq!(public_documents[0]["webhooks"].as_array().unwrap().len(), 2);
}

#[test]
fn manifests_errors_exit_2_and_say_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let bad_set = dir.path().join("policies.yaml");
    std::fs::write(
        &bad_set,
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n  - name: web\n    module: \
         builtin:headless-service\n    timeout: 40s\n",
    )
    .unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let example = example_set();

    let cases: [(Vec<&str>, &str); 7] = [
        (
            vec!["--config", &example],
            "pass --ca-bundle FILE (e.g. ca.pem from `wasmhook certs`), --cert-manager NAMESPACE/CERTIFICATE",
        ),
        (
            vec!["--config", path(&bad_set), "--cert-manager", "ns/cert"],
            "policies.yaml: policy \"web\" (policies[0]): field timeout:",
        ),
        (
            vec!["--config", &example, "--ca-bundle", path(&not_pem)],
            "--ca-bundle: CA bundle ",
        ),
        (
            vec!["--config", &example, "--ca-bundle", "/nowhere/ca.pem"],
            "--ca-bundle: cannot read /nowhere/ca.pem",
        ),
        (
            vec!["--config", &example, "--cert-manager", "just-a-name"],
            "--cert-manager: cert-manager certificate \"just-a-name\": expected <namespace>/<certificate name>",
        ),
        (
            vec!["--config", &example, "--url", "http://hook.example.com"],
            "--url: webhook URL \"http://hook.example.com\": the API server calls webhooks over HTTPS only",
        ),
        (
            vec!["--cert-manager", "ns/cert", "--ca-bundle", path(&not_pem)],
            "cannot be used with",
        ),
    ];
    for (args, expected) in cases {
        let run = wasmhook(&[&["manifests"][..], &args].concat());
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}

/// `--backstop` prints the ValidatingAdmissionPolicies of the policy set —
/// without the policy set, of the built-ins with their defaults — in the
/// version asked for, named after `--service`.
#[test]
fn manifests_backstop_prints_a_policy_and_binding_per_built_in_in_the_version_asked() {
    for (args, version) in [
        (vec![], "admissionregistration.k8s.io/v1"),
        (
            vec!["--backstop-api-version", "v1beta1"],
            "admissionregistration.k8s.io/v1beta1",
        ),
    ] {
        let run = wasmhook(&[&["manifests", "--backstop", "--service", "hook"][..], &args].concat());
        assert_eq!(run.status, 0, "{}", run.stderr);
        assert!(
            run.stdout.starts_with("# The built-in policies' backstop"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("from the built-in policies:"), "{}", run.stdout);
        let documents = parse_documents(&run.stdout);
        let objects: Vec<(&str, &str, &str)> = documents
            .iter()
            .map(|document| {
                (
                    document["apiVersion"].as_str().unwrap(),
                    document["kind"].as_str().unwrap(),
                    document["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            objects,
            [
                (version, "ValidatingAdmissionPolicy", "hook-headless-service"),
                (version, "ValidatingAdmissionPolicyBinding", "hook-headless-service"),
                (version, "ValidatingAdmissionPolicy", "hook-statefulset-service-name"),
                (
                    version,
                    "ValidatingAdmissionPolicyBinding",
                    "hook-statefulset-service-name"
                ),
            ]
        );
    }

    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec!["--backstop-api-version", "v1beta1"],
            "the following required arguments were not provided",
        ),
        (vec!["--backstop", "--rbac"], "cannot be used with"),
        (
            vec!["--backstop", "--namespace", "Wasmhook"],
            "--namespace: namespace \"Wasmhook\" is not a valid name",
        ),
    ];
    for (args, expected) in cases {
        let run = wasmhook(&[&["manifests"][..], &args].concat());
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}

#[test]
fn certs_writes_private_files_privately_and_never_overwrites_without_force() {
    let dir = certs();
    for name in WEBHOOK_FILES {
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        let private = matches!(name, "ca-key.pem" | "tls.key" | "secret.yaml");
        assert_eq!(mode & 0o077 == 0, private, "{name}: {mode:o}");
    }
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let bundle = std::fs::read_to_string(dir.path().join("cabundle.b64")).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(bundle.trim_end())
            .unwrap(),
        ca_pem.as_bytes()
    );
    let secret: Secret = serde_json::from_value(
        parse_documents(&std::fs::read_to_string(dir.path().join("secret.yaml")).unwrap())[0].clone(),
    )
    .unwrap();
    assert_eq!(secret.metadata.name.as_deref(), Some("wasmhook-tls"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("wasmhook-system"));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    assert_eq!(data["ca.crt"].0, ca_pem.as_bytes());
    assert_eq!(data["tls.crt"].0, std::fs::read(dir.path().join("tls.crt")).unwrap());
    assert_eq!(data["tls.key"].0, std::fs::read(dir.path().join("tls.key")).unwrap());

    let again = wasmhook(&["certs", "--out", path(dir.path())]);
    assert_eq!(again.status, 2, "{}", again.stdout);
    assert!(again.stderr.contains("refusing to overwrite"), "{}", again.stderr);
    assert!(again.stderr.contains("pass --force"), "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        ca_pem,
        "untouched"
    );

    // A key file loosened by hand is replaced with a private one.
    std::fs::set_permissions(dir.path().join("tls.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let forced = wasmhook(&["certs", "--out", path(dir.path()), "--force"]);
    assert_eq!(forced.status, 0, "{}", forced.stderr);
    assert_ne!(std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(), ca_pem);
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    for name in WEBHOOK_FILES {
        assert!(forced.stdout.contains(name), "{name}: {}", forced.stdout);
    }
    assert!(
        forced.stdout.contains(&format!(
            "--ca-bundle {}/ca.pem | kubectl apply -f -",
            dir.path().display()
        )),
        "{}",
        forced.stdout
    );

    let days = wasmhook(&["certs", "--out", path(dir.path()), "--force", "--days", "0"]);
    assert_eq!(days.status, 2);
    assert!(days.stderr.contains("--days: "), "{}", days.stderr);
    let invalid = wasmhook(&["certs", "--out", path(dir.path()), "--namespace", "Not_Valid"]);
    assert_eq!(invalid.status, 2);
    assert!(
        invalid
            .stderr
            .contains("--namespace: namespace \"Not_Valid\" is not a valid name"),
        "{}",
        invalid.stderr
    );
}

/// Connects to `addr` trusting only `ca`, with `name` as SNI and as the name
/// the certificate must be valid for.
async fn handshake(addr: std::net::SocketAddr, ca: &CertificateDer<'static>, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let connect = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(error)) => Err(error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
            .unwrap_or_else(|| panic!("{name}: not a TLS error: {error}"))),
        Err(_) => panic!("{name}: the handshake timed out"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_certificate_is_served_and_verifies_for_every_service_name() {
    install_crypto_provider();
    let dir = certs();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let tls = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    let mut config = ServerConfig::new(loopback, loopback, tls, PolicySource::BuiltinDefault);
    config.policy_reload_interval = None;
    let server = RunningServer::start(config).await.expect("the server starts");

    let ca = CertificateDer::from_pem_file(dir.path().join("ca.pem")).unwrap();
    for name in [
        "wasmhook.wasmhook-system.svc",
        "wasmhook",
        "wasmhook.wasmhook-system",
        "wasmhook.wasmhook-system.svc.cluster.local",
    ] {
        handshake(server.addr, &ca, name)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }

    for name in ["wasmhook.other-namespace.svc", "localhost", "other.wasmhook-system.svc"] {
        let error = handshake(server.addr, &ca, name).await.expect_err(name);
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{name}: {error:?}"
        );
    }

    // Another CA does not vouch for it: the caBundle must be this ca.pem.
    // (Another `certs` run names its CA the same, so the verifier finds it
    // by name and then rejects the signature.)
    let other = certs();
    let other_ca: CertificateDer<'static> = CertificateDer::from_pem_file(other.path().join("ca.pem")).unwrap();
    let error = handshake(server.addr, &other_ca, "wasmhook.wasmhook-system.svc")
        .await
        .expect_err("another CA");
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature | rustls::CertificateError::UnknownIssuer
            )
        ),
        "{error:?}"
    );

    server.shutdown().await;
}
