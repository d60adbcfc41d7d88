//! The engine against real compiled components: policies that misbehave on
//! purpose (each must fail with its typed failure, within its limits, without
//! disturbing anything else), the sandbox, fresh instances, and the compile
//! cache.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use wasmhook::engine::{CacheOutcome, CompiledPolicy, Engine, EngineConfig, Limits, LoadError, PolicyFailure};
use wasmhook::policy::Enforcement;
use wasmhook::response::{Outcome, decide};
use wasmhook::review::AdmissionInput;
use wasmhook_policy_artifacts::MISBEHAVING_POLICY_PATH;
use wasmhook_rawjson::ContainerIndex;

/// A CREATE of a Service carrying a field no API version knows, a quantity
/// string, and keys in an unusual order.
const REQUEST: &str = r#"{"uid":"engine-test","kind":{"group":"","version":"v1","kind":"Service"},
    "resource":{"group":"","version":"v1","resource":"services"},"name":"web-headless","namespace":"ns",
    "operation":"CREATE","userInfo":{"username":"test"},
    "object":{"spec":{"futureField":{"keep":true,"ratio":0.25},"ports":[{"port":80}]},
              "metadata":{"namespace":"ns","name":"web-headless","annotations":{"size":"1.5Gi"}},
              "kind":"Service","apiVersion":"v1"},
    "oldObject":null}"#;

fn engine(slots: u32) -> Engine {
    Engine::new(EngineConfig {
        max_concurrent_evaluations: slots,
        ..EngineConfig::default()
    })
    .expect("the engine starts")
}

fn limits(timeout: Duration) -> Limits {
    Limits {
        timeout,
        memory: 32 << 20,
    }
}

fn misbehaving(engine: &Engine, behaviour: &str, limits: Limits) -> CompiledPolicy {
    let wasm = std::fs::read(MISBEHAVING_POLICY_PATH).expect("the misbehaving policy is built");
    let settings = json!({ "behaviour": behaviour }).to_string();
    engine
        .load(behaviour, &wasm, &settings, limits)
        .expect("the policy loads")
}

fn builtin(engine: &Engine, name: &str) -> CompiledPolicy {
    // What the server runs for a policy set without `context:`.
    let wasm = wasmhook_policy_artifacts::builtin(name)
        .expect("a built-in")
        .component(false);
    engine
        .load(name, wasm, "null", Limits::default())
        .expect("the built-in loads")
}

fn input() -> AdmissionInput {
    AdmissionInput::from_request(REQUEST.to_owned()).unwrap()
}

#[test]
fn an_endless_loop_times_out_close_to_its_limit() {
    let engine = engine(4);
    let timeout = Duration::from_millis(150);
    let policy = misbehaving(&engine, "loop", limits(timeout));
    let started = Instant::now();
    let failure = policy.evaluate_blocking(REQUEST, None).unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(failure, PolicyFailure::Timeout(timeout));
    assert!(elapsed >= timeout, "cut off early, after {elapsed:?}");
    // The tick is 1 ms and the cutoff lands within a few ms on an idle machine
    // (~19 ms in a debug build); the margin absorbs a CI machine whose two cores
    // are busy with the other tests' spinning policies.
    assert!(
        elapsed < timeout + Duration::from_millis(250),
        "cut off late, after {elapsed:?}"
    );
}

#[test]
fn the_callers_budget_shortens_the_timeout() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "loop", limits(Duration::from_secs(10)));
    let started = Instant::now();
    let failure = policy
        .evaluate_blocking(REQUEST, Some(Duration::from_millis(50)))
        .unwrap_err();
    assert_eq!(failure, PolicyFailure::Timeout(Duration::from_millis(50)));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "allocate", limits(Duration::from_secs(5)));
    assert_eq!(
        policy.evaluate_blocking(REQUEST, None).unwrap_err(),
        PolicyFailure::OutOfMemory { limit: 32 << 20 }
    );
}

