//! What the backstop is made of, read back from its YAML as k8s-openapi
//! types: which policies get one and why the others do not, the rules and
//! selectors they carry, and the settings as CEL constants. Whether the CEL
//! decides as the built-ins do is checked on a real API server
//! (tests/kube/backstop.rs).

use std::path::Path;

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use serde_json::Value;

use super::*;

fn policy_set_in(yaml: &str, dir: &Path) -> PolicySet {
    PolicySet::from_yaml("policies.yaml", yaml, dir, usize::MAX).unwrap_or_else(|error| panic!("{error}"))
}

fn policy_set(yaml: &str) -> PolicySet {
    policy_set_in(yaml, Path::new("."))
}

fn build_set(set: &PolicySet) -> Backstop {
    Backstop::build(set, "wasmhook-system", "wasmhook").unwrap_or_else(|error| panic!("{error}"))
}

fn build(yaml: &str) -> Backstop {
    build_set(&policy_set(yaml))
}

/// The variable `name` of a backstop.
fn variable<'a>(policy: &'a BackstopPolicy, name: &str) -> &'a str {
    policy
        .spec
        .variables
        .iter()
        .flatten()
        .find(|variable| variable.name == name)
        .map(|variable| variable.expression.as_str())
        .unwrap_or_else(|| panic!("no variable {name}"))
}

fn operations(policy: &BackstopPolicy) -> Vec<Vec<String>> {
    policy
        .resource_rules()
        .into_iter()
        .map(|rule| rule.operations.unwrap_or_default())
        .collect()
}

/// deploy/base's shape: each built-in twice (mutate and its -verify twin),
/// and the Service dependents check on UPDATE and DELETE.
const BASE: &str = r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: headless-service
    module: builtin:headless-service
    rules: &services
      - {operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [services], scope: Namespaced}
  - name: statefulset-service-name
    module: builtin:statefulset-service-name
    context: [{apiVersion: v1, kind: Service}]
    rules: &statefulsets
      - {operations: [CREATE], apiGroups: [apps], apiVersions: [v1], resources: [statefulsets], scope: Namespaced}
  - name: headless-service-verify
    module: builtin:headless-service
    mode: validate
    rules: *services
  - name: statefulset-service-name-verify
    module: builtin:statefulset-service-name
    mode: validate
    rules: *statefulsets
  - name: headless-service-dependents
    module: builtin:headless-service
    mode: validate
    failurePolicy: Ignore
    context: [{apiVersion: apps/v1, kind: StatefulSet}]
    rules:
      - {operations: [UPDATE, DELETE], apiGroups: [""], apiVersions: [v1], resources: [services], scope: Namespaced}
"#;

#[test]
fn one_backstop_per_built_in_and_twins_with_the_same_checks_share_it() {
    let backstop = build(BASE);
    let summary: Vec<(&str, Vec<&str>)> = backstop
        .policies
        .iter()
        .map(|policy| (policy.name.as_str(), policy.covers.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "wasmhook-headless-service",
                vec![
                    "headless-service",
                    "headless-service-verify",
                    "headless-service-dependents"
                ]
            ),
            (
                "wasmhook-statefulset-service-name",
                vec!["statefulset-service-name", "statefulset-service-name-verify"]
            ),
        ]
    );
    assert!(backstop.left_out.is_empty(), "{:?}", backstop.left_out);
    // DELETE is judged only with the cluster: never in a backstop.
    assert_eq!(operations(&backstop.policies[0]), [["CREATE", "UPDATE"]]);
    assert_eq!(operations(&backstop.policies[1]), [["CREATE"]]);
}

#[test]
fn wider_rules_or_other_settings_make_a_backstop_of_their_own() {
    let backstop = build(
        r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: updates-only
    module: builtin:headless-service
    rules: [{operations: [UPDATE], apiGroups: [""], apiVersions: [v1], resources: [services]}]
  - name: creates-too
    module: builtin:headless-service
    rules: [{operations: ["*"], apiGroups: [""], apiVersions: [v1], resources: [services]}]
  - name: prefixed
    module: builtin:headless-service
    settings: {namePrefixes: [peer-]}
"#,
    );
    let names: Vec<&str> = backstop.policies.iter().map(|policy| policy.name.as_str()).collect();
    assert_eq!(
        names,
        ["wasmhook-updates-only", "wasmhook-creates-too", "wasmhook-prefixed"]
    );
    // A wildcard becomes the operations the backstop judges.
    assert_eq!(operations(&backstop.policies[1]), [["CREATE", "UPDATE"]]);
}

