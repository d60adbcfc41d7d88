//! The policy-set format: the commented example parses to exactly what it
//! says, and absent fields take their defaults. The error cases, each checked
//! for the file, the policy and the field it names, are in `tests/errors.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::policy::{Action, FailurePolicy, Mode};

mod errors;

/// The engine maximum the tests pass in.
const MAX: usize = 512 << 20;
/// A directory that does not exist, for module paths that must not resolve.
const BASE: &str = "/nonexistent/wasmhook-config";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/policy-sets")
        .join(name)
}

/// A policy set with the given `policies:` entries (YAML, indented by two).
fn set(entries: &str) -> String {
    format!("apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n{entries}")
}

fn parse(yaml: &str) -> Result<PolicySet, ConfigError> {
    PolicySet::from_yaml("policies.yaml", yaml, Path::new(BASE), MAX)
}

fn error(yaml: &str) -> String {
    match parse(yaml) {
        Ok(set) => panic!("accepted:\n{yaml}\nas {set:#?}"),
        Err(error) => error.to_string(),
    }
}

/// The error for `entry` as the second policy of a set (after a valid one),
/// so messages must locate it by index as well as by name.
fn entry_error(entry: &str) -> String {
    error(&set(&format!(
        "  - name: first\n    module: builtin:headless-service\n{entry}"
    )))
}

/// The one policy of a set holding just `entry`.
fn only(entry: &str) -> PolicyConfig {
    let yaml = set(entry);
    let mut set = parse(&yaml).unwrap_or_else(|error| panic!("{error}\n{yaml}"));
    assert_eq!(set.policies.len(), 1);
    set.policies.remove(0)
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|&item| item.to_owned()).collect())
}

fn rule(operations: &[&str], groups: &[&str], resources: &[&str], scope: Option<&str>) -> RuleWithOperations {
    RuleWithOperations {
        operations: strings(operations),
        api_groups: strings(groups),
        api_versions: strings(&["v1"]),
        resources: strings(resources),
        scope: scope.map(str::to_owned),
    }
}

#[track_caller]
fn assert_message(message: &str, expected: &str) {
    assert_eq!(message, expected);
}

#[track_caller]
fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

/// The error for a policy that is valid but for `field: value`.
fn with_field(field: &str, value: &str) -> String {
    entry_error(&format!(
        "  - name: web\n    module: builtin:headless-service\n    {field}: {value}\n"
    ))
}

// ---------------------------------------------------------------- valid sets

#[test]
fn the_example_parses_to_every_field_it_writes() {
    let set = PolicySet::from_file(&fixture("example.yaml"), MAX).unwrap();
    assert_eq!(set.policies.len(), 2);

    let headless = set.get("headless-service").unwrap();
    assert_eq!(headless.module, ModuleSource::Builtin("headless-service"));
    assert_eq!(headless.sha256, None);
    assert_eq!(
        headless.enforcement,
        Enforcement {
            mode: Mode::Mutate,
            action: Action::Enforce,
            failure_policy: FailurePolicy::Fail,
        }
    );
    assert_eq!(
        headless.limits,
        Limits {
            timeout: Duration::from_secs(2),
            memory: 64 << 20,
        }
    );
    assert_eq!(
        headless.settings,
        json!({"nameSuffixes": ["-headless"], "skipNamespaces": ["kube-system"], "publishNotReadyAddresses": true})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&headless.settings_json()).unwrap(),
        headless.settings
    );
    assert_eq!(
        headless.rules,
        [rule(&["CREATE", "UPDATE"], &[""], &["services"], Some("Namespaced"))]
    );
    assert_eq!(
        serde_json::to_value(&headless.namespace_selector).unwrap(),
        json!({"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kube-public"]}
        ]})
    );
    assert_eq!(
        serde_json::to_value(&headless.object_selector).unwrap(),
        json!({"matchLabels": {"wasmhook.dev/skip": "false"}})
    );
    assert_eq!(
        headless.match_conditions,
        [MatchCondition {
            name: "not-a-dry-run".into(),
            expression: "!request.dryRun".into(),
        }]
    );

    let statefulset = &set.policies[1];
    assert_eq!(statefulset.name, "statefulset-service-name");
    assert_eq!(statefulset.module, ModuleSource::Builtin("statefulset-service-name"));
    assert_eq!(
        statefulset.enforcement,
        Enforcement {
            mode: Mode::Validate,
            action: Action::Monitor,
            failure_policy: FailurePolicy::Ignore,
        }
    );
    assert_eq!(
        statefulset.limits,
        Limits {
            timeout: Duration::from_millis(500),
            memory: 32 << 20,
        }
    );
    assert_eq!(statefulset.settings, Value::Null);
    assert_eq!(statefulset.settings_json(), "null");
    assert_eq!(
        statefulset.rules,
        [rule(&["CREATE"], &["apps"], &["statefulsets"], Some("*"))]
    );
    assert_eq!(statefulset.namespace_selector, None);
    assert_eq!(statefulset.object_selector, None);
    assert!(statefulset.match_conditions.is_empty());
}

