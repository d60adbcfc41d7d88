//! The generated objects, read back from their YAML as k8s-openapi types (as
//! `kubectl apply` would read them), against the invariants that keep a
//! cluster safe from its admission webhook.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;
use crate::config::PolicySet;

/// Four policies, mutate and validate interleaved, with every timeout the
/// rounding must handle and a user namespace selector on the first.
const POLICY_SET: &str = r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: first-mutate
    module: builtin:headless-service
    timeout: 100ms
    failurePolicy: Ignore
    namespaceSelector:
      matchLabels: {team: web}
      matchExpressions:
        - {key: env, operator: In, values: [prod]}
    objectSelector:
      matchLabels: {wasmhook.dev/skip: "false"}
    matchConditions:
      - {name: not-a-dry-run, expression: "!request.dryRun"}
      - name: headless-by-name-or-label
        expression: |
          object.metadata.name.endsWith("-headless") ||
            (has(object.metadata.labels) && "wasmhook.dev/headless" in object.metadata.labels)
  - name: first-validate
    module: builtin:statefulset-service-name
    mode: validate
    timeout: 2500ms
  - name: second-mutate
    module: builtin:statefulset-service-name
    timeout: 30s
  - name: second-validate
    module: builtin:headless-service
    mode: validate
    timeout: 2s
"#;

fn policy_set(yaml: &str) -> PolicySet {
    PolicySet::from_yaml("test.yaml", yaml, Path::new("."), 1 << 30).expect("a valid policy set")
}

fn ca_pem() -> Vec<u8> {
    crate::tls::generate_ca("registration test CA", 1)
        .expect("a CA")
        .cert_pem
        .into_bytes()
}

fn target(trust: Trust) -> WebhookTarget {
    WebhookTarget::new("wasmhook-system", "wasmhook", 443, None, trust).expect("a valid target")
}

/// Through YAML and back, as a client would read the output.
fn reparse<T: Serialize + DeserializeOwned>(value: &T) -> T {
    let yaml = yaml_document("a test object", value).expect("serializes");
    let json: Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|error| panic!("{error}\n{yaml}"));
    serde_json::from_value(json).unwrap_or_else(|error| panic!("{error}\n{yaml}"))
}

/// Both configurations, read back from YAML.
fn build(set: &PolicySet, target: &WebhookTarget) -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    let built = WebhookConfigurations::build(set, target);
    (
        reparse(built.mutating.as_ref().expect("a mutating configuration")),
        reparse(built.validating.as_ref().expect("a validating configuration")),
    )
}

fn mutating(configuration: &MutatingWebhookConfiguration) -> &[MutatingWebhook] {
    configuration.webhooks.as_deref().unwrap_or_default()
}

fn validating(configuration: &ValidatingWebhookConfiguration) -> &[ValidatingWebhook] {
    configuration.webhooks.as_deref().unwrap_or_default()
}

/// Name, client config, namespace selector, timeout, side effects of every webhook.
fn common<'a>(
    mutating_config: &'a MutatingWebhookConfiguration,
    validating_config: &'a ValidatingWebhookConfiguration,
) -> Vec<(&'a str, &'a WebhookClientConfig, &'a LabelSelector, i32, &'a str)> {
    let mutating = mutating(mutating_config).iter().map(|webhook| {
        (
            webhook.name.as_str(),
            &webhook.client_config,
            webhook.namespace_selector.as_ref().expect("a namespace selector"),
            webhook.timeout_seconds.expect("a timeout"),
            webhook.side_effects.as_str(),
        )
    });
    let validating = validating(validating_config).iter().map(|webhook| {
        (
            webhook.name.as_str(),
            &webhook.client_config,
            webhook.namespace_selector.as_ref().expect("a namespace selector"),
            webhook.timeout_seconds.expect("a timeout"),
            webhook.side_effects.as_str(),
        )
    });
    mutating.chain(validating).collect()
}

