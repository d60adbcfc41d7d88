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

/// The engine's default memory ceiling, as `serve` uses it.
const MAX_MEMORY: usize = 1 << 30;

/// An AdmissionReview body, through the real `headless-service` component,
/// to the response the server would send. Invariants: nothing panics; a body
/// that parses gets a response that echoes its uid; a mutation's patch,
/// applied to the request's object, gives exactly the mutated object and
/// leaves the identity fields alone.
pub fn admission_review(data: &[u8]) {
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
        let original: Value =
            serde_json::from_str(input.object_json().expect("a mutation has an object")).expect("the object is JSON");
        let mut patched = original.clone();
        json_patch::patch(&mut patched, &mutation.patch).expect("the patch applies to the request's object");
        assert_eq!(
            patched, mutation.mutated,
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
            .and_then(|module| module.read())
            .expect("the built-in module");
        engine
            .load("headless-service", &module, "null", Limits::default())
            .expect("the built-in loads")
    })
}

/// Two related JSON objects built from `data` (the second is the first with
/// random edits), through the server's patch computation. Invariants: it
/// never fails for two valid objects with the same identity; no patch means
/// equal objects; a patch, applied to the first, gives exactly the second.
pub fn json_patch_roundtrip(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok((original, mutated)) = related_objects(&mut input) else {
        return;
    };
    let computed = wasmhook::patch::compute(&original.to_string(), &mutated.to_string())
        .unwrap_or_else(|failure| panic!("no patch for two valid objects with the same identity: {failure}"));
    match computed {
        None => assert_eq!(original, mutated, "no patch, but the objects differ"),
        Some(mutation) => {
            assert_eq!(mutation.mutated, mutated);
            let mut patched = original.clone();
            json_patch::patch(&mut patched, &mutation.patch).expect("the patch applies");
            assert_eq!(patched, mutated, "the patch does not reproduce the mutated object");
            assert_ne!(original, mutated, "a patch for equal objects");
        }
    }
}

/// An object with fixed identity fields and arbitrary content, and a copy
/// changed by a few arbitrary edits (values replaced, keys added or removed,
/// array items appended or removed).
fn related_objects(input: &mut Unstructured<'_>) -> arbitrary::Result<(Value, Value)> {
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
    for _ in 0..input.int_in_range(0..=4)? {
        edit(&mut mutated, input, 0)?;
    }
    Ok((original, mutated))
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

/// One arbitrary edit somewhere below `target`, never of the identity fields.
fn edit(target: &mut Value, input: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<()> {
    let identity = depth == 0;
    match target {
        Value::Object(map) if !map.is_empty() && input.arbitrary()? => {
            let keys: Vec<String> = map
                .keys()
                .filter(|key| !(identity && matches!(key.as_str(), "apiVersion" | "kind" | "metadata")))
                .cloned()
                .collect();
            if identity && input.arbitrary()? {
                // Metadata other than the name and namespace may change.
                let labels = &mut map["metadata"]["labels"];
                *labels = value(input, 2)?;
                return Ok(());
            }
            match input.choose(&keys) {
                Ok(key) => {
                    let key = key.clone();
                    match input.int_in_range(0..=2)? {
                        0 => drop(map.remove(&key)),
                        1 => map[&key] = value(input, depth + 1)?,
                        _ => edit(&mut map[&key], input, depth + 1)?,
                    }
                }
                Err(_) => drop(map.insert(input.choose(&KEYS)?.to_string(), value(input, depth + 1)?)),
            }
        }
        Value::Object(map) => {
            let key = input.choose(&KEYS)?.to_string();
            map.insert(key, value(input, depth + 1)?);
        }
        Value::Array(items) if !items.is_empty() => match input.int_in_range(0..=2)? {
            0 => drop(items.remove(input.choose_index(items.len())?)),
            1 => items.push(value(input, depth + 1)?),
            _ => {
                let index = input.choose_index(items.len())?;
                edit(&mut items[index], input, depth + 1)?;
            }
        },
        other => *other = value(input, depth + 1)?,
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
    related_objects(&mut Unstructured::new(data)).is_ok_and(|(original, mutated)| original != mutated)
}
