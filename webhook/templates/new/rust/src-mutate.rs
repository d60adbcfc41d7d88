//! {{name}}: a wasmhook policy. Objects must carry the label its settings
//! name; one without it gets it, with the default value the settings give
//! (`{"label": "team", "value": "unowned"}`).

use serde::Deserialize;
use wasmhook_policy::object::pointer_token;
use wasmhook_policy::{Operation, Policy, PolicyError, Request, Verdict, validation};

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
        // Edit the request's own JSON: fields no type knows are kept, and the
        // server turns the change into a JSON Patch.
        let mut object = request.mutable_object()?;
        let pointer = format!("/metadata/labels/{}", pointer_token(&settings.label));
        object.set(&pointer, settings.value.as_str())?;
        Ok(Verdict::mutate(object).with_warning(format!("label {} set to {:?}", settings.label, settings.value)))
    }
}

wasmhook_policy::export_policy!({{type_name}});

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
}
