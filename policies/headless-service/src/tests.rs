//! Unit tests of the headless-service policy, run natively through the same
//! glue as the component (`wasmhook_policy::testing`), one test per rule of the
//! crate documentation. Requests are small hand-written JSON so each test shows
//! exactly the input that matters.

use serde_json::{Value, json};
use wasmhook_policy::Verdict;
use wasmhook_policy::testing::{
    TestRequest, assert_unchanged, create, delete, denial_message, mutated_object, update, validate_settings,
};

use super::{HEADLESS_LABEL, HeadlessService};

/// A Service object; `spec` is used as given.
fn service(name: &str, labels: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "prod", "labels": labels},
        "spec": spec,
    })
}

/// A ClusterIP Service spec without a cluster IP, as a mutating webhook sees a CREATE.
fn plain_spec() -> Value {
    json!({
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
        "selector": {"app": "web"},
        "type": "ClusterIP",
        "sessionAffinity": "None",
    })
}

/// Evaluates a request; panics on a policy error (none of these inputs should cause one).
#[track_caller]
fn run(request: &TestRequest, settings: Value) -> Verdict {
    request
        .evaluate::<HeadlessService>(settings)
        .expect("the policy failed")
}

/// Asserts an unchanged allow without a message.
#[track_caller]
fn assert_untouched(verdict: &Verdict) {
    assert_unchanged(verdict);
    assert!(verdict.message().is_none(), "{verdict:?}");
}

/// `object` plus `clusterIP: None` and `clusterIPs: ["None"]`.
fn made_headless(object: &Value) -> Value {
    let mut expected = object.clone();
    expected["spec"]["clusterIP"] = json!("None");
    expected["spec"]["clusterIPs"] = json!(["None"]);
    expected
}

// ----- selection -------------------------------------------------------------

#[test]
fn create_without_cluster_ip_is_made_headless_and_nothing_else_changes() {
    let mut spec = plain_spec();
    spec["futureField"] = json!({"keep": true, "nested": [1, "two", null]});
    spec["ipFamilyPolicy"] = json!("SingleStack");
    let mut object = service("web-headless", json!({"app": "web"}), spec);
    object["metadata"]["annotations"] = json!({"example.com/owner": "team-a"});
    object["status"] = json!({"loadBalancer": {}});

    let result = mutated_object(&run(&create(&object), Value::Null));

    assert_eq!(
        result,
        made_headless(&object),
        "exactly clusterIP and clusterIPs may change"
    );
    assert_eq!(
        result["spec"]["futureField"],
        json!({"keep": true, "nested": [1, "two", null]})
    );
}

#[test]
fn default_settings_select_by_suffix() {
    let selected = service("db-headless", json!({}), plain_spec());
    assert_eq!(
        mutated_object(&run(&create(&selected), Value::Null)),
        made_headless(&selected)
    );

    let headless_in_the_middle = service("db-headless-svc", json!({}), plain_spec());
    assert_untouched(&run(&create(&headless_in_the_middle), Value::Null));
}

#[test]
fn default_settings_select_by_the_headless_label() {
    let labelled = service("db", json!({HEADLESS_LABEL: "true"}), plain_spec());
    assert_eq!(
        mutated_object(&run(&create(&labelled), Value::Null)),
        made_headless(&labelled)
    );

    let labelled_false = service("db", json!({HEADLESS_LABEL: "false"}), plain_spec());
    assert_untouched(&run(&create(&labelled_false), Value::Null));

    let unlabelled = service("db", Value::Null, plain_spec());
    assert_untouched(&run(&create(&unlabelled), Value::Null));
}

