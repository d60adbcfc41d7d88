//! The expectation table (`fixtures/expected.json`) through the real engine:
//! every recorded and crafted review, evaluated by the compiled built-in
//! policies, mapped to the AdmissionResponse the API server would read — in
//! mutate mode (the exact patch, base64 on the wire, reproducing the policy's
//! object) and in validate mode (a wanted change is a denial listing it).

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Value, json};
use wasmhook::engine::{CompiledPolicy, Engine, EngineConfig, Limits, Verdict};
use wasmhook::policy::{Enforcement, Mode};
use wasmhook::response::{Outcome, decide};
use wasmhook::review::AdmissionInput;
use wasmhook_tests::{Case, assert_patch_reproduces, cases, reviews_dir};

/// Both builds of each built-in: without its cluster-context checks, what
/// the server runs for a policy set without `context:` (the default), and
/// with them, which must decide alike when nothing is declared.
const BUILDS: [bool; 2] = [false, true];

/// Loads each (policy, settings, build) once; the compile cache makes every
/// load after the first of a policy cheap.
struct Policies {
    engine: Engine,
    loaded: HashMap<(String, String, bool), CompiledPolicy>,
    _cache: tempfile::TempDir,
}

impl Policies {
    fn new() -> Self {
        let cache = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig {
            max_concurrent_evaluations: 4,
            cache_dir: Some(cache.path().to_owned()),
            ..EngineConfig::default()
        })
        .unwrap();
        Self {
            engine,
            loaded: HashMap::new(),
            _cache: cache,
        }
    }

    fn get(&mut self, case: &Case, with_context: bool) -> &CompiledPolicy {
        let key = (case.policy.clone(), case.settings_json(), with_context);
        self.loaded.entry(key).or_insert_with(|| {
            let wasm = wasmhook_policy_artifacts::builtin(&case.policy)
                .expect("a built-in")
                .component(with_context);
            self.engine
                .load(&case.policy, wasm, &case.settings_json(), Limits::default())
                .unwrap_or_else(|error| panic!("{}: {error}", case.label()))
        })
    }
}

/// The review body exactly as the API server sent it.
fn input(case: &Case) -> AdmissionInput {
    let body = std::fs::read(reviews_dir().join(&case.fixture)).unwrap();
    AdmissionInput::from_review(&body).unwrap_or_else(|error| panic!("{}: {error}", case.label()))
}

fn decoded_patch(encoded: &str) -> Value {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the patch is standard base64");
    serde_json::from_slice(&bytes).expect("the patch is JSON")
}

#[test]
fn every_case_in_mutate_mode() {
    let mut policies = Policies::new();
    for (case, with_context) in cases()
        .into_iter()
        .flat_map(|case| BUILDS.map(|build| (case.clone(), build)))
    {
        let label = format!("{} (build with context: {with_context})", case.label());
        let input = input(&case);
        let evaluated = policies
            .get(&case, with_context)
            .evaluate_blocking(input.request_json(), None);
        let decision = decide(&case.policy, Enforcement::default(), &input, evaluated);
        let response = &decision.response;
        assert_eq!(response.uid, input.uid(), "{label}");
        assert!(decision.failure.is_none(), "{label}: {:?}", decision.failure);
        let message = response.status.as_ref().map(|status| status.message.as_str());
        case.assert_outcome(response.allowed, message, &response.warnings);

        let expected_patch = serde_json::to_value(&case.patch).unwrap();
        match &response.patch {
            None => assert!(case.patch.0.is_empty(), "{label}: no patch, expected {expected_patch}"),
            Some(encoded) => {
                assert_eq!(decoded_patch(encoded), expected_patch, "{label}");
                assert_eq!(response.patch_type, Some("JSONPatch"), "{label}");
                let mutation = decision.mutation.as_ref().unwrap();
                assert_patch_reproduces(
                    &case.original_object(),
                    &case.patch,
                    &mutation.mutated().expect("a recorded object parses"),
                );
            }
        }
        let expected_outcome = match (case.allowed, case.patch.0.is_empty()) {
            (false, _) => Outcome::Denied,
            (true, true) => Outcome::Allowed,
            (true, false) => Outcome::Mutated,
        };
        assert_eq!(decision.outcome, expected_outcome, "{label}");
    }
}

