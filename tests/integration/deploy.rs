//! The Kubernetes manifests in `deploy/`, as a cluster would receive them.
//!
//! Each kustomization is rendered by a real `kubectl kustomize` (offline: no
//! cluster is involved), every object of the output is read back as its
//! k8s-openapi type — losslessly, so a misspelt field fails here instead of
//! being dropped by the API server — and the properties that keep a cluster
//! safe are checked on the result: the Service is not headless and wasmhook's
//! own headless-service policy leaves it alone, the policy set passes the
//! server's validation, the Deployment is hardened and survives disruptions,
//! the base carries no webhook configuration (the pods register them), and
//! the dev overlay's static ones match the policy set and never intercept
//! wasmhook's own namespace or kube-system, and the audit CronJob runs with
//! the Deployment's image, policy set and hardening and exactly the RBAC
//! `wasmhook manifests --audit-rbac` makes of the policy set, writing reports
//! whose CRDs follow the policy working group's schema. `tests/kube/` applies the same
//! manifests to a real kube-apiserver of the oldest supported version.
//!
//! Without `kubectl` these tests fail (they never skip): set `KUBECTL` to use
//! another binary.

mod audit;
mod overlays;
mod rendered;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhook, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use wasmhook::builtin::ModuleSource;
use wasmhook::config::PolicyConfig;
use wasmhook::registration::{Trust, WebhookConfigurations, WebhookTarget};
use wasmhook_tests::{HEADLESS_SERVICE, evaluate_native};

use self::rendered::{Rendered, deploy_dir, str_at};

const NAMESPACE: &str = "wasmhook-system";
const SERVICE: &str = "wasmhook";
/// The server's default `--drain-timeout`, in seconds.
const DEFAULT_DRAIN_SECONDS: i64 = 25;
/// Where `--register --ca-bundle /tls/ca.crt` sits in the base's arguments
/// (the cert-manager overlay removes exactly these).
const REGISTER_ARGS: (usize, [&str; 3]) = (11, ["--register", "--ca-bundle", "/tls/ca.crt"]);

/// The value following `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|arg| arg == flag)
        .and_then(|index| args.get(index + 1))
        .map(String::as_str)
}

fn container(deployment: &Deployment) -> Container {
    let containers = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .map(|pod| pod.containers.clone())
        .unwrap_or_default();
    assert_eq!(containers.len(), 1, "one container");
    containers.into_iter().next().expect("one container")
}

fn args(deployment: &Deployment) -> Vec<String> {
    container(deployment).args.unwrap_or_default()
}

/// The container port a probe or Service names.
fn resolve_port(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|port| port.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

fn port_of(address: &str) -> i32 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address} has no port"))
}

/// `wasmhook <args> --help` (args start with the subcommand: `serve`,
/// `audit`) exits 0 only if clap accepts every argument before `--help`
/// (each flag exists, each value parses).
fn assert_cli_accepts(args: &[String]) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("wasmhook".to_owned())
        .chain(args.iter().cloned())
        .chain(std::iter::once("--help".to_owned()));
    let status = wasmhook::cli::run(argv, &mut out, &mut err);
    assert_eq!(
        status,
        0,
        "`wasmhook {}` is rejected: {}",
        args.join(" "),
        String::from_utf8_lossy(&err)
    );
}

/// A CREATE of `object` in `namespace`, shaped like a recorded one.
fn create_request(object: &Value, namespace: &str) -> String {
    let mut request = wasmhook_tests::request("mutating-create-service-mysql-svc.json");
    let mut object = object.clone();
    object["metadata"]["namespace"] = json!(namespace);
    request["name"] = object["metadata"]["name"].clone();
    request["namespace"] = json!(namespace);
    request["object"] = object;
    request.to_string()
}

