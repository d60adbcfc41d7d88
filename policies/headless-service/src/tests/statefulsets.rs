//! The StatefulSets that name a Service, read from a test cluster: a DELETE
//! or a selector change that breaks them is warned about by default and
//! denied when the settings say so, for any Service; and the reads that fail
//! or are not declared.

use serde_json::{Value, json};
use wasmhook_policy::Verdict;
use wasmhook_policy::testing::{
    ClusterObjects, assert_unchanged, delete, denial_message, mutated_object, update, validate_settings,
};

use super::{plain_spec, run, service};
use crate::HeadlessService;

/// A StatefulSet in `prod` naming `service`, whose pods are labelled `labels`.
fn statefulset(name: &str, service: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "prod"},
        "spec": {
            "serviceName": service,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}},
        },
    })
}

/// The cluster of these tests: StatefulSet `db` names Service `db`
/// (`app=db`), `cache` names `cache`, and in another namespace a `db` names
/// a Service `db` too.
fn cluster() -> Vec<Value> {
    let mut elsewhere = statefulset("db", "db", json!({"app": "db"}));
    elsewhere["metadata"]["namespace"] = json!("dev");
    vec![
        statefulset("db", "db", json!({"app": "db", "tier": "data"})),
        statefulset("cache", "cache", json!({"app": "cache"})),
        elsewhere,
    ]
}

/// A Service named `name` in `prod` with `selector` (not selected by the
/// default settings unless its name ends with `-headless`).
fn selecting(name: &str, selector: Value) -> Value {
    let mut spec = plain_spec();
    spec["selector"] = selector;
    spec["clusterIP"] = json!("None");
    spec["clusterIPs"] = json!(["None"]);
    service(name, json!({}), spec)
}

fn deny_all() -> Value {
    json!({"statefulSetChecks": {"delete": "deny", "selectorChange": "deny"}})
}

/// The one warning of an allowing, unchanged verdict.
#[track_caller]
fn only_warning(verdict: &Verdict) -> String {
    assert_unchanged(verdict);
    match verdict.warnings() {
        [warning] => warning.clone(),
        _ => panic!("expected one warning: {verdict:?}"),
    }
}

/// Asserts that a warning fits in the 120 characters Kubernetes recommends
/// (the server trims longer ones, and the fix is at the end).
#[track_caller]
fn assert_fits(warning: &str) {
    assert!(
        warning.chars().count() <= 120,
        "{} characters: {warning}",
        warning.chars().count()
    );
}

/// Asserts an allow without changes, message or warnings.
#[track_caller]
fn assert_silent(verdict: &Verdict) {
    assert_unchanged(verdict);
    assert!(
        verdict.message().is_none() && verdict.warnings().is_empty(),
        "{verdict:?}"
    );
}

// ----- DELETE -------------------------------------------------------------------

#[test]
fn deleting_a_service_a_statefulset_names_warns_or_denies() {
    // "db" is not selected by the default settings: the check applies anyway.
    let old = selecting("db", json!({"app": "db"}));
    let expected = r#"StatefulSet "db" names this Service in spec.serviceName: its pods lose their DNS names; delete the StatefulSet first"#;

    let warning = only_warning(&run(&delete(&old).with_cluster(cluster()), Value::Null));
    assert_eq!(warning, expected);
    assert_fits(&warning);

    let settings = json!({"statefulSetChecks": {"delete": "deny"}});
    assert_eq!(
        denial_message(&run(&delete(&old).with_cluster(cluster()), settings)),
        format!("Service prod/db: {expected}")
    );
}

#[test]
fn every_statefulset_that_names_the_service_is_named() {
    let mut objects = cluster();
    objects.push(statefulset("replica", "db", json!({"app": "db", "role": "replica"})));
    let old = selecting("db", json!({"app": "db"}));
    let message = denial_message(&run(&delete(&old).with_cluster(objects), deny_all()));
    assert_eq!(
        message,
        r#"Service prod/db: StatefulSets "db" and "replica" name this Service in spec.serviceName: their pods lose their DNS names; delete the StatefulSets first"#
    );
}

#[test]
fn deleting_a_service_no_statefulset_names_is_allowed_silently() {
    // Named by a StatefulSet in another namespace only, or by none.
    let mut old = selecting("db", json!({"app": "db"}));
    old["metadata"]["namespace"] = json!("shop");
    assert_silent(&run(&delete(&old).with_cluster(cluster()), deny_all()));
    let old = selecting("web-headless", json!({"app": "web"}));
    assert_silent(&run(&delete(&old).with_cluster(cluster()), deny_all()));
}

#[test]
fn without_context_for_statefulsets_delete_is_allowed_untouched() {
    let old = selecting("db", json!({"app": "db"}));
    assert_silent(&run(&delete(&old), deny_all()));
    let services_only = ClusterObjects::new().with_objects(cluster()).declare("v1", "Service");
    assert_silent(&run(&delete(&old).with_cluster(services_only), deny_all()));
}

#[test]
fn skipped_namespaces_are_not_checked() {
    let old = selecting("db", json!({"app": "db"}));
    let settings = json!({"skipNamespaces": ["prod"], "statefulSetChecks": {"delete": "deny"}});
    assert_silent(&run(&delete(&old).with_cluster(cluster()), settings));
}

// ----- UPDATE of the selector -----------------------------------------------------------

