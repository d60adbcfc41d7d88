//! The bodies of the fuzz targets (`tests/fuzz/`), kept here so that every
//! input a fuzzer ever found is replayed by `cargo test`
//! (`tests/integration/fuzz_regressions.rs`) through exactly the code the
//! fuzzer ran. Each function panics when an invariant is broken, and only then.

use std::sync::OnceLock;

use arbitrary::Unstructured;
use serde_json::{Map, Value, json};
use wasmhook::config::PolicySet;
use wasmhook::engine::{CompiledPolicy, Engine, EngineConfig, Limits};
use wasmhook::policy::Enforcement;
use wasmhook::review::AdmissionInput;
use wasmhook_policy::Object;
use wasmhook_policy::object::pointer_token;

/// The engine's default memory ceiling, as `serve` uses it.
const MAX_MEMORY: usize = 1 << 30;

/// An AdmissionReview body, through the real `headless-service` component,
/// to the response the server would send. Invariants: nothing panics; the
/// server's one-pass validation accepts nothing serde_json refuses, and
/// compacts as `compact_indexed` does; a body that parses gets a response
/// that echoes its uid; a mutation's patch, applied to the request's object,
/// gives exactly the mutated object and leaves the identity fields alone.
pub fn admission_review(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(checked) = wasmhook_rawjson::compact_indexed_checked(text)
    {
        assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
            "the one-pass validation accepted what serde_json refuses"
        );
        let compacted = wasmhook_rawjson::compact_indexed(text);
        assert_eq!(checked.text, compacted.text);
        assert_eq!(checked.containers, compacted.containers);
    }
    let Ok(input) = AdmissionInput::from_review(data) else {
        return;
    };
    let policy = headless_service();
    let evaluated = policy.evaluate_blocking(input.request_json(), None);
    let decision = wasmhook::response::decide("headless-service", Enforcement::default(), &input, evaluated);
    let review = serde_json::to_value(decision.response.into_review()).expect("a response always serializes");
    assert_eq!(
        review["response"]["uid"],
        input.uid(),
        "the response must echo the request's uid"
    );
    if let Some(mutation) = decision.mutation {
        let object = input.object_json().expect("a mutation has an object");
        // JSON allows a `\u` escape of half a surrogate pair; serde_json's
        // `Value` cannot hold one (the server reads such a string as raw text,
        // and a real API server never sends one): no tree to apply the patch to.
        let Ok(original) = serde_json::from_str::<Value>(object) else {
            assert!(object.contains("\\u"), "the object is JSON but not a Value: {object}");
            return;
        };
        let mut patched = original.clone();
        json_patch::patch(&mut patched, &mutation.patch).expect("the patch applies to the request's object");
        assert_eq!(
            patched,
            mutation
                .mutated()
                .expect("the original parsed, so the mutated object parses"),
            "the patch must give exactly the mutated object"
        );
        for pointer in ["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace"] {
            assert_eq!(original.pointer(pointer), patched.pointer(pointer), "{pointer} changed");
        }
    }
}

/// Compiles what [`admission_review`] runs, once, before the fuzzer starts
/// timing inputs: otherwise the first input pays for compiling the policy
/// (seconds, in an instrumented build) and is reported as a slow unit.
pub fn admission_review_warm_up() {
    headless_service();
}

fn headless_service() -> &'static CompiledPolicy {
    static POLICY: OnceLock<CompiledPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let engine = Engine::new(EngineConfig {
            max_concurrent_evaluations: 2,
            ..EngineConfig::default()
        })
        .expect("the engine starts");
        let module = wasmhook::builtin::ModuleSource::parse("builtin:headless-service")
            .and_then(|module| module.read(false))
            .expect("the built-in module");
        engine
            .load("headless-service", &module, "null", Limits::default())
            .expect("the built-in loads")
    })
}