#[test]
fn absent_fields_take_their_defaults() {
    let policy = only("  - name: web\n    module: builtin:headless-service\n");
    assert_eq!(policy.name, "web");
    assert_eq!(policy.sha256, None);
    assert_eq!(policy.enforcement, Enforcement::default());
    assert_eq!(policy.enforcement.mode, Mode::Mutate);
    assert_eq!(policy.enforcement.action, Action::Enforce);
    assert_eq!(policy.enforcement.failure_policy, FailurePolicy::Fail);
    assert_eq!(
        policy.limits,
        Limits {
            timeout: Duration::from_secs(2),
            memory: 128 << 20,
        }
    );
    assert_eq!(policy.settings, Value::Null);
    assert_eq!(policy.settings_json(), "null");
    assert_eq!(policy.rules, raw::builtin_rules("headless-service", &[]).unwrap());
    assert_eq!(policy.namespace_selector, None);
    assert_eq!(policy.object_selector, None);
    assert!(policy.match_conditions.is_empty());
}

#[test]
fn the_default_memory_limit_never_exceeds_the_engine_maximum() {
    let yaml = set("  - name: web\n    module: builtin:headless-service\n");
    let set = PolicySet::from_yaml("policies.yaml", &yaml, Path::new(BASE), 64 << 20).unwrap();
    assert_eq!(set.policies[0].limits.memory, 64 << 20);
}

#[test]
fn the_builtin_default_serves_both_builtins_with_their_rules() {
    let set = PolicySet::builtin_default();
    let names: Vec<&str> = set.policies.iter().map(|policy| policy.name.as_str()).collect();
    assert_eq!(names, ["headless-service", "statefulset-service-name"]);

    let headless = set.get("headless-service").unwrap();
    assert_eq!(headless.module, ModuleSource::Builtin("headless-service"));
    assert_eq!(
        headless.rules,
        [rule(&["CREATE", "UPDATE"], &[""], &["services"], None)]
    );
    let statefulset = set.get("statefulset-service-name").unwrap();
    assert_eq!(statefulset.module, ModuleSource::Builtin("statefulset-service-name"));
    assert_eq!(
        statefulset.rules,
        [rule(&["CREATE"], &["apps"], &["statefulsets"], None)]
    );
    for policy in &set.policies {
        assert_eq!(policy.enforcement, Enforcement::default());
        assert_eq!(policy.limits, Limits::default());
        assert_eq!(policy.settings, Value::Null);
        assert!(policy.read_module(&local()).unwrap().starts_with(b"\0asm"));
    }
    assert!(set.get("nope").is_none());

    // The same as a file naming both built-ins and nothing else.
    let written = parse(&set_of_builtins()).unwrap();
    assert_eq!(written, set);
}

