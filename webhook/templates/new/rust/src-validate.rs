//! {{name}}: a wasmhook policy. Objects must carry the label its settings
//! name (`{"label": "team"}`); a request for one without it is denied.

use serde::Deserialize;
use wasmhook_policy::{Operation, Policy, PolicyError, Request, Verdict, validation};

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
        let name = request.name().unwrap_or("the object");
        Ok(Verdict::deny(format!(
            "{name} has no label {:?}: add it to metadata.labels",
            settings.label
        )))
    }
}

wasmhook_policy::export_policy!({{type_name}});

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
}
