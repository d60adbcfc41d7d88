//! The scheduled audit: the PolicyReport CRDs (`deploy/crds`), the audit
//! component (`deploy/components/audit`) and the overlay that adds it to the
//! base (`deploy/overlays/audit`) — the CronJob runs `wasmhook audit` with the
//! Deployment's image, policy set and hardening, and may read exactly what
//! `wasmhook manifests --audit-rbac` says the policy set needs.

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Container, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::{Value, json};

use super::rendered::{Rendered, deploy_dir, str_at};
use super::{NAMESPACE, SERVICE, args, flag_value};

/// What the CronJob runs: the audit of the mounted policy set, its reports
/// written, the table in the log (every result is in the reports), and findings not failing the Job (the compile cache
/// comes from `WASMHOOK_CACHE_DIR`).
const AUDIT_ARGS: [&str; 12] = [
    "audit",
    "--config",
    "/etc/wasmhook/policies.yaml",
    "--report",
    "--output",
    "table",
    "--progress",
    "never",
    "--fail-on",
    "never",
    "--log-format",
    "json",
];

/// What to do when rbac-audit.yaml and the policy set disagree.
const STALE_AUDIT_RBAC: &str = "(components/audit/rbac-audit.yaml must follow base/policies.yaml: run \
                                deploy/components/audit/generate-audit-rbac.sh)";

fn cron_job(rendered: &Rendered) -> CronJob {
    rendered.get("CronJob", "wasmhook-audit")
}

fn pod_spec(cron_job: &CronJob) -> PodSpec {
    cron_job
        .spec
        .as_ref()
        .and_then(|spec| spec.job_template.spec.as_ref())
        .and_then(|job| job.template.spec.clone())
        .expect("a pod template")
}

fn audit_container(cron_job: &CronJob) -> Container {
    let containers = pod_spec(cron_job).containers;
    assert_eq!(containers.len(), 1, "one container");
    containers.into_iter().next().expect("one container")
}

#[test]
fn audit_overlay_is_the_base_plus_the_audit_component() {
    let overlay = Rendered::of("overlays/audit");
    overlay.assert_every_object_parses();
    let base = Rendered::of("base");
    let mut expected = base.names();
    expected.extend(
        [
            "ServiceAccount/wasmhook-audit",
            "ClusterRole/wasmhook-audit",
            "ClusterRoleBinding/wasmhook-audit",
            "CronJob/wasmhook-audit",
        ]
        .map(String::from),
    );
    let mut names = overlay.names();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    // The admission server is the base's, untouched; no CRD comes with the
    // overlay (deleting it must never delete the cluster's reports).
    assert_eq!(args(&overlay.deployment()), args(&base.deployment()));
    assert_eq!(
        overlay.find("Deployment", SERVICE),
        base.find("Deployment", SERVICE),
        "the Deployment is the base's"
    );
    assert!(
        overlay
            .objects
            .iter()
            .all(|object| object["kind"] != "CustomResourceDefinition"),
        "the CRDs are installed on their own (deploy/crds)"
    );
    for kind in ["ServiceAccount", "CronJob"] {
        let object = overlay.find(kind, "wasmhook-audit").expect("rendered");
        assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{kind}");
    }
}