fn labels_match(selector: Option<&BTreeMap<String, String>>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let (Some(selector), Some(labels)) = (selector, labels) else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

#[test]
fn base_renders_and_every_object_parses() {
    let base = Rendered::of("base");
    base.assert_every_object_parses();
    let mut names = base.names();
    let config_map = names
        .iter()
        .position(|name| name.starts_with("ConfigMap/wasmhook-policies-"))
        .expect("the generated ConfigMap, with its content hash");
    names[config_map] = "ConfigMap/wasmhook-policies".to_owned();
    names.sort();
    assert_eq!(
        names,
        [
            "ClusterRole/wasmhook-context",
            "ClusterRole/wasmhook-register",
            "ClusterRoleBinding/wasmhook-context",
            "ClusterRoleBinding/wasmhook-register",
            "ConfigMap/wasmhook-policies",
            "Deployment/wasmhook",
            "Namespace/wasmhook-system",
            "PodDisruptionBudget/wasmhook",
            "Role/wasmhook-register",
            "RoleBinding/wasmhook-register",
            "Service/wasmhook",
            "ServiceAccount/wasmhook",
        ]
    );
    for object in &base.objects {
        let namespace = object["metadata"]["namespace"].as_str();
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&str_at(object, "/kind"));
        let expected = (!cluster_scoped).then_some(NAMESPACE);
        assert_eq!(namespace, expected, "{}", str_at(object, "/metadata/name"));
    }
}

#[test]
fn base_service_is_not_headless_and_the_headless_policy_leaves_it_alone() {
    let base = Rendered::of("base");
    let service: Service = base.get("Service", SERVICE);
    let spec = service.spec.clone().expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_ne!(
        spec.cluster_ip.as_deref(),
        Some("None"),
        "the API server cannot call a headless webhook Service"
    );
    assert!(!spec.cluster_ips.iter().flatten().any(|ip| ip == "None"));
    let port = spec
        .ports
        .iter()
        .flatten()
        .find(|port| port.port == 443)
        .expect("port 443");
    let container = container(&base.deployment());
    let target = resolve_port(&container, port.target_port.as_ref().expect("targetPort"));
    assert_eq!(
        target,
        port_of(flag_value(&args(&base.deployment()), "--listen").expect("--listen"))
    );

    // The policy's own defaults, then the deployed settings of both policies
    // that run it — also as if the Service lived elsewhere (so not only
    // skipNamespaces spares it), and with the cluster IP the API server has
    // allocated by the time validating webhooks see it.
    let object = base.find("Service", SERVICE).expect("the Service").clone();
    let mut allocated = object.clone();
    allocated["spec"]["clusterIP"] = json!("10.96.12.34");
    allocated["spec"]["clusterIPs"] = json!(["10.96.12.34"]);
    let set = base.policy_set();
    let mut settings = vec![("defaults".to_owned(), "null".to_owned())];
    settings.extend(
        set.policies
            .iter()
            .filter(|policy| policy.module == ModuleSource::Builtin(HEADLESS_SERVICE))
            .map(|policy| (policy.name.clone(), policy.settings_json())),
    );
    assert_eq!(
        settings.len(),
        4,
        "headless-service runs three times (mutate, verify, dependents)"
    );
    for (label, settings) in &settings {
        for object in [&object, &allocated] {
            for namespace in [NAMESPACE, "default"] {
                let verdict = evaluate_native(HEADLESS_SERVICE, &create_request(object, namespace), settings)
                    .unwrap_or_else(|error| panic!("{label}: the policy failed: {error}"));
                assert!(
                    verdict.is_allowed(),
                    "{label} in {namespace}: denied: {:?}",
                    verdict.message()
                );
                assert!(
                    verdict.mutated_object().is_none(),
                    "{label} in {namespace}: the policy would change the wasmhook Service"
                );
            }
        }
    }
}

#[test]
fn base_policy_set_is_accepted_and_is_the_committed_file() {
    let base = Rendered::of("base");
    let set = base.policy_set();
    let names: Vec<&str> = set.policies.iter().map(|policy| policy.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "headless-service",
            "statefulset-service-name",
            "headless-service-verify",
            "statefulset-service-name-verify",
            "headless-service-dependents"
        ]
    );
    for policy in &set.policies {
        assert!(!policy.rules.is_empty(), "{}: explicit rules", policy.name);
        // Every fixing and checking policy fails closed; the one that sees
        // Service deletions fails open, so a deletion never waits on wasmhook.
        let sees_deletions = policy
            .rules
            .iter()
            .any(|rule| rule.operations.iter().flatten().any(|operation| operation == "DELETE"));
        let expected = if sees_deletions { "Ignore" } else { "Fail" };
        assert_eq!(policy.enforcement.failure_policy.as_str(), expected, "{}", policy.name);
        let skipped = policy.settings["skipNamespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            skipped.contains(&json!(NAMESPACE)),
            "{}: skips {NAMESPACE}",
            policy.name
        );
    }
    let file = std::fs::read_to_string(deploy_dir().join("base/policies.yaml")).expect("policies.yaml");
    assert_eq!(str_at(base.only("ConfigMap"), "/data/policies.yaml"), file);
}