#[test]
fn each_mode_gets_its_policies_in_policy_set_order_with_matching_paths() {
    let (mutating_config, validating_config) = build(&policy_set(POLICY_SET), &target(Trust::CaBundle(ca_pem())));
    assert_eq!(mutating_config.metadata.name.as_deref(), Some("wasmhook"));
    assert_eq!(validating_config.metadata.name.as_deref(), Some("wasmhook"));
    let names = |webhooks: Vec<&str>| webhooks.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        names(mutating(&mutating_config).iter().map(|w| w.name.as_str()).collect()),
        ["first-mutate.wasmhook.dev", "second-mutate.wasmhook.dev"]
    );
    assert_eq!(
        names(validating(&validating_config).iter().map(|w| w.name.as_str()).collect()),
        ["first-validate.wasmhook.dev", "second-validate.wasmhook.dev"]
    );
    for (name, client_config, ..) in common(&mutating_config, &validating_config) {
        let policy = name.strip_suffix(".wasmhook.dev").unwrap();
        let mode = if policy.ends_with("-mutate") {
            "mutate"
        } else {
            "validate"
        };
        let service = client_config.service.as_ref().expect("a Service reference");
        assert_eq!(
            service.path.as_deref(),
            Some(format!("/{mode}/{policy}").as_str()),
            "{name}"
        );
        assert_eq!(service.namespace, "wasmhook-system");
        assert_eq!(service.name, "wasmhook");
        assert_eq!(service.port, Some(443));
        assert_eq!(client_config.url, None);
    }
}

#[test]
fn every_webhook_excludes_its_namespace_and_kube_system_and_keeps_the_users_selector() {
    let (mutating_config, validating_config) = build(&policy_set(POLICY_SET), &target(Trust::CaBundle(ca_pem())));
    let exclusions = [
        LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(vec!["wasmhook-system".into(), "kube-system".into()]),
        },
        LabelSelectorRequirement {
            key: "wasmhook.dev/ignore".into(),
            operator: "DoesNotExist".into(),
            values: None,
        },
    ];
    for (name, _, selector, ..) in common(&mutating_config, &validating_config) {
        let expressions = selector.match_expressions.as_deref().unwrap_or_default();
        assert!(expressions.ends_with(&exclusions), "{name}: {expressions:?}");
        if name == "first-mutate.wasmhook.dev" {
            let user = LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["prod".into()]),
            };
            assert_eq!(expressions, [&[user][..], &exclusions].concat(), "{name}");
            let labels = selector.match_labels.as_ref().expect("the user's matchLabels");
            assert_eq!(labels.get("team").map(String::as_str), Some("web"));
        } else {
            assert_eq!(expressions, exclusions, "{name}");
            assert_eq!(selector.match_labels, None, "{name}");
        }
    }

    // Running in kube-system itself: excluded once.
    let in_kube_system = WebhookTarget::new("kube-system", "wasmhook", 443, None, Trust::CaBundle(ca_pem())).unwrap();
    let (mutating_config, _) = build(&policy_set(POLICY_SET), &in_kube_system);
    let selector = mutating(&mutating_config)[1].namespace_selector.clone().unwrap();
    assert_eq!(
        selector.match_expressions.unwrap()[0].values,
        Some(vec!["kube-system".to_owned()])
    );
}

