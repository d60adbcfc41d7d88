//! Unit tests, run natively through the same glue as the component. The
//! suite in `tests/` runs the built component on recorded reviews.

use serde_json::{Value, json};
use wasmhook_policy::testing::{assert_unchanged, create, delete, denial_message, mutated_object, validate_settings};

use super::RequireLabels;

fn service(labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "prod", "labels": labels},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}},
    })
}

#[test]
fn an_object_with_every_label_is_allowed_unchanged() {
    let settings = json!({"labels": ["team", "app.kubernetes.io/name"]});
    let verdict = create(service(json!({"team": "a", "app.kubernetes.io/name": "web"})))
        .evaluate::<RequireLabels>(&settings)
        .unwrap();
    assert_unchanged(&verdict);
}

#[test]
fn every_missing_label_is_named_in_the_denial() {
    let settings = json!({"labels": ["team", "tier", "app"]});
    let verdict = create(service(json!({"app": "web"})))
        .evaluate::<RequireLabels>(&settings)
        .unwrap();
    assert_eq!(
        denial_message(&verdict),
        "Service prod/web is missing the required label(s) team, tier: set them in metadata.labels"
    );
}

#[test]
fn missing_labels_with_defaults_are_added_and_nothing_else_changes() {
    let settings = json!({"labels": ["team", "app.kubernetes.io/part-of"], "defaults": {"team": "platform", "app.kubernetes.io/part-of": "shop"}});
    let original = service(json!({"app": "web"}));
    let verdict = create(&original).evaluate::<RequireLabels>(&settings).unwrap();
    let mut expected = original.clone();
    expected["metadata"]["labels"] = json!({"app": "web", "team": "platform", "app.kubernetes.io/part-of": "shop"});
    assert_eq!(mutated_object(&verdict), expected);
    assert_eq!(
        verdict.warnings(),
        ["added default label(s) team=platform, app.kubernetes.io/part-of=shop"]
    );
}

#[test]
fn null_labels_become_a_map_of_the_defaults() {
    let settings = json!({"labels": ["team"], "defaults": {"team": "platform"}});
    let verdict = create(service(Value::Null))
        .evaluate::<RequireLabels>(&settings)
        .unwrap();
    assert_eq!(
        mutated_object(&verdict)["metadata"]["labels"],
        json!({"team": "platform"})
    );
}

#[test]
fn deletes_and_other_kinds_are_not_checked() {
    let settings = json!({"labels": ["team"]});
    assert_unchanged(&delete(service(json!({}))).evaluate::<RequireLabels>(&settings).unwrap());
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "prod"}});
    assert_unchanged(&create(&config_map).evaluate::<RequireLabels>(&settings).unwrap());
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    for (settings, reason) in [
        (json!({"labels": []}), "non-empty"),
        (json!({"labels": ["team name"]}), "labels[0] \"team name\""),
        (
            json!({"labels": ["team"], "defaults": {"tier": "x"}}),
            "defaults[\"tier\"] is not one of the required",
        ),
        (json!({"labels": ["team"], "extra": 1}), "unknown field `extra`"),
        (Value::Null, "labels"),
    ] {
        let error = validate_settings::<RequireLabels>(&settings.to_string()).unwrap_err();
        assert!(error.contains(reason), "{settings}: {error}");
    }
}