#[test]
fn base_deployment_is_hardened_and_highly_available() {
    let base = Rendered::of("base");
    let deployment = base.deployment();
    let spec = deployment.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.clone().expect("pod spec");
    let pod_labels = spec.template.metadata.as_ref().and_then(|meta| meta.labels.clone());

    let pod_security = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    let seccomp = pod_security.seccomp_profile.expect("seccompProfile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
    let container = container(&deployment);
    assert_eq!(container.image.as_deref(), Some("ghcr.io/wasmhook/wasmhook:0.1.0"));
    let security = container.security_context.clone().expect("container securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_ne!(security.privileged, Some(true));
    let capabilities = security.capabilities.expect("capabilities");
    assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]));
    assert!(capabilities.add.unwrap_or_default().is_empty());
    let resources = container.resources.clone().expect("resources");
    for (what, quantities) in [("requests", &resources.requests), ("limits", &resources.limits)] {
        let quantities = quantities.clone().unwrap_or_default();
        assert!(
            quantities.contains_key("cpu") && quantities.contains_key("memory"),
            "{what}"
        );
    }

    // Probes on the health port, which is the one the server listens on.
    let args = args(&deployment);
    let health = port_of(flag_value(&args, "--health-listen").expect("--health-listen"));
    for (probe, path) in [
        (&container.liveness_probe, "/healthz"),
        (&container.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|probe| probe.http_get.clone())
            .expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(resolve_port(&container, &get.port), health, "{path}");
        assert_ne!(
            get.scheme.as_deref(),
            Some("HTTPS"),
            "{path}: the health port is plain HTTP"
        );
    }

    // No lifecycle hook (the `sleep` handler needs Kubernetes 1.30, the image has
    // no shell): the server delays its own shutdown, and graceful termination
    // outlives that delay plus the drain.
    assert!(
        container.lifecycle.is_none(),
        "no preStop hook: --shutdown-delay does it"
    );
    let delay = flag_value(&args, "--shutdown-delay").expect("--shutdown-delay");
    let delay = wasmhook::duration::parse(delay).expect("a duration").as_secs();
    assert!(delay >= 5, "endpoints need a few seconds to drop the pod: {delay} s");
    let grace = pod
        .termination_grace_period_seconds
        .expect("terminationGracePeriodSeconds");
    let delay = i64::try_from(delay).expect("seconds");
    assert!(grace > DEFAULT_DRAIN_SECONDS + delay, "grace {grace} s");
    assert!(
        !args.iter().any(|arg| arg == "--drain-timeout"),
        "the check above assumes the default drain"
    );

    // Spread and anti-affinity over nodes; spread over zones.
    let spread = pod.topology_spread_constraints.clone().unwrap_or_default();
    for key in ["kubernetes.io/hostname", "topology.kubernetes.io/zone"] {
        let constraint = spread.iter().find(|c| c.topology_key == key).expect(key);
        assert_eq!(constraint.when_unsatisfiable, "ScheduleAnyway");
        let selector = constraint.label_selector.as_ref().and_then(|s| s.match_labels.as_ref());
        assert!(labels_match(selector, pod_labels.as_ref()), "{key}: selects the pods");
    }
    let anti = pod
        .affinity
        .and_then(|affinity| affinity.pod_anti_affinity)
        .expect("podAntiAffinity");
    assert!(
        !anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap_or_default()
            .is_empty()
    );

    // Voluntary disruptions take one pod at a time, whatever the replica count.
    let budget: PodDisruptionBudget = base.get("PodDisruptionBudget", SERVICE);
    let budget = budget.spec.expect("spec");
    assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
    assert!(budget.min_available.is_none());
    assert!(labels_match(
        budget.selector.and_then(|s| s.match_labels).as_ref(),
        pod_labels.as_ref()
    ));
}

