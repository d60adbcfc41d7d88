//! The Service a StatefulSet names, read from a test cluster: each finding
//! of the crate documentation ((a) missing, (b) not headless, (c) selector
//! mismatch, (d) the parallel-start hint), warned by default and denied when
//! the settings say so, and the reads that fail or are not declared.

use serde_json::{Value, json};
use wasmhook_policy::Verdict;
use wasmhook_policy::testing::{ClusterObjects, create, denial_message, mutated_object, update, validate_settings};

use super::{assert_untouched, name_of_len, run, statefulset, with_service_name};
use crate::StatefulSetServiceName;

/// A headless Service in `prod` selecting `app=db`, as the StatefulSets of
/// these tests need it.
fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "prod"},
        "spec": {"clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"}, "ports": [{"port": 5432}]},
    })
}

/// Settings that deny every finding that may be denied.
fn deny_all() -> Value {
    json!({"serviceChecks": {"missing": "deny", "notHeadless": "deny", "selectorMismatch": "deny"}})
}

/// The one warning of `verdict`, which must fit in the 120 characters
/// Kubernetes recommends (the server trims longer ones, and the fix is at
/// the end).
#[track_caller]
fn only_warning(verdict: &Verdict) -> String {
    let [warning] = verdict.warnings() else {
        panic!("expected one warning: {verdict:?}");
    };
    assert!(
        warning.chars().count() <= 120,
        "{} characters: {warning}",
        warning.chars().count()
    );
    warning.clone()
}

#[test]
fn a_headless_service_that_selects_the_pods_gets_no_warning() {
    let object = statefulset("web", Some(""));
    let verdict = run(&create(&object).with_cluster([service("web-headless")]), deny_all());
    assert_eq!(mutated_object(&verdict), with_service_name(&object, "web-headless"));
    assert!(verdict.warnings().is_empty(), "{verdict:?}");

    // A given serviceName is the one checked.
    let verdict = run(
        &create(statefulset("web", Some("db-peers"))).with_cluster([service("db-peers")]),
        deny_all(),
    );
    assert_untouched(&verdict);
}

// ----- (a) missing ----------------------------------------------------------------

#[test]
fn a_missing_service_warns_and_the_service_name_is_still_filled() {
    let object = statefulset("web", Some(""));
    let verdict = run(&create(&object).with_cluster([]), Value::Null);
    assert_eq!(mutated_object(&verdict), with_service_name(&object, "web-headless"));
    assert_eq!(
        only_warning(&verdict),
        r#"Service "web-headless" (spec.serviceName) does not exist: create it with clusterIP: None, selecting app=db"#
    );
}

#[test]
fn a_missing_service_is_denied_when_configured_naming_the_statefulset() {
    let settings = json!({"serviceChecks": {"missing": "deny"}});
    let verdict = run(&create(statefulset("web", Some(""))).with_cluster([]), settings);
    assert_eq!(
        denial_message(&verdict),
        r#"StatefulSet prod/web: Service "web-headless" (spec.serviceName) does not exist: create it with clusterIP: None, selecting app=db"#
    );
    assert!(verdict.warnings().is_empty(), "{verdict:?}");
}

#[test]
fn a_service_of_the_same_name_in_another_namespace_does_not_count() {
    let mut elsewhere = service("web-headless");
    elsewhere["metadata"]["namespace"] = json!("dev");
    let verdict = run(
        &create(statefulset("web", Some(""))).with_cluster([elsewhere]),
        Value::Null,
    );
    assert!(only_warning(&verdict).contains("does not exist"));
}