#[test]
fn fixed_fields_and_the_policys_own_fields() {
    let set = policy_set(POLICY_SET);
    let (mutating_config, validating_config) = build(&set, &target(Trust::CaBundle(ca_pem())));
    for (name, _, _, timeout, side_effects) in common(&mutating_config, &validating_config) {
        assert_eq!(side_effects, "None", "{name}");
        assert!((1..=30).contains(&timeout), "{name}: {timeout}");
    }
    for webhook in mutating(&mutating_config) {
        assert_eq!(webhook.admission_review_versions, ["v1"]);
        assert_eq!(webhook.match_policy.as_deref(), Some("Equivalent"));
        assert_eq!(webhook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    }
    for webhook in validating(&validating_config) {
        assert_eq!(webhook.admission_review_versions, ["v1"]);
        assert_eq!(webhook.match_policy.as_deref(), Some("Equivalent"));
        assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
    }

    let first = &mutating(&mutating_config)[0];
    let policy = set.get("first-mutate").unwrap();
    assert_eq!(first.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(first.rules.as_ref(), Some(&policy.rules));
    assert!(!policy.rules.is_empty(), "the built-in's default rules");
    assert_eq!(first.object_selector, policy.object_selector);
    assert_eq!(first.match_conditions.as_ref(), Some(&policy.match_conditions));
    assert_eq!(mutating(&mutating_config)[1].match_conditions, None, "no empty list");

    let labels = mutating_config.metadata.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/name"], "wasmhook");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "wasmhook");
    assert_eq!(validating_config.metadata.labels.unwrap(), labels);
}

#[test]
fn timeouts_round_up_to_whole_seconds_within_1_to_30() {
    let cases = [
        (Duration::from_millis(100), 1),
        (Duration::from_millis(900), 1),
        (Duration::from_secs(1), 2),
        (Duration::from_secs(2), 3),
        (Duration::from_millis(2500), 3),
        (Duration::from_secs(30), 30),
        (Duration::ZERO, 1),
        (Duration::from_nanos(2_000_000_001), 3),
        (Duration::from_secs(31), 30),
        (Duration::MAX, 30),
    ];
    for (timeout, expected) in cases {
        assert_eq!(timeout_seconds(timeout), expected, "{timeout:?}");
    }

    let (mutating_config, validating_config) = build(&policy_set(POLICY_SET), &target(Trust::CaBundle(ca_pem())));
    let timeouts: Vec<_> = common(&mutating_config, &validating_config)
        .into_iter()
        .map(|(name, _, _, timeout, _)| (name, timeout))
        .collect();
    assert_eq!(
        timeouts,
        [
            ("first-mutate.wasmhook.dev", 1),
            ("second-mutate.wasmhook.dev", 30),
            ("first-validate.wasmhook.dev", 3),
            ("second-validate.wasmhook.dev", 3),
        ]
    );
}

#[test]
fn the_ca_bundle_is_the_given_pem() {
    let pem = ca_pem();
    let trust = Trust::ca_bundle("ca.pem", pem.clone()).expect("a CA bundle");
    let (mutating_config, validating_config) = build(&policy_set(POLICY_SET), &target(trust));
    for (name, client_config, ..) in common(&mutating_config, &validating_config) {
        assert_eq!(
            client_config.ca_bundle.as_ref().map(|bundle| &bundle.0),
            Some(&pem),
            "{name}"
        );
    }
    assert_eq!(mutating_config.metadata.annotations, None);

    // On the wire it is the base64 of the PEM file, as the API server expects.
    let yaml = WebhookConfigurations::build(&policy_set(POLICY_SET), &target(Trust::CaBundle(pem.clone())))
        .to_yaml("test.yaml")
        .unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    for document in &documents {
        for webhook in document["webhooks"].as_array().unwrap() {
            let wire = webhook["clientConfig"]["caBundle"].as_str().expect("a string");
            assert_eq!(base64::engine::general_purpose::STANDARD.decode(wire).unwrap(), pem);
        }
    }
}

#[test]
fn cert_manager_injects_the_ca_instead_of_a_ca_bundle() {
    let trust = Trust::cert_manager("wasmhook-system/wasmhook-serving").expect("a reference");
    let (mutating_config, validating_config) = build(&policy_set(POLICY_SET), &target(trust));
    for annotations in [
        mutating_config.metadata.annotations.clone(),
        validating_config.metadata.annotations.clone(),
    ] {
        let annotations = annotations.expect("annotations");
        assert_eq!(
            annotations["cert-manager.io/inject-ca-from"],
            "wasmhook-system/wasmhook-serving"
        );
    }
    for (name, client_config, ..) in common(&mutating_config, &validating_config) {
        assert_eq!(client_config.ca_bundle, None, "{name}");
        assert!(client_config.service.is_some(), "{name}");
    }
}

#[test]
fn a_url_replaces_the_service_reference() {
    for (base, trust) in [
        ("https://host.example:8443/", Trust::SystemRoots),
        ("https://host.example:8443", Trust::CaBundle(ca_pem())),
    ] {
        let target = WebhookTarget::new("wasmhook-system", "wasmhook", 443, Some(base), trust.clone()).unwrap();
        let (mutating_config, validating_config) = build(&policy_set(POLICY_SET), &target);
        for (name, client_config, selector, ..) in common(&mutating_config, &validating_config) {
            let policy = name.strip_suffix(".wasmhook.dev").unwrap();
            let mode = if policy.ends_with("-mutate") {
                "mutate"
            } else {
                "validate"
            };
            assert_eq!(
                client_config.url.as_deref(),
                Some(format!("https://host.example:8443/{mode}/{policy}").as_str())
            );
            assert_eq!(client_config.service, None);
            assert_eq!(client_config.ca_bundle.is_some(), trust != Trust::SystemRoots);
            let excluded = &selector
                .match_expressions
                .as_ref()
                .unwrap()
                .iter()
                .rev()
                .nth(1)
                .unwrap();
            assert_eq!(excluded.values.as_deref().unwrap(), ["wasmhook-system", "kube-system"]);
        }
    }
}

#[test]
fn a_configuration_without_webhooks_is_left_out_and_the_stream_says_so() {
    let only_mutate = policy_set(
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n  - name: a\n    module: \
         builtin:headless-service\n",
    );
    let built = WebhookConfigurations::build(&only_mutate, &target(Trust::CaBundle(ca_pem())));
    assert!(built.mutating.is_some());
    assert_eq!(built.validating, None);
    let yaml = built.to_yaml("only-mutate.yaml").unwrap();
    assert!(
        yaml.starts_with("# Webhook configurations generated by `wasmhook manifests` from only-mutate.yaml.\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("# No policy has mode validate: no ValidatingWebhookConfiguration.\n"),
        "{yaml}"
    );
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    assert_eq!(documents.len(), 1, "{yaml}");
    assert_eq!(documents[0]["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(documents[0]["kind"], "MutatingWebhookConfiguration");
}

#[test]
fn the_stream_holds_both_configurations_with_api_version_and_kind() {
    let built = WebhookConfigurations::build(&policy_set(POLICY_SET), &target(Trust::CaBundle(ca_pem())));
    let yaml = built.to_yaml("test.yaml").unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let kinds: Vec<_> = documents
        .iter()
        .map(|document| (document["apiVersion"].clone(), document["kind"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                json!("admissionregistration.k8s.io/v1"),
                json!("MutatingWebhookConfiguration")
            ),
            (
                json!("admissionregistration.k8s.io/v1"),
                json!("ValidatingWebhookConfiguration")
            ),
        ]
    );
    let mutating: MutatingWebhookConfiguration = serde_json::from_value(documents[0].clone()).unwrap();
    assert_eq!(Some(mutating), built.mutating);
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(documents[1].clone()).unwrap();
    assert_eq!(Some(validating), built.validating);
}

#[test]
fn targets_and_trust_are_checked() {
    let error = |result: Result<_, RegistrationError>| result.map(|_: WebhookTarget| ()).unwrap_err().to_string();
    let bundle = || Trust::CaBundle(ca_pem());
    assert!(
        error(WebhookTarget::new(
            "wasmhook-system",
            "wasmhook",
            443,
            None,
            Trust::SystemRoots
        ))
        .contains("needs a CA bundle or a cert-manager Certificate")
    );
    assert!(error(WebhookTarget::new("Wasmhook", "wasmhook", 443, None, bundle())).contains("namespace \"Wasmhook\""));
    assert!(error(WebhookTarget::new("ns", "1wasmhook", 443, None, bundle())).contains("DNS-1035 label"));
    assert!(error(WebhookTarget::new("ns", "wasmhook", 0, None, bundle())).contains("port 0"));
    for (url, expected) in [
        ("http://host", "must start with https://"),
        ("https://host/?x=1", "query or a fragment"),
        ("https://user:pw@host", "user or password"),
        ("https://:8443", "names no host"),
    ] {
        let message = error(WebhookTarget::new("ns", "wasmhook", 443, Some(url), bundle()));
        assert!(message.contains(expected), "{url}: {message}");
    }

    let reference = |value: &str| Trust::cert_manager(value).unwrap_err().to_string();
    assert!(reference("just-a-name").contains("expected <namespace>/<certificate name>"));
    assert!(reference("ns/Bad_Name").contains("certificate name \"Bad_Name\""));
    assert_eq!(
        Trust::cert_manager("ns/serving.cert").unwrap(),
        Trust::CertManager {
            namespace: "ns".into(),
            certificate: "serving.cert".into()
        }
    );

    let bundle_error = |pem: &str| {
        Trust::ca_bundle("ca.pem", pem.as_bytes().to_vec())
            .unwrap_err()
            .to_string()
    };
    assert!(bundle_error("").contains("CA bundle ca.pem: no certificate found"));
    assert!(bundle_error("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").contains("not valid PEM"));
}

#[test]
fn serving_certs_cover_the_service_names_and_fill_a_tls_secret() {
    assert_eq!(
        serving_sans("wasmhook", "wasmhook-system"),
        [
            "wasmhook",
            "wasmhook.wasmhook-system",
            "wasmhook.wasmhook-system.svc",
            "wasmhook.wasmhook-system.svc.cluster.local",
        ]
    );
    let certs = ServingCerts::generate("wasmhook", "wasmhook-system", 30).expect("certificates");
    let secret: Secret = reparse(&certs.secret());
    assert_eq!(secret.metadata.name.as_deref(), Some("wasmhook-tls"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("wasmhook-system"));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["ca.crt", "tls.crt", "tls.key"]);
    assert_eq!(data["tls.crt"].0, certs.serving.cert_pem.as_bytes());
    assert_eq!(data["tls.key"].0, certs.serving.key_pem.as_bytes());
    assert_eq!(data["ca.crt"].0, certs.ca.cert_pem.as_bytes());
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(certs.ca_bundle_base64())
            .unwrap(),
        certs.ca.cert_pem.as_bytes()
    );
    // The CA is usable as a caBundle.
    assert!(Trust::ca_bundle("ca.pem", certs.ca.cert_pem.clone().into_bytes()).is_ok());

    let invalid = ServingCerts::generate("wasmhook", "Not_A_Namespace", 30).unwrap_err();
    assert!(
        invalid.to_string().contains("namespace \"Not_A_Namespace\""),
        "{invalid}"
    );
    let invalid = ServingCerts::generate("wasmhook", "ns", 0).unwrap_err();
    assert!(invalid.to_string().contains("validity"), "{invalid}");
}

/// Rules with subresources, several groups at once, a wildcard and context
/// kinds: what `wasmhook audit` must be allowed to read.
const AUDIT_POLICY_SET: &str = r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: services
    module: builtin:headless-service
    rules:
      - operations: [CREATE]
        apiGroups: [""]
        apiVersions: [v1]
        resources: [services, pods/status]
  - name: workloads
    module: builtin:statefulset-service-name
    mode: validate
    context:
      - apiVersion: v1
        kind: Service
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
    rules:
      - operations: [CREATE, UPDATE]
        apiGroups: [apps, batch]
        apiVersions: [v1]
        resources: [statefulsets, deployments/scale, jobs]
  - name: widgets
    module: builtin:headless-service
    mode: validate
    rules:
      - operations: ["*"]
        apiGroups: [example.com]
        apiVersions: ["*"]
        resources: [widgets, "*/status"]
"#;

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> k8s_openapi::api::rbac::v1::PolicyRule {
    k8s_openapi::api::rbac::v1::PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..Default::default()
    }
}

const READ: &[&str] = &["get", "list"];
const REPORTS: &[&str] = &["get", "list", "create", "patch", "delete"];

#[test]
fn audit_rbac_reads_what_the_rules_select_and_writes_its_reports() {
    let (role, binding) = audit_rbac(&policy_set(AUDIT_POLICY_SET), "wasmhook-system", "wasmhook");
    let (role, binding) = (reparse(&role), reparse(&binding));
    assert_eq!(role.metadata.name.as_deref(), Some("wasmhook-audit"));
    assert_eq!(
        role.rules.expect("rules"),
        [
            // Subresources read whole objects; namespaces for namespaceSelector;
            // the context kind Service is already there.
            rule("", &["namespaces", "pods", "services"], READ),
            // A rule's groups and resources cross, as the API server reads them.
            rule("apps", &["deployments", "jobs", "statefulsets"], READ),
            rule("batch", &["deployments", "jobs", "statefulsets"], READ),
            // `*/status` is every resource of the group: `*` alone says it.
            rule("example.com", &["*"], READ),
            // A context kind, by its guessed plural.
            rule("networking.k8s.io", &["networkpolicies"], READ),
            rule("wgpolicyk8s.io", &["clusterpolicyreports", "policyreports"], REPORTS),
        ]
    );
    assert_eq!(binding.metadata.name.as_deref(), Some("wasmhook-audit"));
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, "wasmhook-audit");
    let subjects = binding.subjects.expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", "wasmhook-audit", Some("wasmhook-system"))
    );
    let labels = role.metadata.labels.expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "wasmhook");
}