#[test]
fn a_selector_that_no_longer_selects_the_pods_warns_or_denies() {
    let old = selecting("db", json!({"app": "db"}));
    let new = selecting("db", json!({"app": "postgres"}));
    let expected = r#"selector app=postgres no longer selects the pods (app=db,tier=data) of StatefulSet "db", whose serviceName this is: keep app=db"#;

    let warning = only_warning(&run(&update(&old, &new).with_cluster(cluster()), Value::Null));
    assert_eq!(warning, expected);

    let settings = json!({"statefulSetChecks": {"selectorChange": "deny"}});
    assert_eq!(
        denial_message(&run(&update(&old, &new).with_cluster(cluster()), settings)),
        format!("Service prod/db: {expected}")
    );

    // Several StatefulSets are each named with their pods' labels.
    let mut objects = cluster();
    objects.push(statefulset("replica", "db", json!({"app": "db", "role": "replica"})));
    let warning = only_warning(&run(&update(&old, &new).with_cluster(objects), Value::Null));
    assert!(
        warning.contains(r#"of StatefulSet "db" and the pods (app=db,role=replica) of StatefulSet "replica","#),
        "{warning}"
    );
}

#[test]
fn a_selector_change_that_still_selects_the_pods_is_fine() {
    let old = selecting("db", json!({"app": "db"}));
    let new = selecting("db", json!({"app": "db", "tier": "data"}));
    assert_silent(&run(&update(&old, &new).with_cluster(cluster()), deny_all()));

    // Removing the selector selects nothing.
    let mut bare = old.clone();
    bare["spec"].as_object_mut().unwrap().remove("selector");
    let message = denial_message(&run(&update(&old, &bare).with_cluster(cluster()), deny_all()));
    assert!(
        message.contains("selector <none> no longer selects the pods"),
        "{message}"
    );
}

#[test]
fn a_selector_that_never_selected_the_pods_is_not_this_change_s_fault() {
    let old = selecting("db", json!({"app": "mysql"}));
    let new = selecting("db", json!({"app": "mariadb"}));
    assert_silent(&run(&update(&old, &new).with_cluster(cluster()), deny_all()));
}

#[test]
fn statefulsets_are_read_only_when_the_selector_changes() {
    // A cluster whose every read fails: a read would show as a warning.
    let failing = ClusterObjects::new().not_synced("apps/v1", "StatefulSet");
    let old = selecting("db", json!({"app": "db"}));
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"] = json!({"team": "data"});
    assert_silent(&run(
        &update(&old, &relabelled).with_cluster(failing.clone()),
        deny_all(),
    ));

    let new = selecting("db", json!({"app": "postgres"}));
    let warning = only_warning(&run(&update(&old, &new).with_cluster(failing), deny_all()));
    assert_eq!(
        warning,
        "StatefulSets not checked: apps/v1 StatefulSet: the first list from the test cluster has not finished yet"
    );
    assert_fits(&warning);
}

#[test]
fn a_selected_service_keeps_its_mutation_with_the_warning() {
    let mut objects = cluster();
    objects.push(statefulset("web", "web-headless", json!({"app": "web"})));
    let old = selecting("web-headless", json!({"app": "web"}));
    let new = selecting("web-headless", json!({"app": "www"}));
    let settings = json!({"publishNotReadyAddresses": true});

    let verdict = run(&update(&old, &new).with_cluster(objects.clone()), settings);
    let mut expected = new.clone();
    expected["spec"]["publishNotReadyAddresses"] = json!(true);
    assert_eq!(mutated_object(&verdict), expected);
    let [warning] = verdict.warnings() else {
        panic!("expected one warning: {verdict:?}");
    };
    assert!(
        warning.contains(r#"no longer selects the pods (app=web) of StatefulSet "web""#),
        "{warning}"
    );

    // Without context: the mutation alone.
    let verdict = run(&update(&old, &new), json!({"publishNotReadyAddresses": true}));
    assert_eq!(mutated_object(&verdict), expected);
    assert!(verdict.warnings().is_empty(), "{verdict:?}");
}

#[test]
fn without_context_for_statefulsets_a_selector_change_is_not_checked() {
    let old = selecting("db", json!({"app": "db"}));
    let new = selecting("db", json!({"app": "postgres"}));
    assert_silent(&run(&update(&old, &new), deny_all()));
}

// ----- reads that fail -------------------------------------------------------------------

#[test]
fn statefulsets_that_cannot_be_read_are_one_warning_and_never_a_denial() {
    let old = selecting("db", json!({"app": "db"}));
    for cluster in [
        ClusterObjects::new().not_synced("apps/v1", "StatefulSet"),
        ClusterObjects::new().unknown_kind("apps/v1", "StatefulSet"),
    ] {
        let warning = only_warning(&run(&delete(&old).with_cluster(cluster), deny_all()));
        assert!(
            warning.starts_with("StatefulSets not checked: apps/v1 StatefulSet: "),
            "{warning}"
        );
    }
}

// ----- settings ------------------------------------------------------------------------

#[test]
fn statefulset_checks_take_warn_or_deny() {
    validate_settings::<HeadlessService>(&deny_all().to_string()).unwrap();
    validate_settings::<HeadlessService>(r#"{"statefulSetChecks": {"delete": "warn"}}"#).unwrap();

    let error = validate_settings::<HeadlessService>(r#"{"statefulSetChecks": {"delete": "refuse"}}"#).unwrap_err();
    assert!(
        error.contains("unknown variant `refuse`, expected `warn` or `deny`"),
        "{error}"
    );
    let error = validate_settings::<HeadlessService>(r#"{"statefulSetChecks": {"update": "deny"}}"#).unwrap_err();
    assert!(
        error.contains("unknown field `update`, expected `delete` or `selectorChange`"),
        "{error}"
    );
}