#[test]
fn base_deployment_is_wired_to_its_files_service_and_account() {
    let base = Rendered::of("base");
    let deployment = base.deployment();
    let spec = deployment.spec.clone().expect("spec");
    let pod = spec.template.spec.clone().expect("pod spec");
    let pod_labels = spec.template.metadata.as_ref().and_then(|meta| meta.labels.clone());
    let container = container(&deployment);
    let args = args(&deployment);

    // Files named in the arguments come from the right volumes.
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    let volume_at = |file: &str| {
        let mount = mounts
            .iter()
            .find(|mount| Path::new(file).starts_with(&mount.mount_path))
            .unwrap_or_else(|| panic!("{file} is on no volume"));
        let volume = volumes
            .iter()
            .find(|volume| volume.name == mount.name)
            .expect("the mounted volume");
        let key = Path::new(file)
            .strip_prefix(&mount.mount_path)
            .expect("under the mount");
        (mount.clone(), volume.clone(), key.to_string_lossy().into_owned())
    };
    let config_map_name = str_at(base.only("ConfigMap"), "/metadata/name");
    let (_, volume, key) = volume_at(flag_value(&args, "--config").expect("--config"));
    assert_eq!(volume.config_map.map(|c| c.name).as_deref(), Some(config_map_name));
    assert_eq!(key, "policies.yaml");
    for (flag, expected_key) in [
        ("--tls-cert", "tls.crt"),
        ("--tls-key", "tls.key"),
        ("--ca-bundle", "ca.crt"),
    ] {
        let (mount, volume, key) = volume_at(flag_value(&args, flag).unwrap_or_else(|| panic!("{flag}")));
        let secret = volume.secret.expect("a Secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("wasmhook-tls"), "{flag}");
        assert!(secret.items.is_none(), "every key of the Secret is mounted");
        assert_eq!(key, expected_key, "{flag}");
        assert_eq!(mount.read_only, Some(true));
    }
    for flag in ["--cache-dir", "--state-dir"] {
        let (mount, volume, _) = volume_at(flag_value(&args, flag).unwrap_or_else(|| panic!("{flag}")));
        assert!(volume.empty_dir.is_some(), "{flag}: a writable emptyDir");
        assert_ne!(mount.read_only, Some(true), "{flag}");
    }
    assert_eq!(
        args.get(REGISTER_ARGS.0..REGISTER_ARGS.0 + 3),
        Some(&REGISTER_ARGS.1.map(String::from)[..])
    );
    assert_eq!(flag_value(&args, "--log-format"), Some("json"));
    assert_cli_accepts(&args);

    // The Service selects these pods; the ServiceAccount exists and is what
    // the ClusterRoleBinding binds.
    let service: Service = base.get("Service", SERVICE);
    assert!(labels_match(
        service.spec.and_then(|s| s.selector).as_ref(),
        pod_labels.as_ref()
    ));
    let account = pod.service_account_name.expect("serviceAccountName");
    let _: ServiceAccount = base.get("ServiceAccount", &account);
    let binding: ClusterRoleBinding = base.get("ClusterRoleBinding", "wasmhook-register");
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", account.as_str())
    );
    assert_eq!(subject.namespace.as_deref(), Some(NAMESPACE));
}