#[test]
fn growing_memory_beyond_its_initial_size_is_observed() {
    let engine = engine(4);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let grows = |behaviour: &str| {
        let policy = misbehaving(&engine, behaviour, limits(Duration::from_secs(5)));
        runtime.block_on(async {
            let mut instance = policy.instantiate(None).await.expect("instantiates");
            assert!(!instance.memory_grown(), "{behaviour}: instantiation is not growth");
            let _ = instance.evaluate(REQUEST).await;
            instance.memory_grown()
        })
    };
    assert!(!grows("allow"));
    assert!(grows("allocate"));
    // What the server counts (`wasmhook_policy_memory_growths_total`).
    let observed = |behaviour: &str| {
        let policy = misbehaving(&engine, behaviour, limits(Duration::from_secs(5)));
        runtime.block_on(policy.evaluate_observed(REQUEST, None))
    };
    let allowed = observed("allow");
    assert!(allowed.result.is_ok() && !allowed.memory_grown, "{allowed:?}");
    let hoarded = observed("allocate");
    assert!(
        matches!(hoarded.result, Err(PolicyFailure::OutOfMemory { .. })) && hoarded.memory_grown,
        "{hoarded:?}"
    );
}

#[test]
fn a_panic_is_a_trap_with_the_panic_message() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "panic", limits(Duration::from_secs(2)));
    match policy.evaluate_blocking(REQUEST, None).unwrap_err() {
        PolicyFailure::Trap { message } => {
            assert!(message.contains("panicked at"), "{message}");
            assert!(
                message.contains("deliberate panic from the misbehaving policy"),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    // A trapped instance is discarded: the next call gets a fresh one.
    assert!(matches!(
        policy.evaluate_blocking(REQUEST, None),
        Err(PolicyFailure::Trap { .. })
    ));
}

#[test]
fn a_policy_error_is_reported_as_such() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "error", limits(Duration::from_secs(2)));
    assert_eq!(
        policy.evaluate_blocking(REQUEST, None).unwrap_err(),
        PolicyFailure::PolicyError {
            message: "deliberate policy error".into()
        }
    );
}

#[test]
fn invalid_outputs_are_refused() {
    let engine = engine(4);
    for (behaviour, reason) in [
        ("invalid-json", "not valid JSON"),
        ("not-an-object", "must be a JSON object, not an array"),
        ("identity-change", "changes /metadata/name"),
    ] {
        let policy = misbehaving(&engine, behaviour, limits(Duration::from_secs(2)));
        let decision = decide(
            behaviour,
            Enforcement::default(),
            &input(),
            policy.evaluate_blocking(REQUEST, None),
        );
        assert_eq!(
            decision.outcome,
            Outcome::Failed {
                kind: "invalid_output",
                allowed: false
            },
            "{behaviour}"
        );
        let failure = decision.failure.unwrap().to_string();
        assert!(failure.contains(reason), "{behaviour}: {failure}");
    }
}

#[test]
fn a_round_trip_through_generic_json_is_no_patch() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "echo", limits(Duration::from_secs(2)));
    let verdict = policy.evaluate_blocking(REQUEST, None).unwrap();
    assert!(verdict.mutated_object.is_some(), "the policy did return the object");
    let decision = decide("echo", Enforcement::default(), &input(), Ok(verdict));
    assert_eq!(decision.outcome, Outcome::Allowed);
    assert_eq!(decision.response.patch, None);
}

#[test]
fn the_headless_patch_holds_exactly_the_intended_operations() {
    let engine = engine(4);
    let policy = builtin(&engine, "headless-service");
    let decision = decide(
        "headless-service",
        Enforcement::default(),
        &input(),
        policy.evaluate_blocking(REQUEST, None),
    );
    assert_eq!(decision.outcome, Outcome::Mutated);
    let patch = serde_json::to_value(&decision.mutation.unwrap().patch).unwrap();
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/clusterIP", "value": "None"},
            {"op": "add", "path": "/spec/clusterIPs", "value": ["None"]},
        ])
    );
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "count", limits(Duration::from_secs(2)));
    for _ in 0..3 {
        assert_eq!(policy.evaluate_blocking(REQUEST, None).unwrap().warnings, ["call 1"]);
    }
}

#[test]
fn a_policy_that_asks_gets_the_request_s_container_index_once() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "layout", limits(Duration::from_secs(2)));
    assert!(policy.reads_request_layout());
    let input = input();
    let request = input.request_json();
    let (starts, ends) = ContainerIndex::of(request).expect("valid JSON").into_parts();
    assert!(
        starts.len() >= 3,
        "the request, its object and more are indexed: {starts:?}"
    );
    let expected = [format!("starts {starts:?} ends {ends:?}"), "again 0 0".to_owned()];
    // Indexed by the engine from the bare text, or in the pass that read the
    // review: the same index.
    assert_eq!(policy.evaluate_blocking(request, None).unwrap().warnings, expected);
    assert_eq!(
        policy.evaluate_blocking(input.request_text(), None).unwrap().warnings,
        expected
    );
    // The next evaluation gets its own request's index, not a leftover.
    let other = input.object_json().expect("an object");
    let (starts, ends) = ContainerIndex::of(other).unwrap().into_parts();
    let warnings = policy.evaluate_blocking(other, None).unwrap().warnings;
    assert_eq!(warnings[0], format!("starts {starts:?} ends {ends:?}"));
    // The built-ins use it.
    for name in ["headless-service", "statefulset-service-name"] {
        assert!(builtin(&engine, name).reads_request_layout(), "{name}");
    }
}

