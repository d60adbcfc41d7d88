//! Loss-free editing of a Kubernetes object.
//!
//! Deserializing an object into k8s-openapi types and serializing it back
//! drops every field the types do not know (newer API fields, CRD extras), and
//! the server's JSON Patch would then delete them from the cluster. An
//! [`Object`] therefore holds the request's object as a JSON document and is
//! changed in place: by JSON pointer, or through a typed view whose *changes*
//! (never its re-serialization) are applied back to the document.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::PolicyError;

/// An object being mutated. Hand it to [`crate::Verdict::mutate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    document: Value,
    changed: bool,
}

impl Object {
    /// Parses an object from JSON. The document must be a JSON object.
    pub fn from_json(json: &str) -> Result<Self, PolicyError> {
        let document: Value = serde_json::from_str(json).map_err(|source| PolicyError::InvalidObject {
            what: "object".into(),
            target: "a JSON document",
            source,
        })?;
        Self::from_value(document)
    }

    /// Wraps a JSON value. The value must be a JSON object.
    pub fn from_value(document: Value) -> Result<Self, PolicyError> {
        if !document.is_object() {
            return Err(PolicyError::other("the object to mutate is not a JSON object"));
        }
        Ok(Self {
            document,
            changed: false,
        })
    }

    /// The value at a JSON pointer (RFC 6901), such as `/spec/clusterIP`.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.document.pointer(pointer)
    }

    /// The string at a JSON pointer, if there is one.
    pub fn get_str(&self, pointer: &str) -> Option<&str> {
        self.get(pointer).and_then(Value::as_str)
    }

    /// Sets the value at a JSON pointer, creating missing parent objects.
    ///
    /// An array index must exist, or be `-` to append. Setting a value equal to
    /// the current one is not a change.
    pub fn set(&mut self, pointer: &str, value: impl Into<Value>) -> Result<&mut Self, PolicyError> {
        let value = value.into();
        let (parent, last) = split_pointer(pointer)?;
        let container = self.parent_mut(pointer, &parent)?;
        let changed = match container {
            Value::Object(map) => match map.get_mut(&last) {
                Some(slot) if *slot == value => false,
                Some(slot) => {
                    *slot = value;
                    true
                }
                None => {
                    map.insert(last, value);
                    true
                }
            },
            Value::Array(items) if last == "-" => {
                items.push(value);
                true
            }
            Value::Array(items) => {
                let index = array_index(pointer, &last, items.len())?;
                if items[index] == value {
                    false
                } else {
                    items[index] = value;
                    true
                }
            }
            _ => return Err(edit_error(pointer, "the parent is neither an object nor an array")),
        };
        self.changed |= changed;
        Ok(self)
    }

    /// Removes the value at a JSON pointer. Removing what is not there is not
    /// a change (and not an error).
    pub fn remove(&mut self, pointer: &str) -> Result<&mut Self, PolicyError> {
        let (parent, last) = split_pointer(pointer)?;
        let parent_pointer = join_pointer(&parent);
        let removed = match self.document.pointer_mut(&parent_pointer) {
            Some(Value::Object(map)) => map.remove(&last).is_some(),
            Some(Value::Array(items)) => {
                let index = array_index(pointer, &last, items.len())?;
                items.remove(index);
                true
            }
            _ => false,
        };
        self.changed |= removed;
        Ok(self)
    }

    /// Reads the object as `T` (for example a k8s-openapi `StatefulSet`),
    /// lets `edit` change it, and applies exactly what `edit` changed to the
    /// document. Fields `T` does not know are kept.
    ///
    /// ```
    /// use k8s_openapi::api::core::v1::Service;
    /// use wasmhook_policy::Object;
    ///
    /// let mut object = Object::from_json(
    ///     r#"{"spec": {"ports": [{"port": 80}], "futureField": {"keep": true}}}"#,
    /// )?;
    /// object.edit_as(|service: &mut Service| {
    ///     service.spec.get_or_insert_with(Default::default).cluster_ip = Some("None".into());
    /// })?;
    /// assert_eq!(object.get_str("/spec/clusterIP"), Some("None"));
    /// assert_eq!(object.get("/spec/futureField/keep"), Some(&true.into()));
    /// # Ok::<(), wasmhook_policy::PolicyError>(())
    /// ```
    pub fn edit_as<T, F>(&mut self, edit: F) -> Result<&mut Self, PolicyError>
    where
        T: DeserializeOwned + Serialize,
        F: FnOnce(&mut T),
    {
        let mut typed: T =
            serde_json::from_value(self.document.clone()).map_err(|source| PolicyError::InvalidObject {
                what: "object".into(),
                target: std::any::type_name::<T>(),
                source,
            })?;
        let before = to_value(&typed)?;
        edit(&mut typed);
        let after = to_value(&typed)?;
        let changes = json_patch::diff(&before, &after);
        if changes.0.is_empty() {
            return Ok(self);
        }
        json_patch::patch(&mut self.document, &changes)
            .map_err(|error| edit_error(&error.path.to_string(), &error.kind.to_string()))?;
        self.changed = true;
        Ok(self)
    }

    /// Whether any edit changed the document.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// The document.
    pub fn as_value(&self) -> &Value {
        &self.document
    }

    /// The document, consumed.
    pub fn into_value(self) -> Value {
        self.document
    }

    /// Walks to the parent of `pointer`'s last segment, creating missing
    /// objects on the way.
    fn parent_mut(&mut self, pointer: &str, parent: &[String]) -> Result<&mut Value, PolicyError> {
        let mut current = &mut self.document;
        for segment in parent {
            current = match current {
                Value::Object(map) => map.entry(segment.clone()).or_insert_with(|| Value::Object(Map::new())),
                Value::Array(items) => {
                    let index = array_index(pointer, segment, items.len())?;
                    &mut items[index]
                }
                _ => return Err(edit_error(pointer, &format!("{segment:?} is inside a scalar value"))),
            };
            if current.is_null() {
                *current = Value::Object(Map::new());
            }
        }
        Ok(current)
    }
}

