//! The overlays: cert-manager (cert-manager issues the certificate; the pods
//! still register), dev (static webhooks that call a server outside the
//! cluster), registry (a policy pulled from an OCI registry) and backstop
//! (failing open behind ValidatingAdmissionPolicies).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::json;

use super::rendered::{Rendered, deploy_dir, str_at};
use super::{NAMESPACE, REGISTER_ARGS, SERVICE, args, assert_cli_accepts, assert_webhook_fields};

#[test]
fn cert_manager_overlay_issues_the_certificate_and_keeps_registration() {
    let overlay = Rendered::of("overlays/cert-manager");
    overlay.assert_every_object_parses();
    for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
        assert!(
            overlay.objects.iter().all(|object| object["kind"] != kind),
            "{kind}: registered by the pods, as in the base"
        );
    }
    let certificate = overlay
        .find("Certificate", "wasmhook")
        .expect("the serving Certificate");
    assert_eq!(certificate["spec"]["secretName"], "wasmhook-tls");
    let names = [
        "wasmhook",
        "wasmhook.wasmhook-system",
        "wasmhook.wasmhook-system.svc",
        "wasmhook.wasmhook-system.svc.cluster.local",
    ];
    assert_eq!(certificate["spec"]["dnsNames"], json!(names));
    // Serving Certificate ← CA Issuer ← CA Certificate ← self-signed Issuer.
    let ca_issuer = str_at(certificate, "/spec/issuerRef/name");
    let ca_secret = str_at(
        overlay.find("Issuer", ca_issuer).expect("the CA Issuer"),
        "/spec/ca/secretName",
    );
    let ca = overlay
        .objects
        .iter()
        .find(|object| object["kind"] == "Certificate" && object["spec"]["secretName"] == ca_secret)
        .expect("the CA Certificate");
    assert_eq!(ca["spec"]["isCA"], true);
    let root = overlay
        .find("Issuer", str_at(ca, "/spec/issuerRef/name"))
        .expect("the bootstrap Issuer");
    assert!(root["spec"]["selfSigned"].is_object());

    // Everything else is the base's: the pods register, with the ca.crt that
    // cert-manager writes into the Secret.
    let base = Rendered::of("base");
    let mut expected = base.names();
    expected.extend(
        [
            "Issuer/wasmhook-selfsigned",
            "Certificate/wasmhook-ca",
            "Issuer/wasmhook-ca",
            "Certificate/wasmhook",
        ]
        .map(String::from),
    );
    let mut names = overlay.names();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    let overlay_args = args(&overlay.deployment());
    assert_eq!(overlay_args, args(&base.deployment()));
    assert_eq!(&overlay_args[REGISTER_ARGS.0..REGISTER_ARGS.0 + 3], REGISTER_ARGS.1);
    assert_cli_accepts(&overlay_args);
    let account: ServiceAccount = overlay.get("ServiceAccount", SERVICE);
    assert_ne!(
        account.automount_service_account_token,
        Some(false),
        "registration needs the token"
    );
}

#[test]
fn dev_overlay_calls_a_url_and_runs_nothing_in_the_cluster() {
    let overlay = Rendered::of("overlays/dev");
    overlay.assert_every_object_parses();
    let mut names = overlay.names();
    names.sort();
    assert_eq!(
        names,
        [
            "MutatingWebhookConfiguration/wasmhook",
            "ValidatingWebhookConfiguration/wasmhook"
        ]
    );
    let endpoint = std::fs::read_to_string(deploy_dir().join("overlays/dev/endpoint.env")).expect("endpoint.env");
    let setting = |key: &str| {
        endpoint
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("endpoint.env sets no {key}"))
            .to_owned()
    };
    let (host, ca_bundle) = (setting("WEBHOOK_HOST"), setting("CA_BUNDLE"));
    let set = Rendered::of("base").policy_set();
    let webhooks = overlay.webhooks();
    assert_eq!(webhooks.len(), set.policies.len());
    for (mode, webhook, reinvocation) in &webhooks {
        let policy_name = webhook
            .name
            .strip_suffix(".wasmhook.dev")
            .expect("named after its policy");
        let policy = set.get(policy_name).expect("a policy of the set");
        assert_eq!(policy.enforcement.mode.as_str(), *mode);
        assert!(webhook.client_config.service.is_none(), "{policy_name}: no Service");
        assert_eq!(
            webhook.client_config.url.as_deref(),
            Some(format!("https://{host}/{mode}/{policy_name}").as_str())
        );
        let bundle = webhook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|bytes| BASE64.encode(&bytes.0));
        assert_eq!(
            bundle.unwrap_or_default(),
            ca_bundle,
            "{policy_name}: the caBundle of endpoint.env"
        );
        assert_webhook_fields(webhook, reinvocation.as_deref(), mode, policy);
    }
}

