//! {{name}}: a wasmhook policy. Objects must carry the label its settings
//! name (`{"label": "team"}`); a request for one without it is denied —
//! unless its Namespace carries the label.
//!
//! When the policy set lets the policy read Namespaces, the label may be on
//! the object's Namespace instead:
//!
//! ```yaml
//! context:
//!   - {apiVersion: v1, kind: Namespace}
//! ```
//!
//! Without it (as in `tests/`), the read is refused as not declared and the
//! policy only looks at the object.

use serde::Deserialize;
use wasmhook_policy::context;
use wasmhook_policy::{Metadata, Operation, Policy, PolicyError, Request, Verdict, validation};

/// The policy's settings, as the policy set's `settings:` gives them.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// The label every object must carry.
    pub label: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self { label: "team".into() }
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
        // An object in a Namespace that carries the label belongs to the
        // Namespace's owner.
        if namespace_label(request, &settings.label)?.is_some() {
            return Ok(Verdict::allow());
        }
        let name = request.name().unwrap_or("the object");
        Ok(Verdict::deny(format!(
            "{name} has no label {:?}: add it to metadata.labels",
            settings.label
        )))
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
    use wasmhook_policy::testing::{assert_unchanged, create, denial_message};

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
    fn an_object_with_the_label_is_allowed() {
        let verdict = create(service(json!({"team": "shop"})))
            .evaluate::<{{type_name}}>(json!(null))
            .unwrap();
        assert_unchanged(&verdict);
    }

    #[test]
    fn an_object_without_the_label_is_denied() {
        let verdict = create(service(json!({}))).evaluate::<{{type_name}}>(json!({"label": "owner"})).unwrap();
        assert!(denial_message(&verdict).contains("no label \"owner\""));
    }

    /// The object's Namespace, as the cluster would hold it.
    fn namespace(labels: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "labels": labels}})
    }

    #[test]
    fn an_object_in_a_namespace_with_the_label_is_allowed_when_the_policy_may_read_it() {
        let request = create(service(json!({}))).with_cluster([namespace(json!({"team": "shop"}))]);
        assert_unchanged(&request.evaluate::<{{type_name}}>(json!(null)).unwrap());

        let request = create(service(json!({}))).with_cluster([namespace(json!({"app": "shop"}))]);
        assert!(denial_message(&request.evaluate::<{{type_name}}>(json!(null)).unwrap()).contains("no label"));
    }
}
