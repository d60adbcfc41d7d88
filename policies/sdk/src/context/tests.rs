//! The typed and JSON reads, natively, against a test cluster: what a policy
//! gets from `get` and `list`, and every way a read fails.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_json::{Value, json};

use super::*;
use crate::testing::{ClusterObjects, create};
use crate::{Policy, PolicyError, Request, Verdict};

fn service(namespace: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"clusterIP": "None", "selector": {"app": name}},
    })
}

fn cluster() -> ClusterObjects {
    ClusterObjects::new().with_objects([
        service("shop", "web", json!({"app": "web", "tier": "front"})),
        service("shop", "db", json!({"app": "db", "tier": "data"})),
        service("dev", "web", json!({"app": "web", "tier": "front", "legacy": "yes"})),
        service("auth", "token", json!({"app": "token"})),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}}}),
    ])
}

fn names<K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
    objects: &[K],
) -> Vec<String> {
    objects
        .iter()
        .map(|object| {
            let metadata = object.metadata();
            format!(
                "{}/{}",
                metadata.namespace.as_deref().unwrap_or_default(),
                metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

fn selector(labels: &[(&str, &str)], expressions: Vec<LabelSelectorRequirement>) -> LabelSelector {
    LabelSelector {
        match_labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        }),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    }
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|value| value.to_string()).collect()),
    }
}

#[test]
fn get_reads_a_typed_object_by_namespace_and_name() {
    cluster().run(|| {
        let found = get::<Service>(Some("shop"), "web").unwrap().expect("shop/web exists");
        assert_eq!(found.metadata.name.as_deref(), Some("web"));
        assert_eq!(found.metadata.namespace.as_deref(), Some("shop"));
        let spec = found.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.selector.unwrap()["app"], "web");

        assert!(get::<Service>(Some("shop"), "cache").unwrap().is_none(), "no such name");
        assert!(
            get::<Service>(Some("prod"), "web").unwrap().is_none(),
            "no such namespace"
        );
        assert!(
            get::<StatefulSet>(Some("shop"), "web").unwrap().is_none(),
            "no object of the kind"
        );
    });
}

#[test]
fn get_without_a_namespace_finds_cluster_scoped_objects() {
    cluster().run(|| {
        let namespace = get::<Namespace>(None, "shop").unwrap().expect("the Namespace exists");
        assert_eq!(namespace.metadata.labels.unwrap()["team"], "a");
        assert!(
            get::<Service>(None, "web").unwrap().is_none(),
            "a namespaced object needs its namespace"
        );
        assert!(get::<Namespace>(Some("shop"), "shop").unwrap().is_none());
    });
}

#[test]
fn get_json_reads_any_kind() {
    let widget = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "shop"},
        "spec": {"size": 3},
    });
    ClusterObjects::new().with_object(&widget).run(|| {
        assert_eq!(
            get_json("example.com/v1", "Widget", Some("shop"), "w").unwrap(),
            Some(widget.clone())
        );
        assert_eq!(
            get_json("example.com/v2", "Widget", Some("shop"), "w").unwrap(),
            None,
            "another version"
        );
    });
}

#[test]
fn the_server_strips_managed_fields_and_the_last_applied_annotation() {
    let mut stored = service("shop", "web", json!({}));
    stored["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
    stored["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "team": "a",
    });
    ClusterObjects::new().with_object(stored).run(|| {
        let read = get_json("v1", "Service", Some("shop"), "web").unwrap().unwrap();
        assert!(read["metadata"].get("managedFields").is_none(), "{read}");
        assert_eq!(read["metadata"]["annotations"], json!({"team": "a"}));
    });
}

#[test]
fn list_orders_by_namespace_then_name() {
    cluster().run(|| {
        let all = list::<Service>(None, &LabelSelector::default()).unwrap();
        assert_eq!(names(&all), ["auth/token", "dev/web", "shop/db", "shop/web"]);

        let shop = list::<Service>(Some("shop"), &LabelSelector::default()).unwrap();
        assert_eq!(names(&shop), ["shop/db", "shop/web"]);

        assert!(
            list::<Service>(Some("prod"), &LabelSelector::default())
                .unwrap()
                .is_empty()
        );
        assert!(list::<StatefulSet>(None, &LabelSelector::default()).unwrap().is_empty());
    });
}