fn set_of_builtins() -> String {
    set("  - name: headless-service\n    module: builtin:headless-service\n  \
         - name: statefulset-service-name\n    module: builtin:statefulset-service-name\n")
}

#[test]
fn names_may_be_63_characters() {
    let name = format!("a{}", "-b".repeat(31));
    assert_eq!(name.len(), 63);
    assert_eq!(
        only(&format!("  - name: {name}\n    module: builtin:headless-service\n")).name,
        name
    );
}

#[test]
fn limits_accept_the_edges_of_their_ranges() {
    let policy = |timeout: &str, memory: &str| {
        only(&format!(
            "  - name: web\n    module: builtin:headless-service\n    timeout: {timeout}\n    memoryLimit: {memory}\n"
        ))
        .limits
    };
    assert_eq!(
        policy("100ms", "1Mi"),
        Limits {
            timeout: Duration::from_millis(100),
            memory: 1 << 20,
        }
    );
    assert_eq!(
        policy("30s", "512Mi"),
        Limits {
            timeout: Duration::from_secs(30),
            memory: MAX,
        }
    );
    assert_eq!(policy("0.5s", "2097152").memory, 2 << 20, "plain bytes");
    assert_eq!(policy("1.5s", "100M").memory, 100_000_000, "decimal suffix");
    assert_eq!(policy("2s", "1048576").timeout, Duration::from_secs(2));
}

#[test]
fn modules_are_pinned_by_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = b"\0asm\x0d\0\x01\0 not really a component";
    std::fs::write(dir.path().join("p.wasm"), wasm).unwrap();
    let digest = sha256_hex(wasm);
    let load = |pin: &str| {
        let yaml = set(&format!(
            "  - name: p\n    module: p.wasm\n    sha256: \"{pin}\"\n    rules: [{{operations: [CREATE], apiGroups: [\"\"], \
             apiVersions: [v1], resources: [pods]}}]\n"
        ));
        PolicySet::from_yaml("policies.yaml", &yaml, dir.path(), MAX)
    };

    let set = load(&digest).unwrap();
    assert_eq!(set.policies[0].sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(&*set.policies[0].read_module(&local()).unwrap(), wasm);

    let wrong = "0".repeat(64);
    let message = load(&wrong).unwrap_err().to_string();
    let path = dir.path().join("p.wasm");
    assert_message(
        &message,
        &format!(
            "policies.yaml: policy \"p\" (policies[0]): module {}: sha256 mismatch: pinned {wrong}, file has {digest}",
            path.display()
        ),
    );

    // The pin is checked again whenever the module is read.
    std::fs::write(&path, b"\0asm changed").unwrap();
    let message = set.policies[0].read_module(&local()).unwrap_err().to_string();
    assert_contains(
        &message,
        &[
            "policy \"p\": module ",
            &path.display().to_string(),
            "sha256 mismatch",
            &digest,
            &sha256_hex(b"\0asm changed"),
        ],
    );
}

#[test]
fn builtins_can_be_pinned_too() {
    // Without `context:`, the build without the cluster-context checks.
    let digest = sha256_hex(&ModuleSource::Builtin("headless-service").read(false).unwrap());
    let pinned = |pin: &str| {
        set(&format!(
            "  - name: web\n    module: builtin:headless-service\n    sha256: \"{pin}\"\n"
        ))
    };
    assert_eq!(
        parse(&pinned(&digest)).unwrap().policies[0].sha256,
        Some(digest.clone())
    );
    let wrong = "f".repeat(64);
    assert_message(
        &error(&pinned(&wrong)),
        &format!(
            "policies.yaml: policy \"web\" (policies[0]): module builtin:headless-service: sha256 mismatch: \
             pinned {wrong}, built-in has {digest}"
        ),
    );
}

