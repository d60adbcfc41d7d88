//! {{name}}: a wasmhook policy. Objects must carry the label its settings
//! name; one without it gets it, with the value of the same label on its
//! Namespace, or else the default value the settings give
//! (`{"label": "team", "value": "unowned"}`).
//!
//! When the policy set lets the policy read Namespaces, the value comes from
//! the object's Namespace when it carries the label:
//!
//! ```yaml
//! context:
//!   - {apiVersion: v1, kind: Namespace}
//! ```
//!
//! Without it (as in `tests/`), the read is refused as not declared and the
//! settings' value is used.

use serde::Deserialize;
use wasmhook_policy::context;
use wasmhook_policy::object::pointer_token;
use wasmhook_policy::{Metadata, Operation, Policy, PolicyError, Request, Verdict, validation};

/// The policy's settings, as the policy set's `settings:` gives them.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// The label every object must carry.
    pub label: String,
    /// The value it gets when it is missing.
    pub value: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            label: "team".into(),
            value: "unowned".into(),
        }
    }
}

/// The policy.
pub struct {{type_name}};

impl Policy for {{type_name}} {
    type Settings = Settings;

    fn validate_settings(settings: &Settings) -> Result<(), String> {
        validation::label_key(&settings.label).map_err(|error| format!("label {:?}: {error}", settings.label))
    }

    fn evaluate(request: &Request<'_>, settings: &Settings) -> Result<Verdict, PolicyError> {
        if request.operation() == Operation::Delete {
            return Ok(Verdict::allow());
        }
        if request.object_labels()?.contains_key(&settings.label) {
            return Ok(Verdict::allow());
        }
        let value = namespace_label(request, &settings.label)?.unwrap_or_else(|| settings.value.clone());
        // Edit the request's own JSON: fields no type knows are kept, and the
        // server turns the change into a JSON Patch.
        let mut object = request.mutable_object()?;
        let pointer = format!("/metadata/labels/{}", pointer_token(&settings.label));
        object.set(&pointer, value.as_str())?;
        Ok(Verdict::mutate(object).with_warning(format!("label {} set to {value:?}", settings.label)))
    }
}

wasmhook_policy::export_policy!({{type_name}});

/// What the policy reads of a Namespace: its metadata, labels included (a
/// narrow view: the rest of the object is skipped, not allocated).
#[derive(Deserialize, Default)]
#[serde(default)]
struct NamespaceView {
    metadata: Metadata,
}

/// The value the object's Namespace gives `label`: read from the cluster
/// when the policy set lets the policy read Namespaces (`context:`, see the
/// crate documentation); `None` when it does not, when the object is
/// cluster-scoped, or when the Namespace has no such label.
fn namespace_label(request: &Request<'_>, label: &str) -> Result<Option<String>, PolicyError> {
    // No `context:` for Namespaces (as in the test suite): skip the read.
    // Asking first is cheaper than a read refused as not declared.
    let (Some(namespace), Some(_)) = (request.namespace(), context::declared_kind("v1", "Namespace")) else {
        return Ok(None);
    };
    // A failed read (the server's cache still filling, a cluster that serves
    // no Namespaces) is a failure of the policy, which its failurePolicy
    // settles.
    let found = context::get_as::<NamespaceView>("v1", "Namespace", None, namespace)?;
    Ok(found.and_then(|mut view| view.metadata.labels.remove(label)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmhook_policy::testing::{assert_unchanged, create, mutated_object};

    use super::{{type_name}};

    fn service(labels: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": labels},
            "spec": {"ports": [{"port": 80}]},
        })
    }

    #[test]
    fn an_object_with_the_label_is_unchanged() {
        let verdict = create(service(json!({"team": "shop"})))
            .evaluate::<{{type_name}}>(json!(null))
            .unwrap();
        assert_unchanged(&verdict);
    }

    #[test]
    fn a_missing_label_is_added_and_nothing_else_changes() {
        let original = service(json!({"app": "web"}));
        let verdict = create(&original).evaluate::<{{type_name}}>(json!(null)).unwrap();
        let mut expected = original;
        expected["metadata"]["labels"]["team"] = json!("unowned");
        assert_eq!(mutated_object(&verdict), expected);
    }

    #[test]
    fn the_namespace_gives_the_value_when_the_policy_may_read_it() {
        // The object's Namespace, as the cluster would hold it.
        let namespace = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "default", "labels": {"team": "shop"}},
        });
        let original = service(json!({"app": "web"}));
        let verdict = create(&original)
            .with_cluster([namespace])
            .evaluate::<{{type_name}}>(json!(null))
            .unwrap();
        let mut expected = original;
        expected["metadata"]["labels"]["team"] = json!("shop");
        assert_eq!(mutated_object(&verdict), expected);
    }
}