#[test]
fn audit_cron_job_runs_audit_with_the_deployments_image_policy_set_and_hardening() {
    let overlay = Rendered::of("overlays/audit");
    let cron_job = cron_job(&overlay);
    let container = audit_container(&cron_job);
    let pod = pod_spec(&cron_job);
    let deployment = overlay.deployment();
    let server = super::container(&deployment);
    let server_pod = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.clone())
        .expect("the Deployment's pod spec");

    let args = container.args.clone().unwrap_or_default();
    assert_eq!(args, AUDIT_ARGS);
    assert_eq!(container.image, server.image, "the image the Deployment runs");
    assert_eq!(container.image_pull_policy, server.image_pull_policy);

    // The same hardening as the Deployment, pod and container.
    assert_eq!(pod.security_context, server_pod.security_context);
    assert_eq!(container.security_context, server.security_context);
    let security = container.security_context.clone().expect("securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.and_then(|capabilities| capabilities.drop),
        Some(vec!["ALL".to_owned()])
    );
    let seccomp = pod
        .security_context
        .clone()
        .and_then(|context| context.seccomp_profile)
        .expect("seccompProfile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
    let resources = container.resources.clone().expect("resources");
    for (what, quantities) in [("requests", &resources.requests), ("limits", &resources.limits)] {
        let quantities = quantities.clone().unwrap_or_default();
        assert!(
            quantities.contains_key("cpu") && quantities.contains_key("memory"),
            "{what}"
        );
    }

    // The policy set is the Deployment's ConfigMap, by its hashed name.
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    let volume_at = |path: &str| {
        let mount = mounts
            .iter()
            .find(|mount| std::path::Path::new(path).starts_with(&mount.mount_path))
            .unwrap_or_else(|| panic!("{path} is on no volume"));
        let volume = volumes
            .iter()
            .find(|volume| volume.name == mount.name)
            .expect("the mounted volume");
        (mount.clone(), volume.clone())
    };
    let config = flag_value(&args, "--config").expect("--config");
    let (mount, volume) = volume_at(config);
    let config_map = str_at(overlay.only("ConfigMap"), "/metadata/name");
    assert!(config_map.starts_with("wasmhook-policies-"), "{config_map}: hashed");
    assert_eq!(volume.config_map.map(|c| c.name).as_deref(), Some(config_map));
    assert_eq!(mount.read_only, Some(true));
    let server_args = super::args(&deployment);
    assert_eq!(Some(config), flag_value(&server_args, "--config"), "the same file");

    // The compile cache: a writable emptyDir named by WASMHOOK_CACHE_DIR, as
    // `eval` and `test` read it (the root filesystem is read-only).
    let cache = container
        .env
        .iter()
        .flatten()
        .find(|variable| variable.name == "WASMHOOK_CACHE_DIR")
        .and_then(|variable| variable.value.clone())
        .expect("WASMHOOK_CACHE_DIR");
    let (mount, volume) = volume_at(&cache);
    let empty_dir = volume.empty_dir.expect("an emptyDir");
    assert!(empty_dir.size_limit.is_some(), "bounded");
    assert_ne!(mount.read_only, Some(true));

    // Its own ServiceAccount, with the token mounted (audit talks to the API server).
    let account = pod.service_account_name.clone().expect("serviceAccountName");
    assert_eq!(account, "wasmhook-audit");
    let _: ServiceAccount = overlay.get("ServiceAccount", &account);
    assert_eq!(pod.automount_service_account_token, Some(true));
}

#[test]
fn audit_cron_job_runs_hourly_one_at_a_time_and_gives_up_before_the_next_run() {
    let cron_job = cron_job(&Rendered::of("overlays/audit"));
    let spec = cron_job.spec.clone().expect("spec");
    assert_eq!(spec.schedule, "17 * * * *", "hourly");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(spec.suspend, None);
    let starting = spec.starting_deadline_seconds.expect("startingDeadlineSeconds");
    assert!((60..3600).contains(&starting), "{starting}");
    assert!(spec.successful_jobs_history_limit.is_some_and(|limit| limit > 0));
    assert!(spec.failed_jobs_history_limit.is_some_and(|limit| limit > 0));
    let job = spec.job_template.spec.clone().expect("job spec");
    // A hung run ends well before the next is due, so Forbid never skips runs for ever.
    let active = job.active_deadline_seconds.expect("activeDeadlineSeconds");
    assert!(active + starting < 3600, "{active} + {starting}");
    assert!(job.backoff_limit.is_some_and(|limit| (1..=3).contains(&limit)));
    let pod = pod_spec(&cron_job);
    assert_eq!(
        pod.restart_policy.as_deref(),
        Some("Never"),
        "each retry keeps its logs"
    );
    // Findings must not fail the Job (audit exits 1 on a failing object).
    let args = audit_container(&cron_job).args.unwrap_or_default();
    assert_eq!(flag_value(&args, "--fail-on"), Some("never"));
}

#[test]
fn audit_cron_job_args_are_accepted_by_wasmhook_audit() {
    // `wasmhook audit <args> --help` exits 0 only if clap accepts every
    // argument before `--help` (each flag exists, each value parses).
    let args = audit_container(&cron_job(&Rendered::of("overlays/audit")))
        .args
        .unwrap_or_default();
    super::assert_cli_accepts(&args);
}