#[test]
fn the_sandbox_grants_nothing() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "probe-wasi", limits(Duration::from_secs(2)));
    let warnings = policy.evaluate_blocking(REQUEST, None).unwrap().warnings;
    assert!(warnings[0].starts_with("files: denied"), "{warnings:?}");
    assert_eq!(warnings[1], "environment: 0 variables");
    assert_eq!(warnings[2], "arguments: 0");
    assert!(warnings[3].starts_with("network: denied"), "{warnings:?}");
}

/// Collects log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stdout_flood_is_logged_capped_and_does_not_fail() {
    let engine = engine(4);
    let policy = misbehaving(&engine, "stdout-flood", limits(Duration::from_secs(10)));
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let verdict = tracing::subscriber::with_default(subscriber, || policy.evaluate_blocking(REQUEST, None)).unwrap();
    assert!(verdict.allowed);

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The policy wrote 16 MiB to each stream; the log keeps a bounded excerpt.
    assert!(logged.len() < 64 << 10, "logged {} bytes", logged.len());
    assert!(
        logged.contains("policy=\"stdout-flood\"") || logged.contains("policy=stdout-flood"),
        "{}",
        &logged[..200]
    );
    assert!(logged.contains("stream=\"stdout\"") || logged.contains("stream=stdout"));
    assert!(logged.contains("dropped_bytes="));
}

#[test]
fn settings_rejected_by_the_policy_are_a_load_error_naming_it() {
    let engine = engine(4);
    let wasm = std::fs::read(MISBEHAVING_POLICY_PATH).unwrap();
    let settings = json!({"behaviour": "reject-settings"}).to_string();
    let error = engine.load("picky", &wasm, &settings, Limits::default()).err().unwrap();
    assert!(matches!(error, LoadError::Settings { .. }));
    let message = error.to_string();
    assert!(
        message.contains("\"picky\"") && message.contains("rejected on purpose"),
        "{message}"
    );
}

#[test]
fn bad_modules_and_limits_are_load_errors() {
    let engine = engine(4);
    let error = engine
        .load("junk", b"not wasm at all", "null", Limits::default())
        .err()
        .unwrap();
    assert!(matches!(error, LoadError::Compile { .. }), "{error}");
    assert!(error.to_string().contains("\"junk\""));

    let wasm = std::fs::read(MISBEHAVING_POLICY_PATH).unwrap();
    let huge = Limits {
        memory: 2 << 30,
        ..Limits::default()
    };
    let error = engine.load("greedy", &wasm, "null", huge).err().unwrap();
    assert!(matches!(error, LoadError::MemoryLimit { .. }), "{error}");
}

#[test]
fn healthy_policies_keep_serving_while_others_spin() {
    let engine = engine(4);
    let spinner = misbehaving(&engine, "loop", limits(Duration::from_millis(1500)));
    let healthy = builtin(&engine, "headless-service");
    std::thread::scope(|scope| {
        let spinners: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| spinner.evaluate_blocking(REQUEST, None)))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..50 {
            let verdict = healthy
                .evaluate_blocking(REQUEST, None)
                .expect("the healthy policy answers");
            assert!(verdict.allowed && verdict.mutated_object.is_some());
        }
        for spinner in spinners {
            assert!(matches!(spinner.join().unwrap(), Err(PolicyFailure::Timeout(_))));
        }
    });
}

#[test]
fn a_full_pool_is_a_typed_overload_not_a_hang() {
    let engine = Engine::new(EngineConfig {
        max_concurrent_evaluations: 2,
        max_concurrent_per_policy: Some(2),
        ..EngineConfig::default()
    })
    .unwrap();
    let spinner = misbehaving(&engine, "loop", limits(Duration::from_millis(1000)));
    let healthy = builtin(&engine, "headless-service");
    std::thread::scope(|scope| {
        let spinners: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| spinner.evaluate_blocking(REQUEST, None)))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let failure = healthy
            .evaluate_blocking(REQUEST, Some(Duration::from_millis(50)))
            .unwrap_err();
        assert!(
            matches!(failure, PolicyFailure::Overloaded { slots: 2, .. }),
            "{failure:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
        for spinner in spinners {
            spinner.join().unwrap().unwrap_err();
        }
    });
    assert!(healthy.evaluate_blocking(REQUEST, None).is_ok(), "slots are released");
}