/// Evaluates `request_json` in a fresh instance of `policy`: the verdict, and
/// whether the policy grew its memory beyond its initial size.
fn evaluate_watching_memory(policy: &CompiledPolicy, request_json: &str) -> (Verdict, bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut instance = policy.instantiate(None).await.expect("instantiates");
        let verdict = instance.evaluate(request_json).await.expect("evaluates");
        (verdict, instance.memory_grown())
    })
}

/// Growing a memory costs the server two `mprotect` calls and a TLB flush on
/// its threads per review (`PolicyInstance::memory_grown`): the built-ins are
/// linked with initial memory enough for every recorded review.
#[test]
fn every_case_fits_in_the_built_ins_initial_memory() {
    let mut policies = Policies::new();
    for case in cases() {
        let input = input(&case);
        for with_context in BUILDS {
            let (_, grown) = evaluate_watching_memory(policies.get(&case, with_context), input.request_json());
            assert!(!grown, "{} ({with_context}): the policy grew its memory", case.label());
        }
    }
}

/// … and a StatefulSet review of ~25 KB, seven times the recorded one
/// (compacted): its pod template has 400 environment variables.
#[test]
fn a_large_statefulset_fits_in_the_built_ins_initial_memory() {
    let policies = Policies::new();
    let fixture = std::fs::read(reviews_dir().join("mutating-create-statefulset-mysql.json")).unwrap();
    let mut review: Value = serde_json::from_slice(&fixture).unwrap();
    let env: Vec<Value> = (0..400)
        .map(|index| json!({"name": format!("SETTING_{index}"), "value": format!("value of setting {index}")}))
        .collect();
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["env"] = Value::Array(env);
    let body = serde_json::to_vec(&review).unwrap();
    assert!(body.len() > 20_000, "{} bytes", body.len());
    let input = AdmissionInput::from_review(&body).unwrap();
    for with_context in BUILDS {
        let wasm = wasmhook_policy_artifacts::builtin("statefulset-service-name")
            .unwrap()
            .component(with_context);
        let policy = policies
            .engine
            .load("statefulset-service-name", wasm, "null", Limits::default())
            .unwrap();
        let (verdict, grown) = evaluate_watching_memory(&policy, input.request_json());
        assert!(verdict.mutated_object.is_some(), "the large StatefulSet is mutated too");
        assert!(!grown, "the policy grew its memory for a {} byte review", body.len());
    }
}

#[test]
fn every_case_in_validate_mode() {
    let mut policies = Policies::new();
    let validate = Enforcement {
        mode: Mode::Validate,
        ..Enforcement::default()
    };
    for case in cases() {
        let label = case.label();
        let input = input(&case);
        // What the server runs for a policy set without `context:`.
        let evaluated = policies.get(&case, false).evaluate_blocking(input.request_json(), None);
        let decision = decide(&case.policy, validate, &input, evaluated);
        let response = &decision.response;
        assert!(response.patch.is_none(), "{label}: validate mode never patches");
        let wants_change = !case.patch.0.is_empty();
        assert_eq!(response.allowed, case.allowed && !wants_change, "{label}");
        if wants_change {
            let message = &response.status.as_ref().expect("a denial has a status").message;
            for operation in &case.patch.0 {
                let path = serde_json::to_value(operation).unwrap()["path"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(message.contains(&path), "{label}: {message:?} does not list {path}");
            }
            assert_eq!(response.status.as_ref().unwrap().code, 403, "{label}");
        }
    }
}