#[test]
fn relative_module_paths_are_resolved_against_the_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("modules")).unwrap();
    std::fs::write(dir.path().join("modules/p.wasm"), b"\0asm").unwrap();
    let file = dir.path().join("policies.yaml");
    std::fs::write(
        &file,
        set(
            "  - name: p\n    module: ./modules/p.wasm\n    rules: [{operations: [\"*\"], apiGroups: [\"*\"], \
             apiVersions: [\"*\"], resources: [\"*\"]}]\n",
        ),
    )
    .unwrap();
    let loaded = PolicySet::from_file(&file, MAX).unwrap();
    assert_eq!(
        loaded.policies[0].module,
        ModuleSource::File(dir.path().join("modules/p.wasm"))
    );

    // An absolute path is used as it is.
    let absolute = dir.path().join("modules/p.wasm");
    let yaml = set(&format!(
        "  - name: p\n    module: {}\n    rules: [{{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], \
         resources: [pods]}}]\n",
        absolute.display()
    ));
    let loaded = PolicySet::from_yaml("policies.yaml", &yaml, Path::new(BASE), MAX).unwrap();
    assert_eq!(loaded.policies[0].module, ModuleSource::File(absolute));
}

#[test]
fn yaml_1_1_booleans_are_strings() {
    // `y`, `on` and `no` are booleans in YAML 1.1 (the "Norway problem").
    let set = parse(&set("  - name: y\n    module: builtin:headless-service\n  \
         - name: on\n    module: builtin:statefulset-service-name\n    settings: {a: no}\n"))
    .unwrap();
    assert_eq!(set.policies[0].name, "y");
    assert_eq!(set.policies[1].name, "on");
    assert_eq!(set.policies[1].settings, json!({"a": "no"}));
}