#[test]
fn audit_rbac_of_the_built_in_policies_and_of_wildcards() {
    // The built-ins' default rules: Services (headless-service) and
    // StatefulSets (statefulset-service-name).
    let (role, _) = audit_rbac(&PolicySet::builtin_default(), "ops", "hook");
    assert_eq!(role.metadata.name.as_deref(), Some("hook-audit"));
    assert_eq!(
        role.rules.expect("rules"),
        [
            rule("", &["namespaces", "services"], READ),
            rule("apps", &["statefulsets"], READ),
            rule("wgpolicyk8s.io", &["clusterpolicyreports", "policyreports"], REPORTS),
        ]
    );

    // `*` stays `*`, in groups and resources alike.
    let everything = policy_set(
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n  - name: all\n    module: \
         builtin:headless-service\n    mode: validate\n    rules:\n      - operations: [\"*\"]\n        apiGroups: \
         [\"*\"]\n        apiVersions: [\"*\"]\n        resources: [\"*/*\"]\n",
    );
    let (role, _) = audit_rbac(&everything, "wasmhook-system", "wasmhook");
    assert_eq!(
        role.rules.expect("rules"),
        [
            rule("", &["namespaces"], READ),
            rule("*", &["*"], READ),
            rule("wgpolicyk8s.io", &["clusterpolicyreports", "policyreports"], REPORTS),
        ]
    );
    let yaml = audit_rbac_yaml(&everything, "wasmhook-system", "wasmhook", "all.yaml").unwrap();
    assert!(
        yaml.contains("#   all: *.* (*/*) (every resource, Secrets included)\n"),
        "{yaml}"
    );
}

#[test]
fn audit_rbac_yaml_says_what_each_policy_reads_and_holds_both_objects() {
    let set = policy_set(AUDIT_POLICY_SET);
    let yaml = audit_rbac_yaml(&set, "wasmhook-system", "wasmhook", "audit.yaml").unwrap();
    let header: Vec<&str> = yaml.lines().take_while(|line| line.starts_with('#')).collect();
    assert_eq!(
        header,
        [
            "# RBAC for `wasmhook audit`, generated by `wasmhook manifests --audit-rbac` from audit.yaml:",
            "# get and list of what each policy's rules select and of the kinds it declares under context:,",
            "# get and list of namespaces (namespaceSelector), and its own reports: get, list, create, patch",
            "# and delete of wgpolicyk8s.io policyreports and clusterpolicyreports.",
            "#   services: services, pods (pods/status)",
            "#   workloads: statefulsets.apps, deployments.apps (deployments/scale), jobs.apps, statefulsets.batch, \
             deployments.batch (deployments/scale), jobs.batch, services (context v1 Service), \
             networkpolicies.networking.k8s.io (context networking.k8s.io/v1 NetworkPolicy)",
            "#   widgets: widgets.example.com, *.example.com (*/status)",
        ]
    );
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let kinds: Vec<_> = documents.iter().map(|document| document["kind"].clone()).collect();
    assert_eq!(kinds, [json!("ClusterRole"), json!("ClusterRoleBinding")]);
    let (role, binding) = audit_rbac(&set, "wasmhook-system", "wasmhook");
    let parsed: k8s_openapi::api::rbac::v1::ClusterRole = serde_json::from_value(documents[0].clone()).unwrap();
    assert_eq!(parsed, role);
    let parsed: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(documents[1].clone()).unwrap();
    assert_eq!(parsed, binding);
}