#[test]
fn base_rbac_grants_only_what_register_needs() {
    let base = Rendered::of("base");
    let role: ClusterRole = base.get("ClusterRole", "wasmhook-register");
    let binding: ClusterRoleBinding = base.get("ClusterRoleBinding", "wasmhook-register");
    assert_eq!(
        (binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()),
        ("ClusterRole", wasmhook::registration::DEFAULT_OWNER)
    );
    let rule = |group: &str, resources: &[&str], names: Option<&[&str]>, verbs: &[&str]| {
        k8s_openapi::api::rbac::v1::PolicyRule {
            api_groups: Some(vec![group.to_owned()]),
            resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
            resource_names: names.map(|names| names.iter().map(|n| (*n).to_owned()).collect()),
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            non_resource_urls: None,
        }
    };
    assert_eq!(
        role.rules.expect("rules"),
        [
            // Server-side apply of its own two configurations, nothing else.
            rule(
                "admissionregistration.k8s.io",
                &["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
                Some(&[SERVICE]),
                &["create", "patch"],
            ),
            // The owner's uid, for ownerReferences.
            rule(
                "rbac.authorization.k8s.io",
                &["clusterroles"],
                Some(&[wasmhook::registration::DEFAULT_OWNER]),
                &["get"],
            ),
        ]
    );
    // The Service's endpoints, in wasmhook's namespace only.
    let role: Role = base.get("Role", "wasmhook-register");
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        role.rules.expect("rules"),
        [rule("discovery.k8s.io", &["endpointslices"], None, &["list"])]
    );
    let binding: RoleBinding = base.get("RoleBinding", "wasmhook-register");
    assert_eq!(binding.role_ref.name, "wasmhook-register");
    let subjects = binding.subjects.expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
        (SERVICE, Some(NAMESPACE))
    );
}

#[test]
fn base_context_rbac_grants_exactly_what_the_policies_declare() {
    let base = Rendered::of("base");
    let set = base.policy_set();
    let declared: Vec<String> = set
        .policies
        .iter()
        .flat_map(|policy| policy.context.iter().map(|declared| declared.kind.to_string()))
        .collect();
    assert_eq!(declared, ["v1 Service", "apps/v1 StatefulSet"]);
    let (role, binding) =
        wasmhook::registration::context_rbac(&set, NAMESPACE, SERVICE).expect("the policies declare context");
    let stale = "(rbac-context.yaml must follow policies.yaml: run deploy/base/generate-context-rbac.sh)";
    let rendered: ClusterRole = base.get("ClusterRole", "wasmhook-context");
    assert!(rendered == role, "ClusterRole wasmhook-context {stale}");
    let rendered: ClusterRoleBinding = base.get("ClusterRoleBinding", "wasmhook-context");
    assert!(rendered == binding, "ClusterRoleBinding wasmhook-context {stale}");
    for rule in role.rules.expect("rules") {
        assert_eq!(rule.verbs, ["get", "list", "watch"], "read-only");
        assert!(rule.resource_names.is_none());
        assert!(!rule.resources.unwrap_or_default().contains(&"secrets".to_owned()));
    }
}

#[test]
fn base_has_no_static_webhooks_the_pods_register_them() {
    // Static configurations would be applied with the pods, before any is
    // ready: a failed or partial install would leave fail-closed webhooks
    // pointing at no server (issue #25).
    let base = Rendered::of("base");
    for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
        assert!(base.objects.iter().all(|object| object["kind"] != kind), "{kind}");
    }
    let deployment_args = args(&base.deployment());
    assert_eq!(
        &deployment_args[REGISTER_ARGS.0..REGISTER_ARGS.0 + 3],
        REGISTER_ARGS.1,
        "the pods register"
    );
    assert_eq!(
        flag_value(&deployment_args, "--register-owner"),
        None,
        "the default owner"
    );
}