#[test]
fn list_matches_labels_and_expressions_as_kubernetes_does() {
    cluster().run(|| {
        let listed = |namespace, selector: LabelSelector| names(&list::<Service>(namespace, &selector).unwrap());

        assert_eq!(
            listed(None, selector(&[("app", "web")], vec![])),
            ["dev/web", "shop/web"]
        );
        // matchLabels AND matchExpressions.
        assert_eq!(
            listed(
                None,
                selector(&[("app", "web")], vec![requirement("legacy", "DoesNotExist", &[])])
            ),
            ["shop/web"]
        );
        assert_eq!(
            listed(None, selector(&[], vec![requirement("tier", "In", &["front", "data"])])),
            ["dev/web", "shop/db", "shop/web"]
        );
        // NotIn also selects objects without the label.
        assert_eq!(
            listed(None, selector(&[], vec![requirement("tier", "NotIn", &["front"])])),
            ["auth/token", "shop/db"]
        );
        assert_eq!(
            listed(None, selector(&[], vec![requirement("legacy", "Exists", &[])])),
            ["dev/web"]
        );
        assert_eq!(
            listed(Some("shop"), selector(&[("tier", "front")], vec![])),
            ["shop/web"],
            "in one namespace"
        );
        assert!(listed(None, selector(&[("app", "cache")], vec![])).is_empty());
    });
}

#[test]
fn list_json_reads_any_kind() {
    cluster().run(|| {
        let namespaces = list_json("v1", "Namespace", None, &selector(&[("team", "a")], vec![])).unwrap();
        assert_eq!(namespaces.len(), 1);
        assert_eq!(namespaces[0]["metadata"]["name"], "shop");
    });
}