#[test]
fn what_cel_cannot_judge_has_no_backstop_and_the_stream_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.wasm"), b"\0asm").unwrap();
    let set = policy_set_in(
        r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: own-policy
    module: policy.wasm
    rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [services]}]
  - name: watching
    module: builtin:headless-service
    action: monitor
  - name: deletes
    module: builtin:headless-service
    rules: [{operations: [DELETE], apiGroups: [""], apiVersions: [v1], resources: [services]}]
  - name: status
    module: builtin:headless-service
    rules: [{operations: [UPDATE], apiGroups: [""], apiVersions: [v1], resources: [services/status]}]
"#,
        dir.path(),
    );
    let backstop = build_set(&set);
    assert!(backstop.policies.is_empty());
    let reasons: Vec<(&str, &str)> = backstop
        .left_out
        .iter()
        .map(|left_out| (left_out.policy.as_str(), left_out.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].1.contains("policy.wasm is not a built-in policy"),
        "{reasons:?}"
    );
    assert!(reasons[1].1.starts_with("action monitor"), "{reasons:?}");
    assert!(reasons[2].1.contains("select no CREATE or UPDATE"), "{reasons:?}");
    assert!(reasons[3].1.contains("select no CREATE or UPDATE"), "{reasons:?}");

    let yaml = backstop.to_yaml("policies.yaml", ApiVersion::V1).unwrap();
    assert!(
        yaml.contains("# No policy of the set can be backed up: nothing to apply.\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("/policy.wasm is not a built-in policy: its decisions are Wasm code"),
        "{yaml}"
    );
    assert!(yaml.contains("#   no backstop for watching: action monitor"), "{yaml}");
    assert!(!yaml.contains("\n---\n"), "{yaml}");
}

#[test]
fn the_match_carries_the_webhooks_exclusions_and_the_policys_selectors_and_conditions() {
    let backstop = build(
        r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: selective
    module: builtin:headless-service
    namespaceSelector: {matchLabels: {team: data}}
    objectSelector: {matchLabels: {tier: db}}
    matchConditions:
      - {name: not-a-dry-run, expression: "!request.dryRun"}
    rules:
      - {operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [services, "*/*", pods/log]}
"#,
    );
    let policy = &backstop.policies[0];
    let constraints = policy.spec.match_constraints.as_ref().unwrap();
    let namespaces = serde_json::to_value(&constraints.namespace_selector).unwrap();
    assert_eq!(
        namespaces,
        serde_json::json!({
            "matchLabels": {"team": "data"},
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["wasmhook-system", "kube-system"]},
                {"key": "wasmhook.dev/ignore", "operator": "DoesNotExist"},
            ],
        })
    );
    assert_eq!(
        serde_json::to_value(&constraints.object_selector).unwrap(),
        serde_json::json!({"matchLabels": {"tier": "db"}})
    );
    assert_eq!(constraints.match_policy.as_deref(), Some("Equivalent"));
    // Subresources are not judged by the built-ins: `*/*` is every resource.
    assert_eq!(
        policy.resource_rules()[0].resources,
        Some(vec!["services".to_owned(), "*".to_owned()])
    );
    let conditions = policy.spec.match_conditions.as_ref().unwrap();
    assert_eq!(conditions[0].expression, "!request.dryRun");
    assert_eq!(policy.spec.failure_policy.as_deref(), Some("Fail"));
}

#[test]
fn settings_become_cel_constants() {
    let backstop = build(
        r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: services
    module: builtin:headless-service
    settings:
      nameSuffixes: [-peers, "-it's"]
      namePrefixes: [db-]
      selector: {matchExpressions: [{key: role, operator: NotIn, values: [cache]}]}
      skipNamespaces: [sandbox]
      publishNotReadyAddresses: true
  - name: statefulsets
    module: builtin:statefulset-service-name
    settings: {serviceNameTemplate: "{namespace}-{name}-peers", skipNamespaces: [sandbox]}
"#,
    );
    let services = &backstop.policies[0];
    assert_eq!(
        variable(services, "selection"),
        "variables.name.endsWith('-peers') ? 'its name ends with \"-peers\"'\n\
         : variables.name.endsWith('-it\\'s') ? 'its name ends with \"-it\\'s\"'\n\
         : variables.name.startsWith('db-') ? 'its name starts with \"db-\"'\n\
         : (!('role' in variables.labels) || !(variables.labels['role'] in ['cache'])) ? \
         'its labels match the headless selector'\n\
         : ''"
    );
    let problem = variable(services, "problem");
    assert!(problem.contains("!(request.namespace in ['sandbox'])"), "{problem}");
    assert!(problem.contains("spec.publishNotReadyAddresses: true"), "{problem}");

    let statefulsets = &backstop.policies[1];
    assert_eq!(
        variable(statefulsets, "generated"),
        "request.namespace + '-' + variables.name + '-peers'"
    );
    assert!(variable(statefulsets, "problem").contains("!(request.namespace in ['sandbox'])"));
}

