//! From a policy's mutated object to the JSON Patch the API server applies.
//!
//! Policies return the whole mutated object; the server computes the patch,
//! so every policy language gets correct, minimal patches for free. The diff
//! compares raw text first and parses only what differs
//! (`wasmhook_rawjson::diff`): the SDK writes every member a policy did not
//! touch back byte for byte, so a two-field change to a kilobytes-long object
//! costs two short parses, not two whole ones. Its patch is exactly
//! `json_patch::diff` of the parsed objects, which the unit tests, the
//! integration tables and the `json_patch_roundtrip` fuzz target check by
//! applying it.

use base64::Engine as _;
use json_patch::jsonptr::Pointer;
use json_patch::{Patch, PatchOperation};
use serde_json::Value;

use crate::engine::PolicyFailure;

/// The fields a mutation may not change: they identify the object.
const IDENTITY: [&str; 4] = ["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace"];

/// A computed mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The JSON Patch (RFC 6902) from the original to the mutated object.
    pub patch: Patch,
    /// The mutated object as the policy returned it (valid JSON).
    pub mutated_json: String,
}

impl Mutation {
    /// The patch as the API server wants it: standard base64 of its JSON.
    pub fn encoded(&self) -> String {
        let json = serde_json::to_vec(&self.patch).expect("a JSON Patch always serializes");
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// The mutated object, parsed (for people: `eval`, test suites). Valid,
    /// but it may nest deeper than serde_json builds a `Value` (128 levels):
    /// then the error says so.
    pub fn mutated(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.mutated_json)
    }
}

/// Computes the patch from `original_json` (the request's object, valid JSON)
/// to `mutated_json` (what the policy returned). `Ok(None)` when nothing
/// changed.
pub fn compute(original_json: &str, mutated_json: String) -> Result<Option<Mutation>, PolicyFailure> {
    if !matches!(
        wasmhook_rawjson::Kind::of(&mutated_json),
        wasmhook_rawjson::Kind::Object
    ) {
        let what = match serde_json::from_str::<Value>(&mutated_json) {
            Ok(value) => json_type(&value),
            Err(error) => return Err(not_json(&error)),
        };
        return Err(PolicyFailure::invalid_output(format!(
            "the mutated object must be a JSON object, not {what}"
        )));
    }
    let patch = wasmhook_rawjson::diff(original_json, &mutated_json).map_err(|error| not_json(&error))?;
    if patch.0.is_empty() {
        return Ok(None);
    }
    if patch.0.iter().any(touches_identity) {
        check_identity(original_json, &mutated_json)?;
    }
    Ok(Some(Mutation { patch, mutated_json }))
}

fn not_json(error: &serde_json::Error) -> PolicyFailure {
    PolicyFailure::invalid_output(format!("the mutated object is not valid JSON: {error}"))
}

/// Whether an operation's path is an identity field, inside one, or one of
/// their parents (replacing `/metadata` may change the name).
fn touches_identity(operation: &PatchOperation) -> bool {
    let path = operation_path(operation);
    IDENTITY.iter().any(|identity| {
        let identity = Pointer::parse(identity).expect("a valid pointer");
        identity.starts_with(path) || path.starts_with(identity)
    })
}

fn operation_path(operation: &PatchOperation) -> &Pointer {
    match operation {
        PatchOperation::Add(operation) => &operation.path,
        PatchOperation::Remove(operation) => &operation.path,
        PatchOperation::Replace(operation) => &operation.path,
        PatchOperation::Move(operation) => &operation.path,
        PatchOperation::Copy(operation) => &operation.path,
        PatchOperation::Test(operation) => &operation.path,
    }
}

/// Compares the identity fields of both objects: the slow, exact check, run
/// only when the patch comes near one of them.
fn check_identity(original_json: &str, mutated_json: &str) -> Result<(), PolicyFailure> {
    let parse = |json: &str| serde_json::from_str::<Value>(json).map_err(|error| not_json(&error));
    let (original, mutated) = (parse(original_json)?, parse(mutated_json)?);
    for pointer in IDENTITY {
        if original.pointer(pointer) != mutated.pointer(pointer) {
            return Err(PolicyFailure::invalid_output(format!(
                "the mutated object changes {pointer} (from {} to {}), which identifies the object and may not change",
                show(original.pointer(pointer)),
                show(mutated.pointer(pointer)),
            )));
        }
    }
    Ok(())
}