#[test]
fn dev_webhooks_are_what_wasmhook_manifests_makes_of_the_policy_set() {
    let set = Rendered::of("base").policy_set();
    let file = Rendered::file("overlays/dev/webhooks.yaml");
    let webhooks = file.webhooks();
    let expected: Vec<(&str, &PolicyConfig)> = ["mutate", "validate"]
        .into_iter()
        .flat_map(|mode| {
            set.policies
                .iter()
                .filter(move |policy| policy.enforcement.mode.as_str() == mode)
                .map(move |policy| (mode, policy))
        })
        .collect();
    assert_eq!(webhooks.len(), expected.len(), "one webhook per policy {STALE}");
    for ((mode, webhook, reinvocation), (policy_mode, policy)) in webhooks.iter().zip(&expected) {
        let at = format!("policy {} {STALE}", policy.name);
        let name = format!("{}.wasmhook.dev", policy.name);
        assert_eq!((*mode, webhook.name.as_str()), (*policy_mode, name.as_str()), "{at}");
        assert!(webhook.client_config.ca_bundle.is_none(), "{at}: the overlay adds it");
        assert_webhook_fields(webhook, reinvocation.as_deref(), mode, policy);
    }

    // Exactly what `wasmhook manifests` makes of the policy set, less the
    // cert-manager annotation that generate-webhooks.sh removes.
    let trust = Trust::cert_manager(&format!("{NAMESPACE}/{SERVICE}")).expect("a Certificate reference");
    let target = WebhookTarget::new(NAMESPACE, SERVICE, 443, None, trust).expect("a valid target");
    let generated = WebhookConfigurations::build(&set, &target);
    let mut mutating = generated.mutating.expect("mutate policies");
    mutating.metadata.annotations = None;
    let mut validating = generated.validating.expect("validate policies");
    validating.metadata.annotations = None;
    let rendered: MutatingWebhookConfiguration = file.get("MutatingWebhookConfiguration", SERVICE);
    assert!(rendered == mutating, "MutatingWebhookConfiguration {STALE}");
    let rendered: ValidatingWebhookConfiguration = file.get("ValidatingWebhookConfiguration", SERVICE);
    assert!(rendered == validating, "ValidatingWebhookConfiguration {STALE}");
}

/// What to do when the webhooks and the policy set disagree.
const STALE: &str =
    "(overlays/dev/webhooks.yaml must follow policies.yaml: run deploy/overlays/dev/generate-webhooks.sh)";

/// Everything but the client config: from the policy, or fixed by wasmhook.
fn assert_webhook_fields(webhook: &ValidatingWebhook, reinvocation: Option<&str>, mode: &str, policy: &PolicyConfig) {
    let at = format!("policy {} {STALE}", policy.name);
    assert_eq!(webhook.side_effects, "None", "{at}");
    assert_eq!(webhook.admission_review_versions, ["v1"], "{at}");
    assert_eq!(webhook.match_policy.as_deref(), Some("Equivalent"), "{at}");
    assert_eq!(reinvocation, (mode == "mutate").then_some("IfNeeded"), "{at}");
    let failure_policy = policy.enforcement.failure_policy.as_str();
    assert_eq!(webhook.failure_policy.as_deref(), Some(failure_policy), "{at}");
    // Within the API server's 1 to 30 s, and long enough for the policy's whole
    // timeout plus the margin the server keeps to answer in.
    let timeout = webhook.timeout_seconds.expect("timeoutSeconds");
    assert!((1..=30).contains(&timeout), "{at}");
    let deadline = std::time::Duration::from_secs(timeout.unsigned_abs().into());
    let budget = deadline - wasmhook::server::answer_margin(deadline);
    assert!(
        budget >= policy.limits.timeout || timeout == 30,
        "{at}: {budget:?} < {:?}",
        policy.limits.timeout
    );
    assert_eq!(webhook.rules.as_ref(), Some(&policy.rules), "{at}");
    assert_eq!(webhook.object_selector, policy.object_selector, "{at}");
    let conditions = webhook.match_conditions.clone().unwrap_or_default();
    assert_eq!(conditions, policy.match_conditions, "{at}");

    // The policy's namespace selector, with wasmhook's exclusions added.
    let selector = webhook.namespace_selector.clone().expect("namespaceSelector");
    let own = policy.namespace_selector.clone().unwrap_or_default();
    assert_eq!(selector.match_labels, own.match_labels, "{at}");
    let expressions = selector.match_expressions.unwrap_or_default();
    for requirement in own.match_expressions.unwrap_or_default() {
        assert!(expressions.contains(&requirement), "{at}: lost {requirement:?}");
    }
    let excluded = expressions
        .iter()
        .find(|r| r.key == "kubernetes.io/metadata.name" && r.operator == "NotIn")
        .and_then(|r| r.values.clone())
        .unwrap_or_default();
    for namespace in [NAMESPACE, "kube-system"] {
        assert!(
            excluded.iter().any(|n| n == namespace),
            "{at}: {namespace} is not excluded"
        );
    }
    let opt_out = expressions
        .iter()
        .any(|r| r.key == "wasmhook.dev/ignore" && r.operator == "DoesNotExist");
    assert!(opt_out, "{at}: no opt-out label");
}