#[test]
fn the_messages_are_the_built_ins_own() {
    let backstop = build(BASE);
    let problem = variable(&backstop.policies[0], "problem");
    // headless_service::messages::wrong_type, with CEL where the values go.
    let wrong_type = ::headless_service::messages::wrong_type(&"\u{0}", &"\u{1}", &"\u{2}");
    let cel = wrong_type
        .replace('\u{0}', "' + variables.service + '")
        .replace('\u{1}', "' + variables.selection + '")
        .replace('\u{2}', "' + variables.type + '");
    assert!(problem.contains(&format!("'{cel}'")), "{problem}\nlacks\n{cel}");

    let problem = variable(&backstop.policies[1], "problem");
    let invalid = ::statefulset_service_name::messages::invalid_service_name(&"\u{0}", &"\u{1}", &"\u{2}");
    let cel = invalid
        .replace('\u{0}', "' + variables.statefulSet + '")
        .replace('\u{1}', "' + '\"' + variables.serviceName + '\"' + '")
        .replace('\u{2}', "' + variables.serviceNameProblem");
    assert!(problem.contains(&format!("'{cel}")), "{problem}\nlacks\n{cel}");
}

#[test]
fn settings_the_built_in_refuses_make_no_backstop() {
    let set = policy_set(
        r#"
apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: everything
    module: builtin:headless-service
    settings: {nameSuffixes: [""]}
"#,
    );
    let error = Backstop::build(&set, "wasmhook-system", "wasmhook")
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "policy \"everything\": invalid settings for builtin:headless-service: nameSuffixes[0] is empty: it would \
         select every Service"
    );
    let error = Backstop::build(&set, "Not A Namespace", "wasmhook")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("namespace \"Not A Namespace\" is not a valid name"),
        "{error}"
    );
}

#[test]
fn the_stream_is_each_policy_then_its_binding_in_the_asked_version() {
    let backstop = build(BASE);
    for version in [ApiVersion::V1, ApiVersion::V1beta1] {
        let yaml = backstop.to_yaml("deploy/base/policies.yaml", version).unwrap();
        assert!(yaml.starts_with(
            "# The built-in policies' backstop, generated by `wasmhook manifests --backstop` from \
             deploy/base/policies.yaml:\n"
        ));
        assert!(yaml.contains(&format!("({})", version.as_str())), "{yaml}");
        assert!(yaml.contains(
            "#   wasmhook-headless-service: headless-service, headless-service-verify, headless-service-dependents\n"
        ));
        let documents: Vec<Value> = yaml
            .split("\n---\n")
            .skip(1)
            .map(|document| serde_saphyr::from_str(document).unwrap())
            .collect();
        let kinds: Vec<(&str, &str, &str)> = documents
            .iter()
            .map(|document| {
                (
                    document["apiVersion"].as_str().unwrap(),
                    document["kind"].as_str().unwrap(),
                    document["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        let version = version.as_str();
        assert_eq!(
            kinds,
            [
                (version, "ValidatingAdmissionPolicy", "wasmhook-headless-service"),
                (version, "ValidatingAdmissionPolicyBinding", "wasmhook-headless-service"),
                (
                    version,
                    "ValidatingAdmissionPolicy",
                    "wasmhook-statefulset-service-name"
                ),
                (
                    version,
                    "ValidatingAdmissionPolicyBinding",
                    "wasmhook-statefulset-service-name"
                ),
            ]
        );
        // Read back as the types kubectl reads them: the same objects (v1beta1
        // has v1's fields).
        let as_v1 = |document: &Value| {
            let mut document = document.clone();
            document["apiVersion"] = Value::from(ApiVersion::V1.as_str());
            document
        };
        let definition: ValidatingAdmissionPolicy = serde_json::from_value(as_v1(&documents[0])).unwrap();
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(as_v1(&documents[1])).unwrap();
        let (expected_definition, expected_binding) = backstop.policies[0].objects();
        assert_eq!(definition.spec, expected_definition.spec);
        assert_eq!(binding.spec, expected_binding.spec);
        let binding_spec = binding.spec.unwrap();
        assert_eq!(binding_spec.policy_name.as_deref(), Some("wasmhook-headless-service"));
        assert_eq!(binding_spec.validation_actions, Some(vec!["Deny".to_owned()]));
        assert_eq!(
            definition.metadata.annotations.unwrap()[POLICIES_ANNOTATION],
            "headless-service,headless-service-verify,headless-service-dependents"
        );
    }
}
