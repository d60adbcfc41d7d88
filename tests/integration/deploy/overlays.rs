//! The overlays: cert-manager (cert-manager issues the certificate; the pods
//! still register) and dev (static webhooks that call a server outside the
//! cluster).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::json;

use super::rendered::{Rendered, deploy_dir, str_at};
use super::{REGISTER_ARGS, SERVICE, args, assert_serve_accepts, assert_webhook_fields};

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
    assert_serve_accepts(&overlay_args);
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
