//! # require-labels, in Rust
//!
//! The same policy as `python-require-labels` and `js-require-labels`, written
//! with the SDK, so the three languages can be compared on equal work
//! (BENCHMARKS.md): Services and StatefulSets must carry the label keys the
//! settings list; where a setting gives a default value, a missing label is
//! added instead of denied.
//!
//! ```json
//! {"labels": ["team", "tier"], "defaults": {"tier": "backend"}}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmhook_policy::object::pointer_token;
use wasmhook_policy::serde_json::Map;
use wasmhook_policy::{Metadata, Operation, Policy, PolicyError, Request, Verdict, validation};

/// The required label keys, and values for those that may be added.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Every Service and StatefulSet must have these label keys.
    labels: Vec<String>,
    /// A missing label listed here is added with this value.
    #[serde(default)]
    defaults: BTreeMap<String, String>,
}

/// The policy.
pub struct RequireLabels;

/// Only what the policy reads of the object.
#[derive(Deserialize)]
struct View {
    #[serde(default)]
    metadata: Metadata,
}

impl Policy for RequireLabels {
    type Settings = Settings;

    fn validate_settings(settings: &Settings) -> Result<(), String> {
        if settings.labels.is_empty() {
            return Err("labels must be a non-empty list of label keys".into());
        }
        for (index, key) in settings.labels.iter().enumerate() {
            validation::label_key(key).map_err(|error| format!("labels[{index}] {key:?}: {error}"))?;
        }
        for (key, value) in &settings.defaults {
            if !settings.labels.contains(key) {
                return Err(format!("defaults[{key:?}] is not one of the required labels"));
            }
            if value.len() > 63 {
                return Err(format!("defaults[{key:?}] must be at most 63 characters"));
            }
        }
        Ok(())
    }

    fn evaluate(request: &Request<'_>, settings: &Settings) -> Result<Verdict, PolicyError> {
        let kind = request.kind();
        let checked = matches!(
            (kind.group.as_str(), kind.kind.as_str()),
            ("", "Service") | ("apps", "StatefulSet")
        );
        if !checked || request.operation() == Operation::Delete || request.sub_resource().is_some() {
            return Ok(Verdict::allow());
        }
        let Some(View { metadata }) = request.object()? else {
            return Err(PolicyError::other("the request has no object"));
        };
        let missing: Vec<&str> = settings
            .labels
            .iter()
            .filter(|key| !metadata.labels.contains_key(*key))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(Verdict::allow());
        }

        let without_default: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|key| !settings.defaults.contains_key(*key))
            .collect();
        if !without_default.is_empty() {
            let name = metadata
                .name
                .as_deref()
                .or(request.name())
                .or(metadata.generate_name.as_deref())
                .unwrap_or_default();
            let display = match request.namespace() {
                Some(namespace) => format!("{} {namespace}/{name}", kind.kind),
                None => format!("{} {name}", kind.kind),
            };
            return Ok(Verdict::deny(format!(
                "{display} is missing the required label(s) {}: set them in metadata.labels",
                without_default.join(", ")
            )));
        }

        // Every missing label has a default: add them, changing nothing else.
        let mut object = request.mutable_object()?;
        if object.get("/metadata/labels").is_some_and(|labels| labels.is_null()) {
            object.set("/metadata/labels", Map::new())?;
        }
        let mut added = Vec::with_capacity(missing.len());
        for key in missing {
            let value = &settings.defaults[key];
            object.set(&format!("/metadata/labels/{}", pointer_token(key)), value.as_str())?;
            added.push(format!("{key}={value}"));
        }
        Ok(Verdict::mutate(object).with_warning(format!("added default label(s) {}", added.join(", "))))
    }
}

wasmhook_policy::export_policy!(RequireLabels);

#[cfg(test)]
mod tests;
