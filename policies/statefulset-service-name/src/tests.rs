//! Unit tests of the statefulset-service-name policy, run natively through the
//! same glue as the component (`wasmhook_policy::testing`), one test per rule
//! of the crate documentation. Requests are small hand-written JSON so each
//! test shows exactly the input that matters.

use serde_json::{Value, json};
use wasmhook_policy::Verdict;
use wasmhook_policy::testing::{
    TestRequest, assert_unchanged, create, delete, denial_message, mutated_object, update, validate_settings,
};

use super::{MAX_WORKABLE_NAME, StatefulSetServiceName};

/// A StatefulSet in namespace `prod` whose selector and template labels are
/// both `app=<name>`, with `serviceName` as given (`None`: absent) and a field
/// k8s-openapi does not know.
fn statefulset(name: &str, service_name: Option<&str>) -> Value {
    let mut object = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "prod", "annotations": {"example.com/owner": "team-a"}},
        "spec": {
            "replicas": 3,
            "futureScalingPolicy": {"mode": "Burst", "keep": true},
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{
                    "name": "db",
                    "image": "postgres:17",
                    "resources": {"limits": {"memory": "1.5Gi"}},
                }]},
            },
            "podManagementPolicy": "OrderedReady",
        },
        "status": {"replicas": 0},
    });
    if let Some(service_name) = service_name {
        object["spec"]["serviceName"] = json!(service_name);
    }
    object
}

/// Evaluates a request; panics on a policy error (none of these inputs should cause one).
#[track_caller]
fn run(request: &TestRequest, settings: Value) -> Verdict {
    request
        .evaluate::<StatefulSetServiceName>(settings)
        .expect("the policy failed")
}

/// Asserts an unchanged allow without warnings.
#[track_caller]
fn assert_untouched(verdict: &Verdict) {
    assert_unchanged(verdict);
    assert!(verdict.warnings().is_empty(), "{verdict:?}");
}

/// `object` with `spec.serviceName` set.
fn with_service_name(object: &Value, service_name: &str) -> Value {
    let mut expected = object.clone();
    expected["spec"]["serviceName"] = json!(service_name);
    expected
}

/// A valid DNS-1035 label of `len` characters.
fn name_of_len(len: usize) -> String {
    let name: String = "db-".chars().chain(std::iter::repeat_n('x', len - 3)).collect();
    assert_eq!(name.len(), len);
    name
}

// ----- filling serviceName -------------------------------------------------------

