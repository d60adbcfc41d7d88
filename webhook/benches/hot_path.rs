//! The in-process cost of one admission review, piece by piece: parsing the
//! review, instantiating a policy, evaluating it, computing the patch, and
//! encoding the answer — on the recorded fixtures, with the built-in policies
//! compiled exactly as the server runs them.
//!
//! The `language` group runs the same require-labels policy written in Rust,
//! Python and JavaScript (`policies/examples/`, built by `make examples`) on
//! the same reviews, so the cost of a language runtime inside a component is
//! measured on equal work. Their compiled code is cached in
//! `target/bench-compile-cache/` (a Python component takes seconds to compile).
//!
//! `cargo bench -p wasmhook --bench hot_path` measures; `cargo test` runs
//! every benchmark once so they cannot rot. BENCHMARKS.md has the figures.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use wasmhook::engine::{CompiledPolicy, Engine, EngineConfig, Limits, PolicyInstance};
use wasmhook::policy::Enforcement;
use wasmhook::response::decide;
use wasmhook::review::AdmissionInput;
use wasmhook_rawjson::ContainerIndex;

/// The allocator the `wasmhook` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The reviews measured: (policy, fixture, what the policy does with it).
/// `floor` is a test policy that allows without reading the request: the
/// fixed cost of a call (instance, canonical-ABI copy of the request, exit).
const CASES: [(&str, &str, &str); 5] = [
    ("floor", "mutating-create-service-dry-svc.json", "allow-unread"),
    // The recorded 2.6 KB Service review a peer's figures are quoted for.
    (
        "headless-service",
        "mutating-create-service-dry-svc.json",
        "allow-unselected",
    ),
    (
        "headless-service",
        "mutating-create-service-sample-headless.json",
        "allow-typed",
    ),
    (
        "headless-service",
        "crafted-mutating-create-service-db-headless.json",
        "mutate",
    ),
    (
        "statefulset-service-name",
        "mutating-create-statefulset-mysql.json",
        "mutate",
    ),
];

/// The require-labels examples: (language, example directory).
const LANGUAGES: [(&str, &str); 3] = [
    ("rust", "rust-require-labels"),
    ("python", "python-require-labels"),
    ("js", "js-require-labels"),
];

/// Their reviews: (fixture, settings, what the policy does with it).
const LANGUAGE_CASES: [(&str, &str, &str); 3] = [
    ("mutating-create-service-dry-svc.json", r#"{"labels":["app"]}"#, "allow"),
    (
        "mutating-create-service-mysql-svc.json",
        r#"{"labels":["app"]}"#,
        "deny",
    ),
    (
        "mutating-create-service-mysql-svc.json",
        r#"{"labels":["team"],"defaults":{"team":"platform"}}"#,
        "mutate",
    ),
];

struct Case {
    id: String,
    policy: CompiledPolicy,
    review: Vec<u8>,
    input: AdmissionInput,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/admission-reviews")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

impl Case {
    /// `wasm` loaded as `name` with `settings`, on the recorded review `fixture_name`.
    fn load(engine: &Engine, name: &str, wasm: &[u8], settings: &str, fixture_name: &str, id: String) -> Self {
        let policy = engine
            .load(name, wasm, settings, Limits::default())
            .unwrap_or_else(|error| panic!("{error}"));
        let review = fixture(fixture_name);
        let input = AdmissionInput::from_review(&review).expect("a valid review");
        Self {
            id,
            policy,
            review,
            input,
        }
    }
}

fn cases(engine: &Engine) -> Vec<Case> {
    CASES
        .iter()
        .map(|&(policy_name, fixture_name, what)| {
            let (wasm, settings) = match wasmhook_policy_artifacts::builtin(policy_name) {
                // What the server runs for a policy set without `context:`.
                Some(builtin) => (builtin.component(false).to_vec(), "null"),
                None => (
                    std::fs::read(wasmhook_policy_artifacts::MISBEHAVING_POLICY_PATH).expect("the test policy"),
                    r#"{"behaviour":"allow"}"#,
                ),
            };
            let id = format!("{policy_name}/{what}");
            Case::load(engine, policy_name, &wasm, settings, fixture_name, id)
        })
        .collect()
}

fn language_cases(engine: &Engine) -> Vec<Case> {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
    let mut cases = Vec::new();
    for (language, example) in LANGUAGES {
        let path = examples.join(example).join("build/policy.wasm");
        let wasm = std::fs::read(&path).unwrap_or_else(|error| {
            panic!(
                "cannot read {}: {error}. Build the example policies first: `make examples`",
                path.display()
            )
        });
        for (fixture_name, settings, what) in LANGUAGE_CASES {
            // Only Rust and Python show the mutating variant (the JavaScript
            // example has no defaults setting).
            if what == "mutate" && language == "js" {
                continue;
            }
            let case = Case::load(
                engine,
                example,
                &wasm,
                settings,
                fixture_name,
                format!("{language}/{what}"),
            );
            // The three languages must do the same work to be compared.
            let verdict = case
                .policy
                .evaluate_blocking(case.input.request_json(), None)
                .unwrap_or_else(|failure| panic!("{}: {failure}", case.id));
            assert_eq!(verdict.allowed, what != "deny", "{}", case.id);
            assert_eq!(verdict.mutated_object.is_some(), what == "mutate", "{}", case.id);
            cases.push(case);
        }
    }
    cases
}

fn instantiate<'p>(runtime: &tokio::runtime::Runtime, policy: &'p CompiledPolicy) -> PolicyInstance<'p> {
    runtime
        .block_on(policy.instantiate(None))
        .map_err(|failure| failure.to_string())
        .expect("instantiates")
}