#[test]
fn settings_are_any_yaml_value_given_as_json() {
    let policy = only(
        "  - name: web\n    module: builtin:headless-service\n    settings:\n      a: [1, two]\n      b: {c: null}\n",
    );
    assert_eq!(policy.settings, json!({"a": [1, "two"], "b": {"c": null}}));
    assert_eq!(policy.settings_json(), r#"{"a":[1,"two"],"b":{"c":null}}"#);
    let policy = only("  - name: web\n    module: builtin:headless-service\n    settings: 3\n");
    assert_eq!(policy.settings_json(), "3");
}

#[test]
fn context_declarations_are_read_with_their_scope() {
    use crate::context::{ResourceKind, Scope};
    let policy = only(
        "  - name: sts\n    module: builtin:statefulset-service-name\n    context:\n      \
         - {apiVersion: v1, kind: Service}\n      - {apiVersion: apps/v1, kind: StatefulSet, scope: RequestNamespace}\n",
    );
    let declared: Vec<(ResourceKind, Scope)> = policy
        .context
        .iter()
        .map(|declaration| (declaration.kind.clone(), declaration.scope))
        .collect();
    assert_eq!(
        declared,
        [
            (ResourceKind::new("v1", "Service"), Scope::Cluster),
            (ResourceKind::new("apps/v1", "StatefulSet"), Scope::RequestNamespace),
        ]
    );
    assert!(
        only("  - name: web\n    module: builtin:headless-service\n")
            .context
            .is_empty()
    );
}

#[test]
fn headless_service_sees_deletions_only_with_statefulsets_in_its_context() {
    let without = only("  - name: web\n    module: builtin:headless-service\n");
    assert_eq!(without.rules, [rule(&["CREATE", "UPDATE"], &[""], &["services"], None)]);
    let with = only(
        "  - name: web\n    module: builtin:headless-service\n    context: [{apiVersion: apps/v1, kind: StatefulSet}]\n",
    );
    assert_eq!(
        with.rules,
        [rule(&["CREATE", "UPDATE", "DELETE"], &[""], &["services"], None)]
    );
}

#[test]
fn bad_context_declarations_name_the_field() {
    let cases = [
        ("[{apiVersion: v1}]", "context[0]", "missing field `kind`"),
        (
            "[{apiVersion: v1, kind: service}]",
            "context[0].kind",
            "\"service\" is not a kind",
        ),
        (
            "[{apiVersion: apps/v1/x, kind: Service}]",
            "context[0].apiVersion",
            "is not an apiVersion",
        ),
        (
            "[{apiVersion: v1, kind: Service, scope: Namespace}]",
            "context[0].scope",
            "unknown variant `Namespace`",
        ),
        (
            "[{apiVersion: v1, kind: Service}, {apiVersion: v1, kind: Service}]",
            "context[1].kind",
            "v1 Service is declared twice",
        ),
        (
            "[{apiVersion: v1, kind: Service, verbs: [get]}]",
            "context[0]",
            "unknown field `verbs`",
        ),
    ];
    for (context, field, expected) in cases {
        let message = entry_error(&format!(
            "  - name: second\n    module: builtin:headless-service\n    context: {context}\n"
        ));
        assert!(
            message.contains(&format!("policy \"second\" (policies[1]): {field}: ")) || message.contains(field),
            "{context}: {message}"
        );
        assert!(message.contains(expected), "{context}: {message}");
    }
    assert_eq!(
        crate::config::context_declarations(serde_json::json!([{"apiVersion": "v1"}])).unwrap_err(),
        "context[0]: missing field `kind`"
    );
}

/// A registry client for modules that need none (built-ins and files).
fn local() -> crate::oci::Registry {
    crate::oci::Registry::new(crate::oci::RegistryConfig::default())
}

#[test]
fn registry_modules_are_parsed_not_pulled_and_signatures_read_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(dir.path().join("team.pub"), key.public_key_pem()).unwrap();
    let rules = "    rules: [{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [services]}]\n";
    let parse_in = |entries: &str| PolicySet::from_yaml("policies.yaml", &set(entries), dir.path(), MAX);

    // Nothing listens on this registry: parsing a set never pulls.
    let loaded = parse_in(&format!(
        "  - name: web\n    module: oci://127.0.0.1:1/policies/web:v1\n    signatures: {{keys: [team.pub], require: any}}\n{rules}"
    ))
    .unwrap();
    let policy = &loaded.policies[0];
    let ModuleSource::Oci(reference) = &policy.module else {
        panic!("{:?}", policy.module)
    };
    assert_eq!(reference.to_string(), "oci://127.0.0.1:1/policies/web:v1");
    let signatures = policy.signatures.as_ref().expect("signatures");
    assert!(!signatures.require_all);
    assert_eq!(signatures.keys[0].path, dir.path().join("team.pub"));
    assert_eq!(policy.module.default_policy_name(), "web");

    let error = |entries: &str| parse_in(entries).unwrap_err().to_string();
    let message = error("  - name: web\n    module: oci://127.0.0.1:1/policies/web:v1\n");
    assert!(
        message.contains("field rules: required for a policy from a file or a registry"),
        "{message}"
    );
    let message = error(&format!("  - name: web\n    module: oci://web:v1\n{rules}"));
    assert!(
        message.contains("field module:") && message.contains("name the registry host"),
        "{message}"
    );
    let message = error("  - name: web\n    module: builtin:headless-service\n    signatures: {keys: [team.pub]}\n");
    assert!(
        message.contains("field signatures: only a module from a registry"),
        "{message}"
    );
    let message = error(&format!(
        "  - name: web\n    module: oci://127.0.0.1:1/policies/web:v1\n    signatures: {{keys: [missing.pub]}}\n{rules}"
    ));
    assert!(
        message.contains("field signatures.keys[0]") && message.contains("missing.pub"),
        "{message}"
    );
    let message = error(&format!(
        "  - name: web\n    module: oci://127.0.0.1:1/policies/web:v1\n    signatures: {{keys: []}}\n{rules}"
    ));
    assert!(
        message.contains("field signatures.keys: must list at least one"),
        "{message}"
    );
}