#[test]
fn prefixes_select_by_name_start() {
    let settings = json!({"namePrefixes": ["peer-"]});
    let selected = service("peer-db", json!({}), plain_spec());
    assert_eq!(
        mutated_object(&run(&create(&selected), settings.clone())),
        made_headless(&selected)
    );

    let not_selected = service("db-peer-", json!({}), plain_spec());
    assert_untouched(&run(&create(&not_selected), settings.clone()));

    // The reason is named in denials.
    let mut node_port = plain_spec();
    node_port["type"] = json!("NodePort");
    let message = denial_message(&run(&create(service("peer-db", json!({}), node_port)), settings));
    assert!(message.contains(r#"its name starts with "peer-""#), "{message}");
}

#[test]
fn selector_match_labels_select() {
    let settings = json!({"nameSuffixes": [], "selector": {"matchLabels": {"app": "db", "role": "peer"}}});
    let selected = service("db", json!({"app": "db", "role": "peer", "extra": "x"}), plain_spec());
    assert_eq!(
        mutated_object(&run(&create(&selected), settings.clone())),
        made_headless(&selected)
    );

    let partial = service("db", json!({"app": "db"}), plain_spec());
    assert_untouched(&run(&create(&partial), settings.clone()));

    // With nameSuffixes emptied, the default suffix no longer selects.
    let by_name = service("db-headless", json!({}), plain_spec());
    assert_untouched(&run(&create(&by_name), settings));
}

#[test]
fn selector_match_expressions_select() {
    let settings = json!({"selector": {"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["db", "cache"]},
        {"key": "legacy", "operator": "DoesNotExist"},
    ]}});
    let selected = service("store", json!({"tier": "cache"}), plain_spec());
    assert_eq!(
        mutated_object(&run(&create(&selected), settings.clone())),
        made_headless(&selected)
    );

    let other_tier = service("store", json!({"tier": "web"}), plain_spec());
    assert_untouched(&run(&create(&other_tier), settings.clone()));

    let legacy = service("store", json!({"tier": "db", "legacy": "yes"}), plain_spec());
    assert_untouched(&run(&create(&legacy), settings.clone()));

    let mut load_balancer = plain_spec();
    load_balancer["type"] = json!("LoadBalancer");
    let message = denial_message(&run(
        &create(service("store", json!({"tier": "db"}), load_balancer)),
        settings,
    ));
    assert!(message.contains("its labels match the headless selector"), "{message}");
}

#[test]
fn a_null_selector_turns_label_selection_off() {
    let settings = json!({"selector": null});
    let labelled = service("db", json!({HEADLESS_LABEL: "true"}), plain_spec());
    assert_untouched(&run(&create(&labelled), settings.clone()));

    // The suffix still selects.
    let by_name = service("db-headless", json!({HEADLESS_LABEL: "true"}), plain_spec());
    assert_eq!(
        mutated_object(&run(&create(&by_name), settings)),
        made_headless(&by_name)
    );
}

#[test]
fn skipped_namespaces_are_not_touched() {
    let settings = json!({"skipNamespaces": ["kube-system", "prod"]});
    let mut node_port = plain_spec();
    node_port["type"] = json!("NodePort");
    // Neither mutated nor denied in a skipped namespace.
    assert_untouched(&run(
        &create(service("db-headless", json!({}), plain_spec())),
        settings.clone(),
    ));
    assert_untouched(&run(&create(service("db-headless", json!({}), node_port)), settings));

    // The same request in a namespace that is not skipped is mutated.
    let other = json!({"skipNamespaces": ["kube-system"]});
    let object = service("db-headless", json!({}), plain_spec());
    assert_eq!(mutated_object(&run(&create(&object), other)), made_headless(&object));
}

// ----- what cannot be patched ---------------------------------------------------

#[test]
fn external_name_services_are_allowed_untouched() {
    let object = service(
        "dns-headless",
        json!({}),
        json!({"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"}),
    );
    assert_untouched(&run(&create(&object), Value::Null));
    assert_untouched(&run(&create(&object), json!({"publishNotReadyAddresses": true})));
}

#[test]
fn turning_an_external_name_service_into_a_cluster_ip_one_needs_cluster_ip_none() {
    let old = service(
        "dns-headless",
        json!({}),
        json!({"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"}),
    );
    let new = service("dns-headless", json!({}), plain_spec());
    let message = denial_message(&run(&update(&old, &new), Value::Null));
    assert!(message.contains("from ExternalName to ClusterIP"), "{message}");
    assert!(message.contains("Set spec.clusterIP: None"), "{message}");

    let mut headless_spec = plain_spec();
    headless_spec["clusterIP"] = json!("None");
    let headless = service("dns-headless", json!({}), headless_spec);
    assert_untouched(&run(&update(&old, &headless), Value::Null));
}

#[test]
fn node_port_and_load_balancer_are_denied_with_what_to_change() {
    for service_type in ["NodePort", "LoadBalancer"] {
        let mut spec = plain_spec();
        spec["type"] = json!(service_type);
        let message = denial_message(&run(&create(service("web-headless", json!({}), spec)), Value::Null));
        assert!(
            message.contains("Service prod/web-headless must be headless"),
            "{message}"
        );
        assert!(message.contains(r#"its name ends with "-headless""#), "{message}");
        assert!(message.contains(&format!("it has type {service_type}")), "{message}");
        assert!(message.contains("Remove spec.type"), "{message}");
        assert!(message.contains("spec.clusterIP: None"), "{message}");
    }
}

#[test]
fn a_concrete_cluster_ip_on_create_is_denied() {
    let mut spec = plain_spec();
    spec["clusterIP"] = json!("10.96.0.77");
    let message = denial_message(&run(&create(service("cache-headless", json!({}), spec)), Value::Null));
    assert!(message.contains("it has cluster IP 10.96.0.77"), "{message}");
    assert!(message.contains("set spec.clusterIP: None"), "{message}");
    assert!(
        !message.contains("delete and re-create"),
        "a CREATE can still be fixed: {message}"
    );

    // The same Service as stored (a resourceVersion: what an audit sends)
    // can only be re-created.
    let mut spec = plain_spec();
    spec["clusterIP"] = json!("10.96.0.77");
    let mut stored = service("cache-headless", json!({}), spec);
    stored["metadata"]["resourceVersion"] = json!("4242");
    let message = denial_message(&run(&create(stored), Value::Null));
    assert!(
        message.contains("cluster IPs cannot be changed: delete and re-create it as headless"),
        "{message}"
    );

    // An address only in clusterIPs counts too (dual-stack).
    let mut spec = plain_spec();
    spec["clusterIPs"] = json!(["None", "fd00::77"]);
    let message = denial_message(&run(&create(service("cache-headless", json!({}), spec)), Value::Null));
    assert!(message.contains("cluster IP fd00::77"), "{message}");
}

#[test]
fn an_empty_cluster_ip_is_not_an_address() {
    let mut spec = plain_spec();
    spec["clusterIP"] = json!("");
    let object = service("cache-headless", json!({}), spec);
    assert_eq!(
        mutated_object(&run(&create(&object), Value::Null)),
        made_headless(&object)
    );
}

#[test]
fn update_of_a_selected_service_with_an_ip_must_delete_and_recreate() {
    let mut spec = plain_spec();
    spec["clusterIP"] = json!("10.96.12.34");
    spec["clusterIPs"] = json!(["10.96.12.34"]);
    let old = service("web-headless", json!({}), spec.clone());
    let new = service("web-headless", json!({"tier": "web"}), spec);

    let message = denial_message(&run(&update(&old, &new), Value::Null));
    assert!(message.contains("cluster IP 10.96.12.34"), "{message}");
    assert!(message.contains("cannot be changed"), "{message}");
    assert!(message.contains("delete and re-create"), "{message}");
}

#[test]
fn update_that_omits_the_cluster_ip_is_judged_by_the_old_object() {
    let mut old_spec = plain_spec();
    old_spec["clusterIP"] = json!("10.96.0.9");
    let old = service("web-headless", json!({}), old_spec);
    let new = service("web-headless", json!({}), plain_spec());

    let message = denial_message(&run(&update(&old, &new), Value::Null));
    assert!(message.contains("cluster IP 10.96.0.9"), "{message}");
    assert!(message.contains("delete and re-create"), "{message}");
}

#[test]
fn update_of_a_headless_service_is_allowed_and_not_mutated() {
    let mut spec = plain_spec();
    spec["clusterIP"] = json!("None");
    spec["clusterIPs"] = json!(["None"]);
    let old = service("web-headless", json!({}), spec.clone());
    let new = service("web-headless", json!({"tier": "web"}), spec);
    assert_untouched(&run(&update(&old, &new), Value::Null));

    // An UPDATE never adds clusterIP, even when the object omits it.
    let omitted = service("web-headless", json!({}), plain_spec());
    assert_untouched(&run(&update(&old, &omitted), Value::Null));
}

#[test]
fn an_already_headless_service_is_not_mutated() {
    let mut spec = plain_spec();
    spec["clusterIP"] = json!("None");
    // As a mutating webhook sees it: clusterIPs is filled in later.
    let object = service("sample-headless", json!({}), spec.clone());
    let verdict = run(&create(&object), Value::Null);
    assert_untouched(&verdict);
    assert_eq!(verdict, Verdict::allow());

    spec["clusterIPs"] = json!(["None"]);
    assert_untouched(&run(&create(service("sample-headless", json!({}), spec)), Value::Null));
}

#[test]
fn publish_not_ready_addresses_is_set_when_configured() {
    let settings = json!({"publishNotReadyAddresses": true});

    let object = service("db-headless", json!({}), plain_spec());
    let mut expected = made_headless(&object);
    expected["spec"]["publishNotReadyAddresses"] = json!(true);
    assert_eq!(mutated_object(&run(&create(&object), settings.clone())), expected);

    // Already headless: only the flag is added.
    let mut spec = plain_spec();
    spec["clusterIP"] = json!("None");
    let headless = service("db-headless", json!({}), spec.clone());
    let mut expected = headless.clone();
    expected["spec"]["publishNotReadyAddresses"] = json!(true);
    assert_eq!(mutated_object(&run(&create(&headless), settings.clone())), expected);

    // Already set: nothing to do.
    spec["publishNotReadyAddresses"] = json!(true);
    let done = service("db-headless", json!({}), spec);
    assert_untouched(&run(&create(&done), settings.clone()));

    // Off by default; and never on Services that are not selected.
    assert_eq!(
        mutated_object(&run(&create(&object), Value::Null)),
        made_headless(&object)
    );
    assert_untouched(&run(&create(service("web", json!({}), plain_spec())), settings));
}

// ----- requests the policy does not judge -----------------------------------

#[test]
fn delete_is_allowed() {
    let mut spec = plain_spec();
    spec["type"] = json!("NodePort");
    spec["clusterIP"] = json!("10.96.0.1");
    let old = service("web-headless", json!({}), spec);
    let verdict = run(&delete(&old), Value::Null);
    assert_untouched(&verdict);
}

#[test]
fn other_kinds_and_subresources_are_allowed() {
    let mut spec = plain_spec();
    spec["type"] = json!("NodePort");
    let object = service("web-headless", json!({}), spec);

    // A ConfigMap (core group, other kind).
    let config_map = create(&object).kind("v1", "ConfigMap");
    assert_untouched(&run(&config_map, Value::Null));

    // A custom resource that happens to be called Service.
    let knative = create(&object).kind("serving.knative.dev/v1", "Service");
    assert_untouched(&run(&knative, Value::Null));

    // The status subresource.
    let status = update(&object, &object).sub_resource("status");
    assert_untouched(&run(&status, Value::Null));

    // The same request without those differences is denied: the tests above are meaningful.
    assert!(!run(&create(&object), Value::Null).is_allowed());
}

#[test]
fn a_malformed_object_is_a_policy_error() {
    // A field the policy reads (it does not read, or check, the ports).
    let mut spec = plain_spec();
    spec["clusterIP"] = json!(42);
    let object = service("web-headless", json!({}), spec);
    let error = create(&object).evaluate::<HeadlessService>(Value::Null).unwrap_err();
    assert!(error.contains("cannot read object"), "{error}");
}

#[test]
fn malformed_labels_are_a_policy_error_when_the_selector_reads_them() {
    // Selected by its name, the Service's labels are not read.
    let object = service("web-headless", json!(42), plain_spec());
    assert_eq!(
        mutated_object(&run(&create(&object), Value::Null)),
        made_headless(&object)
    );
    // Not selected by its name: the default selector reads them.
    let object = service("web", json!(42), plain_spec());
    let error = create(&object).evaluate::<HeadlessService>(Value::Null).unwrap_err();
    assert!(error.contains("/metadata/labels"), "{error}");
}

#[test]
fn a_request_without_a_name_is_selected_by_the_object_s_name() {
    let object = service("db-headless", json!({}), plain_spec());
    let mut request = create(&object).to_value();
    request.as_object_mut().unwrap().remove("name");
    let verdict =
        wasmhook_policy::testing::evaluate::<HeadlessService>(&request.to_string(), "null").expect("the policy failed");
    assert_eq!(mutated_object(&verdict), made_headless(&object));
}

// ----- settings -----------------------------------------------------------------

#[test]
fn default_and_partial_settings_are_valid() {
    validate_settings::<HeadlessService>("null").unwrap();
    validate_settings::<HeadlessService>("{}").unwrap();
    validate_settings::<HeadlessService>(r#"{"namePrefixes": ["peer-"], "publishNotReadyAddresses": true}"#).unwrap();
    validate_settings::<HeadlessService>(r#"{"nameSuffixes": [], "selector": null, "namePrefixes": ["db-"]}"#).unwrap();
}

#[test]
fn empty_suffixes_and_prefixes_are_rejected() {
    let error = validate_settings::<HeadlessService>(r#"{"nameSuffixes": ["-headless", ""]}"#).unwrap_err();
    assert!(error.contains("nameSuffixes[1] is empty"), "{error}");
    assert!(error.contains("every Service"), "{error}");

    let error = validate_settings::<HeadlessService>(r#"{"namePrefixes": [""]}"#).unwrap_err();
    assert!(error.contains("namePrefixes[0] is empty"), "{error}");
}

#[test]
fn a_malformed_selector_is_rejected() {
    let error = validate_settings::<HeadlessService>(
        r#"{"selector": {"matchExpressions": [{"key": "tier", "operator": "Equals", "values": ["db"]}]}}"#,
    )
    .unwrap_err();
    assert!(error.starts_with("selector: "), "{error}");
    assert!(error.contains(r#"unknown operator "Equals""#), "{error}");

    let error = validate_settings::<HeadlessService>(
        r#"{"selector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}}"#,
    )
    .unwrap_err();
    assert!(error.contains("needs at least one value"), "{error}");
}

#[test]
fn an_empty_selector_is_rejected() {
    for selector in [
        r#"{}"#,
        r#"{"matchLabels": {}}"#,
        r#"{"matchLabels": {}, "matchExpressions": []}"#,
    ] {
        let error = validate_settings::<HeadlessService>(&format!(r#"{{"selector": {selector}}}"#)).unwrap_err();
        assert!(error.contains("selector is empty"), "{error}");
        assert!(
            error.contains("null"),
            "the message says how to turn labels off: {error}"
        );
    }
}

#[test]
fn settings_that_select_nothing_are_rejected() {
    let error = validate_settings::<HeadlessService>(r#"{"nameSuffixes": [], "selector": null}"#).unwrap_err();
    assert!(error.contains("select no Service"), "{error}");
}

#[test]
fn unknown_settings_fields_are_rejected_by_name() {
    let error = validate_settings::<HeadlessService>(r#"{"nameSuffix": ["-x"]}"#).unwrap_err();
    assert!(error.contains("unknown field `nameSuffix`"), "{error}");

    // evaluate refuses the same settings instead of guessing.
    let object = service("db-headless", json!({}), plain_spec());
    let error = create(&object)
        .evaluate::<HeadlessService>(json!({"nameSuffix": ["-x"]}))
        .unwrap_err();
    assert!(error.contains("invalid settings"), "{error}");
}

mod statefulsets;