/// One line per operation, for messages: `add /spec/clusterIP = "None"`.
pub fn describe(patch: &Patch) -> Vec<String> {
    patch
        .0
        .iter()
        .map(|operation| match operation {
            PatchOperation::Add(op) => format!("add {} = {}", op.path, op.value),
            PatchOperation::Replace(op) => format!("replace {} with {}", op.path, op.value),
            PatchOperation::Remove(op) => format!("remove {}", op.path),
            PatchOperation::Move(op) => format!("move {} to {}", op.from, op.path),
            PatchOperation::Copy(op) => format!("copy {} to {}", op.from, op.path),
            PatchOperation::Test(op) => format!("test {} is {}", op.path, op.value),
        })
        .collect()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "absent".to_owned(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ORIGINAL: &str =
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"n"},"spec":{"x":1,"keep":[1,2]}}"#;

    #[test]
    fn a_mutation_becomes_a_minimal_verified_patch() {
        let mutated = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"n"},"spec":{"x":1,"keep":[1,2],"clusterIP":"None"}}"#;
        let mutation = compute(ORIGINAL, mutated.to_owned()).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&mutation.patch).unwrap(),
            json!([{"op": "add", "path": "/spec/clusterIP", "value": "None"}])
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(mutation.encoded())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded).unwrap(),
            serde_json::to_value(&mutation.patch).unwrap()
        );
        assert_eq!(describe(&mutation.patch), [r#"add /spec/clusterIP = "None""#]);
    }

    #[test]
    fn no_change_is_no_patch_even_when_keys_are_reordered() {
        let reordered = r#"{"spec":{"keep":[1,2],"x":1},"metadata":{"namespace":"n","name":"a"},"kind":"Service","apiVersion":"v1"}"#;
        assert_eq!(compute(ORIGINAL, reordered.to_owned()).unwrap(), None);
    }

    #[test]
    fn numbers_a_policy_did_not_touch_never_appear_in_the_patch() {
        // A policy parses the object and serializes it back. Unless every
        // number parses to exactly the value it was written from, the
        // re-serialized text differs and the diff "changes" the number
        // (found by the JSON Patch fuzz target).
        let original = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"n"},"spec":{"weights":[6.178787134922198e+305,-2.100185708997417e-194,0.1]}}"#;
        let mut edited: Value = serde_json::from_str(original).unwrap();
        edited["spec"]["clusterIP"] = json!("None");
        let mutation = compute(original, edited.to_string()).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&mutation.patch).unwrap(),
            json!([{"op": "add", "path": "/spec/clusterIP", "value": "None"}])
        );
    }

    #[test]
    fn invalid_outputs_are_refused_with_a_reason() {
        let reason = |mutated: &str| match compute(ORIGINAL, mutated.to_owned()).unwrap_err() {
            PolicyFailure::InvalidOutput { reason } => reason,
            other => panic!("unexpected failure {other:?}"),
        };
        assert!(reason("{nope").contains("not valid JSON"));
        assert!(reason("[1]").contains("not an array"));
        assert!(reason(&ORIGINAL.replace(r#""name":"a""#, r#""name":"b""#)).contains("/metadata/name"));
        assert!(reason(&ORIGINAL.replace(r#","namespace":"n""#, "")).contains("/metadata/namespace"));
        assert!(reason(&ORIGINAL.replace(r#""kind":"Service""#, r#""kind":"Pod""#)).contains("/kind"));
        assert!(reason(&ORIGINAL.replace(r#""apiVersion":"v1""#, r#""apiVersion":"v2""#)).contains("/apiVersion"));
        assert!(reason(&ORIGINAL.replace(r#"{"name":"a","namespace":"n"}"#, "null")).contains("/metadata/name"));
    }

    #[test]
    fn changes_near_the_identity_fields_that_keep_them_are_allowed() {
        let mutated = ORIGINAL.replace(
            r#"{"name":"a","namespace":"n"}"#,
            r#"{"namespace":"n","labels":{"x":"y"},"name":"a"}"#,
        );
        let mutation = compute(ORIGINAL, mutated).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&mutation.patch).unwrap(),
            json!([{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}])
        );
        // A cluster-scoped object stays without a namespace.
        let original = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}"#;
        let mutation = compute(
            original,
            original.replace(r#"{"name":"a"}"#, r#"{"name":"a","labels":{}}"#),
        )
        .unwrap();
        assert!(mutation.is_some());
    }
}