#[test]
fn the_service_should_select_the_selectors_labels_not_every_template_label() {
    let mut object = statefulset("web", Some(""));
    object["spec"]["template"]["metadata"]["labels"] = json!({"app": "db", "version": "17"});
    let warning = only_warning(&run(&create(&object).with_cluster([]), Value::Null));
    assert!(warning.ends_with("selecting app=db"), "{warning}");

    // A selector of expressions only: the template's labels.
    object["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]});
    let warning = only_warning(&run(&create(&object).with_cluster([]), Value::Null));
    assert!(warning.ends_with("selecting app=db,version=17"), "{warning}");
}

// ----- (b) not headless -----------------------------------------------------------

#[test]
fn a_service_with_a_cluster_ip_warns_or_denies() {
    let mut not_headless = service("web-headless");
    not_headless["spec"]["clusterIP"] = json!("10.96.0.12");
    not_headless["spec"]["clusterIPs"] = json!(["10.96.0.12"]);
    let object = statefulset("web", Some(""));
    let expected = r#"Service "web-headless" (spec.serviceName) is not headless (clusterIP 10.96.0.12): re-create it with clusterIP: None"#;

    let verdict = run(&create(&object).with_cluster([not_headless.clone()]), Value::Null);
    assert_eq!(mutated_object(&verdict), with_service_name(&object, "web-headless"));
    assert_eq!(only_warning(&verdict), expected);

    let settings = json!({"serviceChecks": {"notHeadless": "deny"}});
    let message = denial_message(&run(&create(&object).with_cluster([not_headless]), settings));
    assert_eq!(message, format!("StatefulSet prod/web: {expected}"));
}

#[test]
fn an_external_name_service_is_not_headless_and_its_selector_is_not_judged() {
    let external = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web-headless", "namespace": "prod"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    });
    let verdict = run(
        &create(statefulset("web", Some(""))).with_cluster([external]),
        Value::Null,
    );
    let warning = only_warning(&verdict);
    assert!(warning.contains("is not headless (type ExternalName)"), "{warning}");
}

// ----- (c) selector mismatch --------------------------------------------------------

#[test]
fn a_service_selecting_other_pods_names_the_labels_on_both_sides() {
    let mut other = service("web-headless");
    other["spec"]["selector"] = json!({"app": "cache"});
    let mut object = statefulset("web", Some(""));
    object["spec"]["template"]["metadata"]["labels"] = json!({"app": "db", "tier": "data"});
    let expected = r#"Service "web-headless" (spec.serviceName) selects app=cache, not these pods (app=db,tier=data): make it select app=db"#;

    let verdict = run(&create(&object).with_cluster([other.clone()]), Value::Null);
    assert_eq!(mutated_object(&verdict), with_service_name(&object, "web-headless"));
    assert_eq!(only_warning(&verdict), expected);

    let settings = json!({"serviceChecks": {"selectorMismatch": "deny"}});
    let message = denial_message(&run(&create(&object).with_cluster([other]), settings));
    assert_eq!(message, format!("StatefulSet prod/web: {expected}"));
}

#[test]
fn a_service_without_a_selector_selects_no_pods() {
    let mut bare = service("web-headless");
    bare["spec"].as_object_mut().unwrap().remove("selector");
    let warning = only_warning(&run(
        &create(statefulset("web", Some(""))).with_cluster([bare]),
        Value::Null,
    ));
    assert_eq!(
        warning,
        r#"Service "web-headless" (spec.serviceName) has no selector, so none of these pods (app=db): make it select app=db"#
    );
}

#[test]
fn a_selector_that_is_a_subset_of_the_pod_labels_selects_them() {
    let mut object = statefulset("web", Some(""));
    object["spec"]["template"]["metadata"]["labels"] = json!({"app": "db", "tier": "data"});
    let verdict = run(&create(&object).with_cluster([service("web-headless")]), deny_all());
    assert!(verdict.warnings().is_empty(), "{verdict:?}");
}

#[test]
fn every_denied_finding_is_in_the_denial_and_warned_ones_stay_warnings() {
    let mut wrong = service("web-headless");
    wrong["spec"]["clusterIP"] = json!("10.96.0.12");
    wrong["spec"]["selector"] = json!({"app": "cache"});
    let object = statefulset("web", Some(""));

    let verdict = run(&create(&object).with_cluster([wrong.clone()]), deny_all());
    let message = denial_message(&verdict);
    assert!(
        message.starts_with(r#"StatefulSet prod/web: Service "web-headless" (spec.serviceName) is not headless"#),
        "{message}"
    );
    assert!(
        message.contains(r#"; Service "web-headless" (spec.serviceName) selects app=cache"#),
        "{message}"
    );
    assert!(verdict.warnings().is_empty(), "{verdict:?}");

    let settings = json!({"serviceChecks": {"notHeadless": "deny"}});
    let verdict = run(&create(&object).with_cluster([wrong]), settings);
    assert!(denial_message(&verdict).contains("is not headless"));
    assert!(only_warning(&verdict).contains("selects app=cache"), "{verdict:?}");
}

// ----- (d) parallel pods and not-ready addresses -----------------------------------

#[test]
fn parallel_pods_behind_a_service_without_not_ready_addresses_get_a_hint() {
    let mut object = statefulset("web", Some(""));
    object["spec"]["podManagementPolicy"] = json!("Parallel");

    // Always a warning, whatever the settings.
    let verdict = run(&create(&object).with_cluster([service("web-headless")]), deny_all());
    assert_eq!(mutated_object(&verdict), with_service_name(&object, "web-headless"));
    assert_eq!(
        only_warning(&verdict),
        r#"pods started in parallel find each other only if Service "web-headless" sets publishNotReadyAddresses: true"#
    );

    let mut publishing = service("web-headless");
    publishing["spec"]["publishNotReadyAddresses"] = json!(true);
    let verdict = run(&create(&object).with_cluster([publishing]), Value::Null);
    assert!(verdict.warnings().is_empty(), "{verdict:?}");

    // Ordered starts do not need it.
    let verdict = run(
        &create(statefulset("web", Some(""))).with_cluster([service("web-headless")]),
        Value::Null,
    );
    assert!(verdict.warnings().is_empty(), "{verdict:?}");
}

// ----- reads that are not declared or fail -----------------------------------------

#[test]
fn without_context_for_services_nothing_is_checked() {
    let object = statefulset("web", Some(""));
    let expected = with_service_name(&object, "web-headless");

    // No context at all, and context for other kinds only.
    for request in [
        create(&object),
        create(&object).with_cluster(ClusterObjects::new().declare("apps/v1", "StatefulSet")),
    ] {
        let verdict = run(&request, deny_all());
        assert_eq!(mutated_object(&verdict), expected);
        assert!(verdict.warnings().is_empty(), "{verdict:?}");
    }

    // Declared, the same cluster finds the Service missing.
    let declared = ClusterObjects::new().declare("v1", "Service");
    assert!(denial_message(&run(&create(&object).with_cluster(declared), deny_all())).contains("does not exist"));
}

#[test]
fn a_service_that_cannot_be_read_is_one_warning_and_never_a_denial() {
    let object = statefulset("web", Some(""));
    for (cluster, reason) in [
        (
            ClusterObjects::new().not_synced("v1", "Service"),
            "v1 Service: the first list from the test cluster has not finished yet",
        ),
        (
            ClusterObjects::new().unknown_kind("v1", "Service"),
            "v1 Service: the test cluster holds no such kind",
        ),
    ] {
        let verdict = run(&create(&object).with_cluster(cluster), deny_all());
        assert_eq!(mutated_object(&verdict), with_service_name(&object, "web-headless"));
        assert_eq!(
            only_warning(&verdict),
            format!(r#"Service "web-headless" not checked: {reason}"#)
        );
    }
}

#[test]
fn updates_and_denied_statefulsets_read_nothing() {
    // A cluster whose every read fails: a read would show as a warning.
    let failing = || ClusterObjects::new().not_synced("v1", "Service");
    let object = statefulset("web", Some("web-headless"));
    assert_untouched(&run(&update(&object, &object).with_cluster(failing()), deny_all()));

    let invalid = statefulset("web", Some("Web_Peers"));
    let verdict = run(&create(&invalid).with_cluster(failing()), deny_all());
    assert!(denial_message(&verdict).contains("is not a valid Service name"));
    assert!(verdict.warnings().is_empty(), "{verdict:?}");
}

#[test]
fn a_long_name_warning_is_kept_with_the_service_findings() {
    let name = name_of_len(53);
    let verdict = run(
        &create(statefulset(&name, Some("db-peers"))).with_cluster([]),
        json!({"serviceChecks": {"missing": "deny"}}),
    );
    assert!(denial_message(&verdict).contains(r#"Service "db-peers" (spec.serviceName) does not exist"#));
    let [warning] = verdict.warnings() else {
        panic!("expected the long-name warning: {verdict:?}");
    };
    assert!(warning.contains("has 53 characters"), "{warning}");
}

// ----- settings ------------------------------------------------------------------------

#[test]
fn service_checks_take_warn_or_deny() {
    validate_settings::<StatefulSetServiceName>(&deny_all().to_string()).unwrap();
    validate_settings::<StatefulSetServiceName>(r#"{"serviceChecks": {"missing": "warn"}}"#).unwrap();
    validate_settings::<StatefulSetServiceName>(r#"{"serviceChecks": {}}"#).unwrap();

    let error = validate_settings::<StatefulSetServiceName>(r#"{"serviceChecks": {"missing": "block"}}"#).unwrap_err();
    assert!(
        error.contains("unknown variant `block`, expected `warn` or `deny`"),
        "{error}"
    );
    let error = validate_settings::<StatefulSetServiceName>(r#"{"serviceChecks": {"headless": "deny"}}"#).unwrap_err();
    assert!(
        error.contains("unknown field `headless`, expected one of `missing`, `notHeadless`, `selectorMismatch`"),
        "{error}"
    );
}