/// Two related JSON objects built from `data`: an original, written compactly
/// (as the API server sends it) or pretty-printed, and the same object after
/// a few arbitrary edits made through the SDK's [`Object`] — which writes
/// back everything it did not touch byte for byte — or the edited object
/// re-serialized whole, as a policy in another language returns it.
/// Invariants: the SDK's edits give exactly the edited object; the server's
/// patch never fails for two valid objects with the same identity, is exactly
/// `json_patch::diff` of the parsed objects (the server diffs raw text and
/// parses only what differs); no patch means equal objects; a patch, applied
/// to the original, gives exactly the edited object.
pub fn json_patch_roundtrip(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok((original, mutated, edits)) = related_objects(&mut input) else {
        return;
    };
    let Ok((pretty_original, returned_as)) = input
        .arbitrary::<bool>()
        .and_then(|pretty| Ok((pretty, input.int_in_range(0..=2u8)?)))
    else {
        return;
    };
    let original_json = if pretty_original {
        serde_json::to_string_pretty(&original).expect("a value serializes")
    } else {
        original.to_string()
    };

    let mut object = Object::from_json(&original_json).expect("the original is a JSON object");
    for (pointer, edit) in &edits {
        match edit {
            Some(value) => object.set(pointer, value.clone()),
            None => object.remove(pointer),
        }
        .unwrap_or_else(|error| panic!("the SDK refused the edit {pointer}: {error}"));
    }
    let sdk_json = object.to_json();
    let sdk_result: Value = serde_json::from_str(&sdk_json)
        .unwrap_or_else(|error| panic!("the SDK wrote invalid JSON ({error}): {sdk_json}"));
    assert_eq!(
        sdk_result, mutated,
        "the SDK's edits {edits:?} give another object: {sdk_json}"
    );

    let mutated_json = match returned_as {
        0 => sdk_json,
        1 => mutated.to_string(),
        _ => serde_json::to_string_pretty(&mutated).expect("a value serializes"),
    };
    let computed = wasmhook::patch::compute(&original_json, mutated_json)
        .unwrap_or_else(|failure| panic!("no patch for two valid objects with the same identity: {failure}"));
    match computed {
        None => assert_eq!(original, mutated, "no patch, but the objects differ"),
        Some(mutation) => {
            assert_eq!(mutation.mutated().expect("the mutated object parsed"), mutated);
            assert_eq!(
                mutation.patch,
                json_patch::diff(&original, &mutated),
                "not json_patch's patch"
            );
            let mut patched = original.clone();
            json_patch::patch(&mut patched, &mutation.patch).expect("the patch applies");
            assert_eq!(patched, mutated, "the patch does not reproduce the mutated object");
            assert_ne!(original, mutated, "a patch for equal objects");
        }
    }
}

/// An edit at a JSON pointer: a value to set (`-` appends to an array), or
/// `None` to remove.
type Edit = (String, Option<Value>);

/// An object with fixed identity fields and arbitrary content, a copy changed
/// by a few arbitrary edits (values replaced, keys added or removed, array
/// items appended or removed), and those edits.
fn related_objects(input: &mut Unstructured<'_>) -> arbitrary::Result<(Value, Value, Vec<Edit>)> {
    let mut original = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fuzz", "namespace": "fuzzing"},
    });
    for key in ["spec", "status", "data"] {
        if input.arbitrary()? {
            original[key] = value(input, 0)?;
        }
    }
    if input.arbitrary()? {
        original["metadata"]["labels"] = value(input, 2)?;
    }
    let mut mutated = original.clone();
    let mut edits = Vec::new();
    for _ in 0..input.int_in_range(0..=4)? {
        edit(&mut mutated, input, "", &mut edits)?;
    }
    Ok((original, mutated, edits))
}

/// Keys from a small alphabet, so that edits hit existing keys; `~` and `/`
/// exercise JSON Pointer escaping.
const KEYS: [&str; 8] = ["a", "b", "c", "clusterIP", "a/b", "m~n", "", "ports"];