#[test]
fn a_policy_flooded_with_hanging_requests_cannot_take_every_slot() {
    // 4 slots; by default one policy may hold half of them.
    let engine = engine(4);
    let spinner = misbehaving(&engine, "loop", limits(Duration::from_secs(1)));
    let healthy = builtin(&engine, "headless-service");
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| spinner.evaluate_blocking(REQUEST, None)))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let waiting: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| spinner.evaluate_blocking(REQUEST, Some(Duration::from_millis(200)))))
            .collect();
        for _ in 0..20 {
            healthy
                .evaluate_blocking(REQUEST, Some(Duration::from_millis(500)))
                .expect("the healthy policy still gets slots");
        }
        for waiter in waiting {
            let failure = waiter.join().unwrap().unwrap_err();
            assert!(
                matches!(failure, PolicyFailure::Overloaded { slots: 2, .. }),
                "{failure:?}"
            );
        }
        for runner in running {
            assert!(matches!(runner.join().unwrap(), Err(PolicyFailure::Timeout(_))));
        }
    });
}

#[test]
fn short_evaluations_are_never_cut_off_by_a_tick() {
    let engine = engine(4);
    let policy = builtin(&engine, "headless-service");
    for _ in 0..100 {
        policy
            .evaluate_blocking(REQUEST, Some(Duration::from_millis(250)))
            .expect("a quick evaluation completes");
    }
}

#[test]
fn the_compile_cache_is_used_and_survives_corruption() {
    let cache = tempfile::tempdir().unwrap();
    let config = || EngineConfig {
        max_concurrent_evaluations: 2,
        cache_dir: Some(cache.path().to_owned()),
        ..EngineConfig::default()
    };
    let wasm = wasmhook_policy_artifacts::builtin("headless-service").unwrap().wasm;
    let load = |engine: &Engine| {
        engine
            .load("headless-service", wasm, "null", Limits::default())
            .unwrap()
    };

    let first = load(&Engine::new(config()).unwrap());
    assert_eq!(first.cache_outcome(), CacheOutcome::Miss);
    let second = load(&Engine::new(config()).unwrap());
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert!(
        second
            .evaluate_blocking(REQUEST, None)
            .unwrap()
            .mutated_object
            .is_some()
    );

    let entry = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .expect("a cache entry");
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, bytes).unwrap();

    let rebuilt = load(&Engine::new(config()).unwrap());
    assert_eq!(rebuilt.cache_outcome(), CacheOutcome::Rebuilt);
    assert!(
        rebuilt
            .evaluate_blocking(REQUEST, None)
            .unwrap()
            .mutated_object
            .is_some()
    );
    assert_eq!(load(&Engine::new(config()).unwrap()).cache_outcome(), CacheOutcome::Hit);
}

#[test]
fn policies_of_the_same_module_share_its_component_but_not_their_settings() {
    let engine = engine(4);
    let wasm = std::fs::read(MISBEHAVING_POLICY_PATH).expect("the misbehaving policy is built");
    let load = |name: &str, behaviour: &str| {
        let settings = json!({ "behaviour": behaviour }).to_string();
        engine.load(name, &wasm, &settings, limits(Duration::from_secs(2)))
    };
    let first = load("first", "count").unwrap();
    assert_ne!(first.cache_outcome(), CacheOutcome::Shared);
    let second = load("second", "error").unwrap();
    assert_eq!(
        second.cache_outcome(),
        CacheOutcome::Shared,
        "the same bytes are not loaded twice"
    );

    // Each keeps its own settings: one counts, the other fails.
    let verdict = first.evaluate_blocking(REQUEST, None).unwrap();
    assert_eq!(verdict.warnings, ["call 1"]);
    assert!(matches!(
        second.evaluate_blocking(REQUEST, None),
        Err(PolicyFailure::PolicyError { .. })
    ));
    // A shared component still runs each policy's settings check.
    let Err(rejected) = load("third", "reject-settings") else {
        panic!("settings the policy rejects must not load");
    };
    assert!(
        matches!(rejected, LoadError::Settings { ref policy, .. } if policy == "third"),
        "{rejected}"
    );
}