fn hot_path(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default()).expect("an engine");
    let cases = cases(&engine);
    // Evaluations are futures; the server polls them on its workers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");

    let mut group = c.benchmark_group("review");
    for case in &cases {
        bench_review(&mut group, &runtime, case);
    }
    group.finish();

    let languages = Engine::new(EngineConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-compile-cache")),
        ..EngineConfig::default()
    })
    .expect("an engine");
    let mut group = c.benchmark_group("language");
    for case in &language_cases(&languages) {
        bench_review(&mut group, &runtime, case);
    }
    group.finish();

    let mut group = c.benchmark_group("host");
    for case in cases.iter().filter(|case| case.id.ends_with("/mutate")) {
        let verdict = case
            .policy
            .evaluate_blocking(case.input.request_json(), None)
            .expect("evaluates");
        let mutated = verdict.mutated_object.expect("a mutation");
        let original = case.input.object_json().expect("an object");
        group.bench_function(format!("patch/{}", case.id), |b| {
            // As the server diffs: with the request's index.
            b.iter(|| {
                case.input
                    .with_request_index(|| wasmhook::patch::compute(black_box(original), black_box(mutated.clone())))
                    .expect("a patch")
            })
        });
    }
    for case in &cases {
        group.bench_function(format!("parse-review/{}", case.id), |b| {
            b.iter(|| AdmissionInput::from_review(black_box(&case.review)).expect("a valid review"))
        });
        // The index in a pass of its own, as the engine makes it for a request
        // given as bare text; the server makes it while compacting the review
        // (`parse-review`).
        group.bench_function(format!("index-request/{}", case.id), |b| {
            b.iter(|| ContainerIndex::of(black_box(case.input.request_json())).expect("valid JSON"))
        });
    }
    group.finish();
}

/// Measures one review: whole, and instantiation, evaluation and answer apart.
fn bench_review(group: &mut BenchmarkGroup<'_, WallTime>, runtime: &tokio::runtime::Runtime, case: &Case) {
    // Everything the server does for a review but HTTP and TLS.
    group.bench_function(format!("{}/whole", case.id), |b| {
        b.iter(|| {
            let input = AdmissionInput::from_review(black_box(&case.review)).expect("a valid review");
            let evaluated = runtime.block_on(case.policy.evaluate(input.request_text(), None));
            let decision = decide(case.policy.name(), Enforcement::default(), &input, evaluated);
            serde_json::to_vec(&decision.response.into_review()).expect("serializes")
        })
    });
    // Instantiation alone (the store drop is not timed). One instance at
    // a time: each holds an evaluation slot, as in the server.
    group.bench_function(format!("{}/instantiate", case.id), |b| {
        b.iter_batched(|| (), |()| instantiate(runtime, &case.policy), BatchSize::PerIteration)
    });
    // Evaluation alone, in a fresh instance each time.
    group.bench_function(format!("{}/evaluate", case.id), |b| {
        b.iter_batched(
            || instantiate(runtime, &case.policy),
            |mut instance| {
                let verdict = runtime.block_on(instance.evaluate(case.input.request_text()));
                (instance, verdict)
            },
            BatchSize::PerIteration,
        )
    });
    // Teardown alone: dropping an evaluated instance returns its pool slot,
    // which resets the memory the guest wrote.
    group.bench_function(format!("{}/teardown", case.id), |b| {
        b.iter_batched(
            || {
                let mut instance = instantiate(runtime, &case.policy);
                let verdict = runtime.block_on(instance.evaluate(case.input.request_text()));
                assert!(verdict.is_ok(), "the policy evaluates");
                instance
            },
            drop,
            BatchSize::PerIteration,
        )
    });
    // From the verdict to the encoded answer: patch, verification, JSON.
    let verdict = case
        .policy
        .evaluate_blocking(case.input.request_json(), None)
        .expect("evaluates");
    group.bench_function(format!("{}/respond", case.id), |b| {
        b.iter(|| {
            let decision = decide(
                case.policy.name(),
                Enforcement::default(),
                &case.input,
                Ok(verdict.clone()),
            );
            serde_json::to_vec(&decision.response.into_review()).expect("serializes")
        })
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