#[test]
fn registry_overlay_mounts_the_credentials_it_names_and_pulls_its_policy() {
    let overlay = Rendered::of("overlays/registry");
    overlay.assert_every_object_parses();
    let deployment = overlay.deployment();
    let args = args(&deployment);
    let credentials = super::flag_value(&args, "--registry-config").expect("--registry-config");
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.clone())
        .unwrap();
    let mount = super::container(&deployment)
        .volume_mounts
        .unwrap_or_default()
        .into_iter()
        .find(|mount| credentials.starts_with(&format!("{}/", mount.mount_path)))
        .unwrap_or_else(|| panic!("{credentials} is on no volume"));
    let volume = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|volume| volume.name == mount.name)
        .unwrap();
    let secret = volume.secret.expect("the credentials come from a Secret");
    assert_eq!(secret.secret_name.as_deref(), Some("wasmhook-registry"));
    assert!(
        credentials.ends_with("/.dockerconfigjson"),
        "the key a dockerconfigjson Secret has"
    );
    assert_eq!(mount.read_only, Some(true));
    // The OCI cache shares the compile cache's volume.
    assert!(super::flag_value(&args, "--cache-dir").is_some());
    assert_cli_accepts(&args);

    // The policy set: one policy from the registry, by tag, with its rules.
    let text = super::rendered::str_at(overlay.only("ConfigMap"), "/data/policies.yaml");
    let set = wasmhook::config::PolicySet::from_yaml(
        "ConfigMap policies.yaml",
        text,
        &deploy_dir().join("overlays/registry"),
        wasmhook::engine::EngineConfig::default().max_memory_limit,
    )
    .unwrap_or_else(|error| panic!("the overlay's policy set is rejected: {error}"));
    let [policy] = set.policies.as_slice() else {
        panic!("one policy: {:?}", set.policies)
    };
    let wasmhook::builtin::ModuleSource::Oci(reference) = &policy.module else {
        panic!("a module from a registry: {:?}", policy.module)
    };
    assert_eq!(reference.repository(), "wasmhook/policies/require-labels-python");

    // Egress: DNS, and 443 for the registry and the API server.
    let egress = overlay
        .find("NetworkPolicy", "wasmhook-egress")
        .expect("the NetworkPolicy");
    let ports: Vec<(String, i64)> = egress["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().clone())
        .map(|port| {
            (
                port["protocol"].as_str().unwrap().to_owned(),
                port["port"].as_i64().unwrap(),
            )
        })
        .collect();
    for wanted in [("UDP", 53), ("TCP", 53), ("TCP", 443)] {
        assert!(
            ports.contains(&(wanted.0.to_owned(), wanted.1)),
            "{wanted:?} in {ports:?}"
        );
    }
}

/// The image is set in one place: the base's `images:` entry gives the tag (the
/// Deployment names the image without one), and an operator's overlay with an `images:`
/// entry for `ghcr.io/wasmhook/wasmhook` moves the Deployment and the audit CronJob to
/// another registry together (`make image-push REGISTRY=…`, deploy/README.md).
#[test]
fn one_images_entry_points_the_deployment_and_the_audit_at_another_registry() {
    let base = std::fs::read_to_string(deploy_dir().join("base/kustomization.yaml")).unwrap();
    assert!(
        base.contains("images:\n  - name: ghcr.io/wasmhook/wasmhook\n    newTag: 0.1.0\n"),
        "the base's images: entry"
    );
    let deployment = std::fs::read_to_string(deploy_dir().join("base/deployment.yaml")).unwrap();
    assert!(
        deployment.contains("image: ghcr.io/wasmhook/wasmhook\n"),
        "the Deployment names the image without a tag"
    );

    // kustomize refuses absolute paths to a base: reach deploy/ from the temporary
    // directory through the root.
    let overlay = tempfile::tempdir().unwrap();
    let depth = overlay.path().components().count() - 1;
    let audit = deploy_dir().join("overlays/audit").canonicalize().unwrap();
    let relative = format!(
        "{}{}",
        "../".repeat(depth),
        audit.to_str().unwrap().trim_start_matches('/')
    );
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "resources:\n  - {relative}\nimages:\n  - name: ghcr.io/wasmhook/wasmhook\n    \
             newName: registry.example.com:5000/platform/wasmhook\n"
        ),
    )
    .unwrap();
    let output = std::process::Command::new(std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into()))
        .arg("kustomize")
        .arg(overlay.path())
        .output()
        .expect("kubectl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let images: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("image: "))
        .collect();
    assert_eq!(
        images,
        [
            "registry.example.com:5000/platform/wasmhook:0.1.0",
            "registry.example.com:5000/platform/wasmhook:0.1.0"
        ],
        "the Deployment's and the CronJob's image"
    );
}