fn to_value<T: Serialize>(typed: &T) -> Result<Value, PolicyError> {
    serde_json::to_value(typed)
        .map_err(|error| PolicyError::other(format!("cannot serialize the edited object: {error}")))
}

/// Splits a JSON pointer into its unescaped parent segments and last segment.
fn split_pointer(pointer: &str) -> Result<(Vec<String>, String), PolicyError> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(edit_error(pointer, "a JSON pointer must start with '/'"));
    };
    let mut segments: Vec<String> = rest
        .split('/')
        .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
        .collect();
    let last = segments.pop().unwrap_or_default();
    Ok((segments, last))
}

/// One key as a JSON-pointer token (RFC 6901): `~` becomes `~0` and `/`
/// becomes `~1`, so a label key such as `app.kubernetes.io/name` addresses one
/// member: `format!("/metadata/labels/{}", pointer_token(key))`.
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn join_pointer(segments: &[String]) -> String {
    segments
        .iter()
        .map(|segment| format!("/{}", pointer_token(segment)))
        .collect()
}

fn array_index(pointer: &str, segment: &str, len: usize) -> Result<usize, PolicyError> {
    match segment.parse::<usize>() {
        Ok(index) if index < len => Ok(index),
        _ => Err(edit_error(
            pointer,
            &format!("{segment:?} is not an index of an array of {len} items"),
        )),
    }
}

fn edit_error(pointer: &str, reason: &str) -> PolicyError {
    PolicyError::Edit {
        pointer: pointer.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use serde_json::json;

    use super::*;

    /// A StatefulSet with a field k8s-openapi does not know and a quantity in
    /// a form that a typed round trip could rewrite.
    fn statefulset() -> Object {
        Object::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "labels": {"app": "db"}},
            "spec": {
                "serviceName": "",
                "futureScalingPolicy": {"mode": "Burst"},
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{
                        "name": "db",
                        "image": "postgres:17",
                        "experimentalField": 7,
                        "resources": {"limits": {"memory": "1.5Gi"}}
                    }]}
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn typed_edits_keep_unknown_fields_and_formatting() {
        let mut object = statefulset();
        let original = object.as_value().clone();
        object
            .edit_as(|sts: &mut StatefulSet| {
                sts.spec.as_mut().unwrap().service_name = Some("db-headless".into());
            })
            .unwrap();

        let mut expected = original;
        expected["spec"]["serviceName"] = json!("db-headless");
        assert_eq!(object.as_value(), &expected, "only serviceName may change");
        assert!(object.is_changed());
    }

    #[test]
    fn a_typed_edit_that_changes_nothing_is_not_a_change() {
        let mut object = statefulset();
        object.edit_as(|_: &mut StatefulSet| {}).unwrap();
        assert!(!object.is_changed());
    }

    #[test]
    fn set_creates_parents_and_detects_no_ops() {
        let mut object = Object::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        object.set("/metadata/name", "x").unwrap();
        assert!(!object.is_changed(), "setting the same value is not a change");
        object.set("/metadata/labels/a~1b", "c").unwrap();
        assert!(object.is_changed());
        assert_eq!(
            object.as_value(),
            &json!({"metadata": {"name": "x", "labels": {"a/b": "c"}}})
        );
    }

    #[test]
    fn arrays_are_addressed_by_index_or_appended() {
        let mut object = Object::from_value(json!({"spec": {"clusterIPs": ["10.0.0.1"]}})).unwrap();
        object.set("/spec/clusterIPs/0", "None").unwrap();
        object.set("/spec/clusterIPs/-", "fd00::1").unwrap();
        assert_eq!(object.get("/spec/clusterIPs"), Some(&json!(["None", "fd00::1"])));
        let error = object.set("/spec/clusterIPs/5", "x").unwrap_err().to_string();
        assert!(
            error.contains("/spec/clusterIPs/5") && error.contains("array of 2"),
            "{error}"
        );
    }

    #[test]
    fn remove_of_a_missing_value_is_not_a_change() {
        let mut object = Object::from_value(json!({"spec": {"a": 1}})).unwrap();
        object.remove("/spec/b").unwrap();
        assert!(!object.is_changed());
        object.remove("/spec/a").unwrap();
        assert!(object.is_changed());
        assert_eq!(object.as_value(), &json!({"spec": {}}));
    }

    #[test]
    fn bad_pointers_and_non_objects_are_errors() {
        let mut object = Object::from_value(json!({"spec": "scalar"})).unwrap();
        assert!(object.set("spec", 1).is_err(), "pointer without leading slash");
        assert!(object.set("/spec/x/y", 1).is_err(), "path through a scalar");
        assert!(Object::from_json("[1, 2]").is_err());
        assert!(Object::from_json("{").is_err());
    }
}