#[test]
fn an_invalid_selector_is_refused() {
    cluster().run(|| {
        let bad = selector(&[], vec![requirement("tier", "Has", &[])]);
        let error = list::<Service>(None, &bad).unwrap_err();
        assert!(matches!(error, ContextError::InvalidSelector(_)), "{error:?}");
        assert!(error.to_string().contains(r#"unknown operator "Has""#), "{error}");
    });
}

#[test]
fn without_a_test_cluster_every_read_is_not_declared() {
    let error = get::<Service>(Some("shop"), "web").unwrap_err();
    assert!(error.is_not_declared(), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("this policy declares no context: add `context: [{apiVersion: v1, kind: Service}]`"),
        "{error}"
    );
    let error = list::<StatefulSet>(Some("shop"), &LabelSelector::default()).unwrap_err();
    assert!(error.is_not_declared(), "{error:?}");
    assert!(error.to_string().contains("to read apps/v1 StatefulSet"), "{error}");
}

#[test]
fn only_declared_kinds_are_readable() {
    let declared = cluster().declare("v1", "Service").declare("v1", "ConfigMap");
    declared.run(|| {
        assert!(get::<Service>(Some("shop"), "web").unwrap().is_some());
        let error = get::<Namespace>(None, "shop").unwrap_err();
        assert!(error.is_not_declared(), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("v1 Namespace is not declared for this policy (declared: v1 ConfigMap, v1 Service)"),
            "{message}"
        );
        assert!(
            message.contains("add `- {apiVersion: v1, kind: Namespace}`"),
            "{message}"
        );
    });
}

#[test]
fn declared_says_which_kinds_are_readable_without_reading() {
    assert_eq!(declared::<Service>(), None, "no test cluster: nothing is declared");
    cluster().run(|| {
        assert_eq!(declared::<Service>(), Some(Scope::Cluster));
        assert_eq!(declared_kind("example.com/v1", "Widget"), Some(Scope::Cluster));
    });
    let declared_kinds = cluster()
        .declare("v1", "Service")
        .not_synced("v1", "ConfigMap")
        .declare("v1", "ConfigMap");
    declared_kinds.run(|| {
        assert_eq!(declared::<Service>(), Some(Scope::Cluster));
        // Declared but not synced: declared, and the read says why it fails.
        assert_eq!(declared_kind("v1", "ConfigMap"), Some(Scope::Cluster));
        assert_eq!(declared::<Namespace>(), None);
        assert_eq!(declared::<StatefulSet>(), None);
    });
}

#[test]
fn a_cluster_is_set_only_while_it_runs() {
    cluster().run(|| {
        assert!(get::<Service>(Some("shop"), "web").unwrap().is_some());
        // A nested cluster replaces it, and is replaced back.
        ClusterObjects::new().run(|| assert!(get::<Service>(Some("shop"), "web").unwrap().is_none()));
        assert!(get::<Service>(Some("shop"), "web").unwrap().is_some());
    });
    assert!(get::<Service>(Some("shop"), "web").unwrap_err().is_not_declared());

    // Also after a panic.
    let panicked = std::panic::catch_unwind(|| cluster().run(|| panic!("in the test")));
    assert!(panicked.is_err());
    assert!(get::<Service>(Some("shop"), "web").unwrap_err().is_not_declared());
}

#[test]
fn not_synced_and_unknown_kinds_fail_with_the_hosts_text() {
    let cluster = cluster()
        .not_synced("v1", "Service")
        .unknown_kind("example.com/v1", "Widget");
    cluster.run(|| {
        let error = get::<Service>(Some("shop"), "web").unwrap_err();
        assert!(matches!(error, ContextError::NotSynced(_)), "{error:?}");
        assert!(!error.is_not_declared());
        assert_eq!(
            error.to_string(),
            "v1 Service: the first list from the test cluster has not finished yet"
        );
        let error = list_json("example.com/v1", "Widget", None, &LabelSelector::default()).unwrap_err();
        assert!(matches!(error, ContextError::UnknownKind(_)), "{error:?}");
        // Other kinds are unaffected.
        assert!(get::<Namespace>(None, "shop").unwrap().is_some());
    });
}

#[test]
fn an_object_that_does_not_read_as_the_type_names_it() {
    let mut malformed = service("shop", "web", json!({}));
    malformed["spec"]["clusterIP"] = json!(5);
    ClusterObjects::new().with_object(malformed).run(|| {
        let error = get::<Service>(Some("shop"), "web").unwrap_err();
        let ContextError::InvalidObject {
            kind, object, target, ..
        } = &error
        else {
            panic!("expected InvalidObject: {error:?}");
        };
        assert_eq!((kind.as_str(), object.as_str()), ("v1 Service", "shop/web"));
        assert!(target.ends_with("Service"), "{target}");
        let message = error.to_string();
        assert!(
            message.starts_with("cannot read v1 Service shop/web from the cluster as "),
            "{message}"
        );
        assert!(
            message.contains("invalid type: integer `5`, expected a string"),
            "{message}"
        );

        let error = list::<Service>(Some("shop"), &LabelSelector::default()).unwrap_err();
        assert!(matches!(error, ContextError::InvalidObject { .. }), "{error:?}");
        // As JSON it reads.
        assert_eq!(
            list_json("v1", "Service", Some("shop"), &LabelSelector::default())
                .unwrap()
                .len(),
            1
        );
    });
}

/// Reads a Service named by the request's `spec.serviceName` and denies when
/// it is missing; `?` turns a failed read into a policy failure.
struct NeedsService;

impl Policy for NeedsService {
    type Settings = ();

    fn evaluate(request: &Request<'_>, _: &()) -> Result<Verdict, PolicyError> {
        let name = request.object_at::<String>("/spec/serviceName")?.unwrap_or_default();
        match get::<Service>(request.namespace(), &name)? {
            Some(_) => Ok(Verdict::allow()),
            None => Ok(Verdict::deny(format!("no Service {name:?}"))),
        }
    }
}

#[test]
fn a_failed_read_is_a_policy_failure_with_question_mark() {
    let statefulset = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"serviceName": "web"},
    });
    let verdict = create(&statefulset)
        .with_cluster(cluster())
        .evaluate::<NeedsService>(())
        .unwrap();
    assert!(verdict.is_allowed());

    let verdict = create(&statefulset)
        .with_cluster([])
        .evaluate::<NeedsService>(())
        .unwrap();
    assert_eq!(verdict.message(), Some(r#"no Service "web""#));

    let error = create(&statefulset).evaluate::<NeedsService>(()).unwrap_err();
    assert!(
        error.starts_with("cluster context: this policy declares no context"),
        "{error}"
    );

    let policy_error = PolicyError::from(ContextError::NotSynced("v1 Service: not yet".into()));
    assert_eq!(policy_error.to_string(), "cluster context: v1 Service: not yet");
    assert!(std::error::Error::source(&policy_error).is_some());
}