/// The backstop overlay: the base's policy set failing open — the same
/// policies otherwise — behind exactly the ValidatingAdmissionPolicies
/// `wasmhook manifests --backstop` makes of it (generate-backstop.sh).
#[test]
fn backstop_overlay_fails_open_behind_the_backstop_of_its_policy_set() {
    use wasmhook::backstop::{ApiVersion, Backstop};
    use wasmhook::policy::FailurePolicy;

    let overlay = Rendered::of("overlays/backstop");
    overlay.assert_every_object_parses();
    let set = overlay.policy_set();
    let base_rendering = Rendered::of("base");
    let base = base_rendering.policy_set();
    assert_eq!(
        set.policies.len(),
        base.policies.len(),
        "the base's policies {BACKSTOP_STALE}"
    );
    for (policy, base_policy) in set.policies.iter().zip(&base.policies) {
        let mut expected = base_policy.clone();
        expected.enforcement.failure_policy = FailurePolicy::Ignore;
        assert!(
            *policy == expected,
            "policy {}: the base's, failing open {BACKSTOP_STALE}",
            policy.name
        );
    }

    let backstop = Backstop::build(&set, NAMESPACE, SERVICE).unwrap();
    let generated = backstop
        .to_yaml("deploy/overlays/backstop/policies.yaml", ApiVersion::V1)
        .unwrap();
    let committed = std::fs::read_to_string(deploy_dir().join("overlays/backstop/backstop.yaml")).unwrap();
    assert!(committed == generated, "backstop.yaml {BACKSTOP_STALE}");
    let mut expected: Vec<String> = backstop
        .policies
        .iter()
        .flat_map(|policy| {
            [
                format!("ValidatingAdmissionPolicy/{}", policy.name),
                format!("ValidatingAdmissionPolicyBinding/{}", policy.name),
            ]
        })
        .collect();
    expected.sort();
    let mut rendered: Vec<String> = overlay
        .names()
        .into_iter()
        .filter(|name| name.starts_with("ValidatingAdmissionPolicy"))
        .collect();
    rendered.sort();
    assert_eq!(rendered, expected);
    assert_eq!(
        expected.len(),
        4,
        "one backstop for each built-in: {:?}",
        backstop
            .policies
            .iter()
            .map(|policy| &policy.covers)
            .collect::<Vec<_>>()
    );

    // The rest is the base, with the overlay's ConfigMap in the Deployment.
    let base_names: Vec<String> = base_rendering.names();
    let others: Vec<String> = overlay
        .names()
        .into_iter()
        .filter(|name| !name.starts_with("ValidatingAdmissionPolicy"))
        .collect();
    assert_eq!(others.len(), base_names.len());
    let config_map = str_at(overlay.only("ConfigMap"), "/metadata/name").to_owned();
    let deployment = serde_json::to_value(overlay.deployment()).unwrap();
    assert!(
        deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|volume| volume["configMap"]["name"] == config_map.as_str()),
        "the Deployment mounts the overlay's policy set {config_map}"
    );
}

/// What to do when the overlay and the base or its backstop disagree.
const BACKSTOP_STALE: &str = "(deploy/overlays/backstop/policies.yaml is the base's with failurePolicy Ignore, \
     and backstop.yaml is generated from it: run deploy/overlays/backstop/generate-backstop.sh)";