#[test]
fn audit_rbac_is_what_wasmhook_manifests_makes_of_the_policy_set() {
    let overlay = Rendered::of("overlays/audit");
    let set = overlay.policy_set();
    let (role, binding) = wasmhook::registration::audit_rbac(&set, NAMESPACE, SERVICE);
    let rendered: ClusterRole = overlay.get("ClusterRole", "wasmhook-audit");
    assert!(rendered == role, "ClusterRole wasmhook-audit {STALE_AUDIT_RBAC}");
    let rendered: ClusterRoleBinding = overlay.get("ClusterRoleBinding", "wasmhook-audit");
    assert!(
        rendered == binding,
        "ClusterRoleBinding wasmhook-audit {STALE_AUDIT_RBAC}"
    );
    // The header too: the file is exactly what the script writes.
    let file = std::fs::read_to_string(deploy_dir().join("components/audit/rbac-audit.yaml")).expect("rbac-audit.yaml");
    let generated =
        wasmhook::registration::audit_rbac_yaml(&set, NAMESPACE, SERVICE, "deploy/base/policies.yaml").expect("YAML");
    assert!(file == generated, "rbac-audit.yaml {STALE_AUDIT_RBAC}");

    // Bound to the CronJob's account; reads only, but for its own reports.
    let subjects = binding.subjects.clone().expect("subjects");
    assert_eq!(subjects.len(), 1);
    let account = pod_spec(&cron_job(&overlay))
        .service_account_name
        .expect("serviceAccountName");
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", account.as_str(), Some(NAMESPACE))
    );
    let rules = role.rules.expect("rules");
    let granted: Vec<(String, Vec<String>, Vec<String>)> = rules
        .into_iter()
        .map(|rule| {
            assert!(rule.resource_names.is_none());
            (
                rule.api_groups.unwrap_or_default().join(","),
                rule.resources.unwrap_or_default(),
                rule.verbs,
            )
        })
        .collect();
    let strings = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        granted,
        [
            (
                String::new(),
                strings(&["namespaces", "services"]),
                strings(&["get", "list"])
            ),
            ("apps".to_owned(), strings(&["statefulsets"]), strings(&["get", "list"])),
            (
                "wgpolicyk8s.io".to_owned(),
                strings(&["clusterpolicyreports", "policyreports"]),
                strings(&["get", "list", "create", "patch", "delete"])
            ),
        ]
    );
}