fn value(input: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let leaf_only = depth >= 4;
    Ok(match input.int_in_range(0..=if leaf_only { 3 } else { 5 })? {
        0 => Value::Null,
        1 => Value::Bool(input.arbitrary()?),
        2 => {
            if input.arbitrary()? {
                json!(input.arbitrary::<i64>()?)
            } else {
                serde_json::Number::from_f64(input.arbitrary()?).map_or(Value::Null, Value::Number)
            }
        }
        3 => Value::String(input.arbitrary()?),
        4 => Value::Array(
            (0..input.int_in_range(0..=4)?)
                .map(|_| value(input, depth + 1))
                .collect::<arbitrary::Result<_>>()?,
        ),
        _ => {
            let mut map = Map::new();
            for _ in 0..input.int_in_range(0..=4)? {
                map.insert(input.choose(&KEYS)?.to_string(), value(input, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

/// One arbitrary edit somewhere below `target` (at the JSON pointer `at`),
/// never of the identity fields, recorded in `edits`.
fn edit(target: &mut Value, input: &mut Unstructured<'_>, at: &str, edits: &mut Vec<Edit>) -> arbitrary::Result<()> {
    let identity = at.is_empty();
    let below = |key: &str| format!("{at}/{}", pointer_token(key));
    match target {
        Value::Object(map) if !map.is_empty() && input.arbitrary()? => {
            let keys: Vec<String> = map
                .keys()
                .filter(|key| !(identity && matches!(key.as_str(), "apiVersion" | "kind" | "metadata")))
                .cloned()
                .collect();
            if identity && input.arbitrary()? {
                // Metadata other than the name and namespace may change.
                let labels = value(input, 2)?;
                map["metadata"]["labels"] = labels.clone();
                edits.push(("/metadata/labels".into(), Some(labels)));
                return Ok(());
            }
            match input.choose(&keys) {
                Ok(key) => {
                    let key = key.clone();
                    match input.int_in_range(0..=2)? {
                        0 => {
                            map.remove(&key);
                            edits.push((below(&key), None));
                        }
                        1 => {
                            let replacement = value(input, 1)?;
                            map[&key] = replacement.clone();
                            edits.push((below(&key), Some(replacement)));
                        }
                        _ => edit(&mut map[&key], input, &below(&key), edits)?,
                    }
                }
                Err(_) => {
                    let (key, added) = (input.choose(&KEYS)?.to_string(), value(input, 1)?);
                    edits.push((below(&key), Some(added.clone())));
                    map.insert(key, added);
                }
            }
        }
        Value::Object(map) => {
            let (key, added) = (input.choose(&KEYS)?.to_string(), value(input, 1)?);
            edits.push((below(&key), Some(added.clone())));
            map.insert(key, added);
        }
        Value::Array(items) if !items.is_empty() => match input.int_in_range(0..=2)? {
            0 => {
                let index = input.choose_index(items.len())?;
                items.remove(index);
                edits.push((format!("{at}/{index}"), None));
            }
            1 => {
                let added = value(input, 1)?;
                items.push(added.clone());
                edits.push((format!("{at}/-"), Some(added)));
            }
            _ => {
                let index = input.choose_index(items.len())?;
                edit(&mut items[index], input, &format!("{at}/{index}"), edits)?;
            }
        },
        other => {
            let replacement = value(input, 1)?;
            *other = replacement.clone();
            edits.push((at.to_owned(), Some(replacement)));
        }
    }
    Ok(())
}

/// Arbitrary text as a policy set. Invariants: nothing panics, and every
/// error names the file it is about.
pub fn policy_set(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base_dir = std::env::temp_dir().join("wasmhook-fuzz-policy-set-has-no-files");
    if let Err(error) = PolicySet::from_yaml("fuzz.yaml", text, &base_dir, MAX_MEMORY) {
        let message = error.to_string();
        assert!(
            message.starts_with("fuzz.yaml: "),
            "an error that does not name the file: {message}"
        );
    }
}

/// Whether `data` makes [`json_patch_roundtrip`] compare two different
/// objects: lets a test check that the generator exercises real patches.
pub fn related_objects_differ(data: &[u8]) -> bool {
    related_objects(&mut Unstructured::new(data)).is_ok_and(|(original, mutated, _)| original != mutated)
}
