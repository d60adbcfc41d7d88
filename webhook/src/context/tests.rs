use std::sync::Arc;

use serde_json::{Value, json};

use super::files::{offline_context, read_objects, store_of};
use super::*;

fn service(namespace: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            "annotations": {(store::LAST_APPLIED): "{\"a\":1}"}},
        "spec": {"clusterIP": "None"}
    })
}

fn services() -> ContextStore {
    store_of(
        "test",
        vec![
            service("shop", "web", json!({"app": "web", "tier": "front"})),
            service("shop", "db", json!({"app": "db"})),
            service("blog", "web", json!({"app": "web"})),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        ],
    )
    .unwrap()
}

fn names(objects: &[Arc<str>]) -> Vec<String> {
    objects
        .iter()
        .map(|json| {
            let object: Value = serde_json::from_str(json).unwrap();
            format!(
                "{}/{}",
                object["metadata"]["namespace"].as_str().unwrap_or(""),
                object["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

const SERVICE: fn() -> ResourceKind = || ResourceKind::new("v1", "Service");

#[test]
fn objects_are_kept_without_managed_fields_or_the_last_applied_copy() {
    let store = services();
    let web = store.get(&SERVICE(), Some("shop"), "web").unwrap().expect("stored");
    let web: Value = serde_json::from_str(&web).unwrap();
    assert!(web["metadata"].get("managedFields").is_none());
    assert!(web["metadata"].get("annotations").is_none(), "emptied, so removed");
    assert_eq!(web["spec"]["clusterIP"], "None");
    assert_eq!(store.get(&SERVICE(), Some("shop"), "nope").unwrap(), None);
    assert_eq!(store.get(&SERVICE(), Some("blog"), "db").unwrap(), None);
    let namespace = ResourceKind::new("v1", "Namespace");
    assert!(store.get(&namespace, None, "shop").unwrap().is_some(), "cluster-scoped");
}

#[test]
fn lists_select_by_namespace_and_labels_in_order() {
    let store = services();
    let all = LabelQuery::parse("").unwrap();
    assert_eq!(
        names(&store.list(&SERVICE(), None, &all).unwrap()),
        ["blog/web", "shop/db", "shop/web"]
    );
    assert_eq!(
        names(&store.list(&SERVICE(), Some("shop"), &all).unwrap()),
        ["shop/db", "shop/web"]
    );
    let web = LabelQuery::parse(r#"{"matchLabels": {"app": "web"}}"#).unwrap();
    assert_eq!(
        names(&store.list(&SERVICE(), None, &web).unwrap()),
        ["blog/web", "shop/web"]
    );
    let front =
        LabelQuery::parse(r#"{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]}"#)
            .unwrap();
    assert_eq!(names(&store.list(&SERVICE(), None, &front).unwrap()), ["shop/web"]);
    let no_tier = LabelQuery::parse(r#"{"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}"#).unwrap();
    assert_eq!(
        names(&store.list(&SERVICE(), None, &no_tier).unwrap()),
        ["blog/web", "shop/db"]
    );
    assert!(store.list(&SERVICE(), Some("none"), &all).unwrap().is_empty());
}

#[test]
fn bad_selectors_and_unknown_or_unsynced_kinds_are_typed_errors() {
    let error = LabelQuery::parse("app=web").unwrap_err();
    assert!(
        matches!(&error, ContextError::InvalidSelector(text) if text.contains("app=web")),
        "{error}"
    );
    let error = LabelQuery::parse(r#"{"matchExpressions": [{"key": "a", "operator": "Near"}]}"#).unwrap_err();
    assert!(matches!(error, ContextError::InvalidSelector(_)), "{error}");

    let store = services();
    let secret = ResourceKind::new("v1", "Secret");
    let error = store.get(&secret, Some("shop"), "x").unwrap_err();
    assert!(
        matches!(&error, ContextError::UnknownKind(text) if text.contains("v1 Secret")),
        "{error}"
    );

    let (cache, added) = store.add_kind(ResourceKind::new("apps/v1", "StatefulSet"));
    assert!(added);
    let error = store
        .list(
            &ResourceKind::new("apps/v1", "StatefulSet"),
            None,
            &LabelQuery::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&error, ContextError::NotSynced(text) if text.contains("apps/v1 StatefulSet")),
        "{error}"
    );
    cache.mark_synced();
    assert!(
        store
            .list(
                &ResourceKind::new("apps/v1", "StatefulSet"),
                None,
                &LabelQuery::default()
            )
            .unwrap()
            .is_empty()
    );
}

#[test]
fn watch_events_apply_delete_and_a_relist_replaces() {
    let store = ContextStore::new("test");
    let (cache, _) = store.add_kind(SERVICE());
    cache.apply(service("shop", "web", json!({}))).unwrap();
    cache.apply(service("shop", "db", json!({}))).unwrap();
    cache.mark_synced();
    let all = LabelQuery::default();
    assert_eq!(
        names(&store.list(&SERVICE(), None, &all).unwrap()),
        ["shop/db", "shop/web"]
    );
    cache.delete(&service("shop", "db", json!({}))).unwrap();
    assert_eq!(names(&store.list(&SERVICE(), None, &all).unwrap()), ["shop/web"]);
    // A re-list after a watch outage: what was deleted meanwhile is gone.
    let failures = cache.replace(vec![service("blog", "api", json!({})), json!({"metadata": {}})]);
    assert_eq!(failures.len(), 1, "the object without a name is skipped, and said");
    assert_eq!(names(&store.list(&SERVICE(), None, &all).unwrap()), ["blog/api"]);
    assert_eq!(cache.len(), 1);
    assert!(cache.json_bytes() > 0);
}

fn declared(kind: ResourceKind, scope: Scope) -> Declaration {
    Declaration { kind, scope }
}

#[test]
fn reads_are_limited_to_what_the_policy_declares() {
    let store: Arc<dyn ContextSource> = Arc::new(services());
    let cluster = PolicyContext::new(vec![declared(SERVICE(), Scope::Cluster)], store.clone());
    let request = cluster.for_request(Some("shop".into()));
    assert_eq!(request.scope(&SERVICE()), Some(Scope::Cluster));
    assert_eq!(request.scope(&ResourceKind::new("v1", "Secret")), None);
    assert_eq!(
        request.scope(&ResourceKind::new("v2", "Service")),
        None,
        "another version"
    );
    assert!(request.get(&SERVICE(), Some("blog"), "web").unwrap().is_some());
    assert_eq!(names(&request.list(&SERVICE(), None, "").unwrap()).len(), 3);

    let error = request
        .get(&ResourceKind::new("v1", "Secret"), Some("shop"), "token")
        .unwrap_err();
    let ContextError::NotDeclared(text) = &error else {
        panic!("{error:?}")
    };
    assert!(text.contains("v1 Secret is not declared"), "{text}");
    assert!(text.contains("declared: v1 Service"), "{text}");
    assert!(
        text.contains("{apiVersion: v1, kind: Secret}"),
        "says what to add: {text}"
    );

    let own = PolicyContext::new(vec![declared(SERVICE(), Scope::RequestNamespace)], store);
    let request = own.for_request(Some("shop".into()));
    assert_eq!(request.scope(&SERVICE()), Some(Scope::RequestNamespace));
    assert!(request.get(&SERVICE(), Some("shop"), "web").unwrap().is_some());
    assert_eq!(
        names(&request.list(&SERVICE(), Some("shop"), "{}").unwrap()),
        ["shop/db", "shop/web"]
    );
    for (namespace, asked) in [(Some("blog"), "namespace \"blog\""), (None, "every namespace")] {
        let error = request.list(&SERVICE(), namespace, "").unwrap_err();
        let ContextError::NotDeclared(text) = &error else {
            panic!("{error:?}")
        };
        assert!(text.contains("scope RequestNamespace"), "{text}");
        assert!(text.contains(asked), "{text}");
    }
    let error = undeclared(&SERVICE());
    assert!(error.to_string().contains("declares no context"), "{error}");
}

#[test]
fn files_hold_documents_and_lists_and_errors_name_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n\
         ---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web, namespace: x}\n",
    )
    .unwrap();
    let documents = read_objects(&path).unwrap();
    let context = offline_context("cluster.yaml", documents, None, &[ResourceKind::new("v1", "ConfigMap")]).unwrap();
    let kinds: Vec<String> = context.declarations().iter().map(|d| d.kind.to_string()).collect();
    assert_eq!(kinds, ["apps/v1 StatefulSet", "v1 Service", "v1 ConfigMap"]);
    let request = context.for_request(None);
    assert!(request.get(&SERVICE(), Some("x"), "a").unwrap().is_some());
    let config_maps = request.list(&ResourceKind::new("v1", "ConfigMap"), None, "").unwrap();
    assert!(config_maps.is_empty(), "declared without objects: empty, not unknown");

    let error = store_of("c.yaml", vec![json!({"kind": "Service", "metadata": {"name": "a"}})]).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("c.yaml, document 1") && text.contains("no apiVersion"),
        "{text}"
    );
    let error = store_of(
        "c.yaml",
        vec![json!({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {}}]})],
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("document 1, item 1: no metadata.name"),
        "{error}"
    );
    std::fs::write(&path, "a: [unclosed\n").unwrap();
    let error = read_objects(&path).unwrap_err().to_string();
    assert!(
        error.contains("cluster.yaml") && error.contains("not YAML or JSON"),
        "{error}"
    );
}