#[test]
fn policy_report_crds_are_the_working_groups_v1alpha2_schema() {
    let crds = Rendered::of("crds");
    crds.assert_every_object_parses();
    let mut schemas = Vec::new();
    for (name, kind, plural, short, scope) in [
        (
            "policyreports.wgpolicyk8s.io",
            "PolicyReport",
            "policyreports",
            "polr",
            "Namespaced",
        ),
        (
            "clusterpolicyreports.wgpolicyk8s.io",
            "ClusterPolicyReport",
            "clusterpolicyreports",
            "cpolr",
            "Cluster",
        ),
    ] {
        let crd = crds.find("CustomResourceDefinition", name).expect(name);
        assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
        assert!(
            crd["metadata"].get("labels").is_none(),
            "{name}: shared with other tools"
        );
        let spec = &crd["spec"];
        assert_eq!(spec["group"], "wgpolicyk8s.io");
        assert_eq!(spec["scope"], scope);
        assert_eq!(
            spec["names"],
            json!({
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_ascii_lowercase(),
                "shortNames": [short],
            })
        );
        let versions = spec["versions"].as_array().expect("versions");
        assert_eq!(versions.len(), 1, "{name}: v1alpha2 only");
        let version = &versions[0];
        assert_eq!(
            (&version["name"], &version["served"], &version["storage"]),
            (&json!("v1alpha2"), &json!(true), &json!(true))
        );
        let columns: Vec<(String, String, String, i64)> = version["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .map(|column| {
                (
                    str_at(column, "/name").to_owned(),
                    str_at(column, "/type").to_owned(),
                    str_at(column, "/jsonPath").to_owned(),
                    column["priority"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        let column = |name: &str, type_: &str, path: &str, priority: i64| {
            (name.to_owned(), type_.to_owned(), path.to_owned(), priority)
        };
        assert_eq!(
            columns,
            [
                column("Kind", "string", ".scope.kind", 1),
                column("Name", "string", ".scope.name", 1),
                column("Pass", "integer", ".summary.pass", 0),
                column("Fail", "integer", ".summary.fail", 0),
                column("Warn", "integer", ".summary.warn", 0),
                column("Error", "integer", ".summary.error", 0),
                column("Skip", "integer", ".summary.skip", 0),
                column("Age", "date", ".metadata.creationTimestamp", 0),
            ]
        );
        let schema = version["schema"]["openAPIV3Schema"].clone();
        assert_structural(&schema, name);
        assert_report_fields(&schema, name);
        schemas.push(without_descriptions(schema));
    }
    assert!(
        schemas[0] == schemas[1],
        "the two CRDs' schemas differ beyond their descriptions"
    );
}

/// The fields of a report and of each result, as the working group defines them.
fn assert_report_fields(schema: &Value, name: &str) {
    let keys = |value: &Value| -> Vec<String> {
        let mut keys: Vec<String> = value["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: no properties in {value}"))
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(schema),
        [
            "apiVersion",
            "kind",
            "metadata",
            "results",
            "scope",
            "scopeSelector",
            "summary"
        ]
    );
    let summary = &schema["properties"]["summary"];
    assert_eq!(keys(summary), ["error", "fail", "pass", "skip", "warn"]);
    for count in ["error", "fail", "pass", "skip", "warn"] {
        assert_eq!(
            summary["properties"][count]["type"], "integer",
            "{name}: summary.{count}"
        );
    }
    let result = &schema["properties"]["results"]["items"];
    assert_eq!(
        keys(result),
        [
            "category",
            "message",
            "policy",
            "properties",
            "resourceSelector",
            "resources",
            "result",
            "rule",
            "scored",
            "severity",
            "source",
            "timestamp"
        ]
    );
    assert_eq!(result["required"], json!(["policy"]));
    let field = |name: &str| &result["properties"][name];
    assert_eq!(
        field("result")["enum"],
        json!(["pass", "fail", "warn", "error", "skip"])
    );
    assert_eq!(
        field("severity")["enum"],
        json!(["critical", "high", "low", "medium", "info"])
    );
    assert_eq!(field("scored")["type"], "boolean");
    assert_eq!(field("properties")["additionalProperties"], json!({"type": "string"}));
    let timestamp = field("timestamp");
    assert_eq!(timestamp["required"], json!(["nanos", "seconds"]));
    assert_eq!(timestamp["properties"]["seconds"]["format"], "int64");
    assert_eq!(timestamp["properties"]["nanos"]["format"], "int32");
    // ObjectReference and LabelSelector, as Kubernetes defines them (atomic).
    let reference = [
        "apiVersion",
        "fieldPath",
        "kind",
        "name",
        "namespace",
        "resourceVersion",
        "uid",
    ];
    for object_reference in [&schema["properties"]["scope"], &field("resources")["items"]] {
        assert_eq!(keys(object_reference), reference, "{name}");
        assert_eq!(object_reference["x-kubernetes-map-type"], "atomic", "{name}");
    }
    for selector in [&schema["properties"]["scopeSelector"], field("resourceSelector")] {
        assert_eq!(keys(selector), ["matchExpressions", "matchLabels"], "{name}");
        assert_eq!(selector["x-kubernetes-map-type"], "atomic", "{name}");
        let requirement = &selector["properties"]["matchExpressions"]["items"];
        assert_eq!(requirement["required"], json!(["key", "operator"]), "{name}");
    }
}

/// A structural schema, as apiextensions.k8s.io/v1 requires: every node has
/// a type (objects, arrays and their members alike).
fn assert_structural(schema: &Value, at: &str) {
    assert!(
        schema["type"].is_string(),
        "{at}: no type (apiextensions.k8s.io/v1 requires a structural schema)"
    );
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            assert_structural(property, &format!("{at}.{name}"));
        }
    }
    for nested in ["items", "additionalProperties"] {
        if schema[nested].is_object() {
            assert_structural(&schema[nested], &format!("{at}.{nested}"));
        }
    }
}

fn without_descriptions(value: Value) -> Value {
    match value {
        Value::Object(members) => members
            .into_iter()
            .filter(|(key, _)| key != "description")
            .map(|(key, value)| (key, without_descriptions(value)))
            .collect(),
        Value::Array(items) => items.into_iter().map(without_descriptions).collect(),
        other => other,
    }
}