#[test]
fn an_empty_service_name_is_filled_from_the_default_template() {
    let object = statefulset("web", Some(""));
    let verdict = run(&create(&object), Value::Null);
    let result = mutated_object(&verdict);
    assert_eq!(
        result,
        with_service_name(&object, "web-headless"),
        "only serviceName may change"
    );
    assert_eq!(
        result["spec"]["futureScalingPolicy"],
        json!({"mode": "Burst", "keep": true})
    );
    assert_eq!(
        result["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "1.5Gi"
    );
    assert!(verdict.warnings().is_empty());
}

#[test]
fn a_missing_service_name_is_filled() {
    let object = statefulset("web", None);
    assert!(object["spec"].get("serviceName").is_none());
    assert_eq!(
        mutated_object(&run(&create(&object), Value::Null)),
        with_service_name(&object, "web-headless")
    );
}

#[test]
fn a_custom_template_may_use_the_namespace() {
    let settings = json!({"serviceNameTemplate": "{namespace}-{name}-peers"});
    let object = statefulset("web", Some(""));
    assert_eq!(
        mutated_object(&run(&create(&object), settings)),
        with_service_name(&object, "prod-web-peers")
    );
}

#[test]
fn a_valid_service_name_is_kept() {
    let verdict = run(&create(statefulset("web", Some("web-peers"))), Value::Null);
    assert_untouched(&verdict);
    assert!(verdict.message().is_none());
}

#[test]
fn an_invalid_service_name_is_denied_with_the_reason() {
    let message = denial_message(&run(&create(statefulset("mysql", Some("MySQL_Peers"))), Value::Null));
    assert!(message.contains("StatefulSet prod/mysql"), "{message}");
    assert!(
        message.contains(r#"spec.serviceName "MySQL_Peers" is not a valid Service name"#),
        "{message}"
    );
    assert!(message.contains("DNS-1035"), "{message}");
    assert!(
        message.contains("lower case alphanumeric characters or '-' (found 'M')"),
        "{message}"
    );

    let message = denial_message(&run(&create(statefulset("mysql", Some("peers-"))), Value::Null));
    assert!(message.contains("must end with an alphanumeric character"), "{message}");

    let message = denial_message(&run(&create(statefulset("mysql", Some("1peers"))), Value::Null));
    assert!(message.contains("start with an alphabetic character"), "{message}");
}

#[test]
fn a_generated_service_name_that_is_invalid_is_denied() {
    let name = name_of_len(60);
    let message = denial_message(&run(&create(statefulset(&name, Some(""))), Value::Null));
    assert!(message.contains("has no spec.serviceName"), "{message}");
    assert!(message.contains(&format!("{name}-headless")), "{message}");
    assert!(message.contains("no more than 63 characters (it has 69)"), "{message}");
    assert!(message.contains("Set spec.serviceName"), "{message}");
}

#[test]
fn a_statefulset_without_a_name_needs_an_explicit_service_name() {
    let mut object = statefulset("", Some(""));
    object["metadata"].as_object_mut().unwrap().remove("name");
    object["metadata"]["generateName"] = json!("web-");
    // The request has no name either, as the API server sends it.
    let message = denial_message(&run(&create(&object), Value::Null));
    assert!(
        message.contains("has a generated name and no spec.serviceName"),
        "{message}"
    );

    // With a serviceName it is fine.
    object["spec"]["serviceName"] = json!("web-peers");
    assert_untouched(&run(&create(&object), Value::Null));
}

// ----- selector and template labels -----------------------------------------

#[test]
fn a_selector_label_with_a_different_value_is_named() {
    let mut object = statefulset("web", Some(""));
    object["spec"]["template"]["metadata"]["labels"] = json!({"app": "dbx"});
    let message = denial_message(&run(&create(&object), Value::Null));
    assert!(message.contains("StatefulSet prod/web"), "{message}");
    assert!(
        message.contains("spec.selector does not match spec.template.metadata.labels"),
        "{message}"
    );
    assert!(
        message.contains(r#"label "app" is "db" in the selector but "dbx" in the template"#),
        "{message}"
    );
}

#[test]
fn a_selector_label_missing_from_the_template_is_named() {
    let mut object = statefulset("web", Some("web-headless"));
    object["spec"]["selector"]["matchLabels"] = json!({"app": "db", "tier": "data"});
    let message = denial_message(&run(&create(&object), Value::Null));
    assert!(
        message.contains(r#"label "tier"="data" is in the selector but not in the template"#),
        "{message}"
    );
    assert!(
        !message.contains(r#"label "app""#),
        "a matching label is not reported: {message}"
    );
}

#[test]
fn every_differing_label_is_named() {
    let mut object = statefulset("web", Some("web-headless"));
    object["spec"]["selector"]["matchLabels"] = json!({"app": "mysql", "tier": "db"});
    object["spec"]["template"]["metadata"]["labels"] = json!({"app": "mysqld"});
    let message = denial_message(&run(&create(&object), Value::Null));
    assert!(
        message.contains(r#"label "app" is "mysql" in the selector but "mysqld" in the template; "#),
        "{message}"
    );
    assert!(
        message.contains(r#"label "tier"="db" is in the selector but not in the template"#),
        "{message}"
    );
}

#[test]
fn template_labels_beyond_the_selector_are_fine() {
    let mut object = statefulset("web", Some(""));
    object["spec"]["template"]["metadata"]["labels"] = json!({"app": "db", "version": "17"});
    assert_eq!(
        mutated_object(&run(&create(&object), Value::Null)),
        with_service_name(&object, "web-headless")
    );
}

#[test]
fn match_expressions_must_be_satisfied_by_the_template() {
    let mut object = statefulset("web", Some("web-headless"));
    object["spec"]["selector"] =
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "cache"]}]});
    assert_untouched(&run(&create(&object), Value::Null));

    object["spec"]["template"]["metadata"]["labels"] = json!({"app": "web"});
    let message = denial_message(&run(&create(&object), Value::Null));
    assert!(
        message.contains("do not satisfy spec.selector.matchExpressions"),
        "{message}"
    );
}

#[test]
fn a_mismatch_is_denied_before_the_service_name_is_filled() {
    let mut object = statefulset("web", Some(""));
    object["spec"]["template"]["metadata"]["labels"] = json!({});
    let message = denial_message(&run(&create(&object), Value::Null));
    assert!(
        message.contains(r#"label "app"="db" is in the selector but not in the template"#),
        "{message}"
    );
}

// ----- name length ----------------------------------------------------------------

#[test]
fn names_longer_than_52_characters_get_a_warning() {
    assert_eq!(MAX_WORKABLE_NAME, 52);
    let name = name_of_len(53);
    let verdict = run(&create(statefulset(&name, Some("db-peers"))), Value::Null);
    assert!(verdict.is_allowed());
    assert!(verdict.mutated_object().is_none());
    let [warning] = verdict.warnings() else {
        panic!("expected one warning: {verdict:?}");
    };
    assert!(warning.contains(&format!("{name:?} has 53 characters")), "{warning}");
    assert!(warning.contains("controller-revision-hash"), "{warning}");
}

#[test]
fn a_name_of_exactly_52_characters_gets_no_warning() {
    let name = name_of_len(52);
    assert_untouched(&run(&create(statefulset(&name, Some("db-peers"))), Value::Null));
}

#[test]
fn a_mutation_of_a_long_name_also_warns() {
    let name = name_of_len(60);
    let object = statefulset(&name, Some(""));
    let verdict = run(&create(&object), json!({"serviceNameTemplate": "{name}"}));
    assert_eq!(mutated_object(&verdict), with_service_name(&object, &name));
    assert_eq!(verdict.warnings().len(), 1, "{verdict:?}");
    assert!(verdict.warnings()[0].contains("has 60 characters"), "{verdict:?}");
}

// ----- requests the policy does not change ---------------------------------------

#[test]
fn update_is_never_mutated() {
    let old = statefulset("web", Some(""));
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(5);
    assert_untouched(&run(&update(&old, &new), Value::Null));

    // Not even checked: serviceName is immutable, the API server has the last word.
    let invalid = statefulset("web", Some("MySQL_Peers"));
    assert_untouched(&run(&update(&invalid, &invalid), Value::Null));

    // The same object on CREATE is mutated: the test above is meaningful.
    assert!(run(&create(&new), Value::Null).mutated_object().is_some());
}

#[test]
fn delete_is_allowed() {
    let old = statefulset("web", Some("MySQL_Peers"));
    assert_untouched(&run(&delete(&old), Value::Null));
}

#[test]
fn other_kinds_skipped_namespaces_and_subresources_are_allowed() {
    let object = statefulset("web", Some(""));

    let deployment = create(&object).kind("apps/v1", "Deployment");
    assert_untouched(&run(&deployment, Value::Null));

    let kruise = create(&object).kind("apps.kruise.io/v1beta1", "StatefulSet");
    assert_untouched(&run(&kruise, Value::Null));

    let scale = create(&object).sub_resource("scale");
    assert_untouched(&run(&scale, Value::Null));

    assert_untouched(&run(&create(&object), json!({"skipNamespaces": ["prod"]})));
    assert!(
        run(&create(&object), json!({"skipNamespaces": ["dev"]}))
            .mutated_object()
            .is_some()
    );
}

// ----- settings -----------------------------------------------------------------

#[test]
fn default_and_custom_templates_are_valid() {
    validate_settings::<StatefulSetServiceName>("null").unwrap();
    validate_settings::<StatefulSetServiceName>("{}").unwrap();
    validate_settings::<StatefulSetServiceName>(r#"{"serviceNameTemplate": "{name}"}"#).unwrap();
    validate_settings::<StatefulSetServiceName>(r#"{"serviceNameTemplate": "{namespace}-{name}"}"#).unwrap();
}

#[test]
fn an_unknown_placeholder_is_rejected() {
    let error =
        validate_settings::<StatefulSetServiceName>(r#"{"serviceNameTemplate": "{name}-{cluster}"}"#).unwrap_err();
    assert!(error.contains("unknown placeholder"), "{error}");
    assert!(
        error.contains("{name}, {namespace}"),
        "the known ones are listed: {error}"
    );
}

#[test]
fn a_template_without_the_name_is_rejected() {
    let error =
        validate_settings::<StatefulSetServiceName>(r#"{"serviceNameTemplate": "{namespace}-peers"}"#).unwrap_err();
    assert!(error.contains("must contain {name}"), "{error}");
}

#[test]
fn a_template_that_renders_an_invalid_name_is_rejected() {
    let error = validate_settings::<StatefulSetServiceName>(r#"{"serviceNameTemplate": "{name}_svc"}"#).unwrap_err();
    assert!(error.contains(r#"renders "web_svc""#), "{error}");
    assert!(error.contains("found '_'"), "{error}");
}

#[test]
fn unknown_settings_fields_are_rejected_by_name() {
    let error = validate_settings::<StatefulSetServiceName>(r#"{"serviceNameTemplat": "{name}"}"#).unwrap_err();
    assert!(error.contains("unknown field `serviceNameTemplat`"), "{error}");
}

#[test]
fn the_name_comes_from_the_object_when_the_request_has_none() {
    // The API server names a CREATE request after its object; the policy
    // reads the request's name, and the object's only when that is missing.
    let object = statefulset("web", None);
    let mut request = create(&object).to_value();
    request.as_object_mut().unwrap().remove("name");
    let verdict = wasmhook_policy::testing::evaluate::<StatefulSetServiceName>(&request.to_string(), "null")
        .expect("the policy failed");
    assert_eq!(mutated_object(&verdict), with_service_name(&object, "web-headless"));
}

mod service;
