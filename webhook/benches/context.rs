//! What cluster context costs: the memory of a cache of 10,000 Services as
//! the watches store them, a policy's reads (`get`, `list` by namespace and
//! by selector) through the same access check the engine uses, and a whole
//! evaluation of statefulset-service-name with and without context.
//!
//! The Services are what a real cluster holds: `kubectl apply`'s
//! last-applied annotation and `managedFields` included, which the store
//! strips. Memory is counted by a counting wrapper around the server's
//! allocator (mimalloc), so the figure is the store's own, not the process's.
//!
//! `cargo bench -p wasmhook --bench context` measures and prints the memory;
//! `cargo test` runs everything once. BENCHMARKS.md has the figures.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use wasmhook::context::{ContextSource, ContextStore, Declaration, PolicyContext, ResourceKind, Scope};
use wasmhook::engine::{Engine, EngineConfig, Limits};
use wasmhook::review::AdmissionInput;

/// mimalloc, counting the bytes in use.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SERVICES: usize = 10_000;
const NAMESPACES: usize = 100;

/// A Service as the API server lists it after `kubectl apply`.
fn service(index: usize) -> Value {
    let namespace = format!("team-{:03}", index % NAMESPACES);
    let name = format!("app-{index:05}");
    let spec = json!({
        "clusterIP": format!("10.96.{}.{}", index / 250, index % 250),
        "clusterIPs": [format!("10.96.{}.{}", index / 250, index % 250)],
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        "selector": {"app": name, "tier": "web"},
        "sessionAffinity": "None", "type": "ClusterIP"
    });
    let applied = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, "tier": "web"}}, "spec": spec});
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name, "namespace": namespace,
            "uid": format!("6f1c2a44-0b9f-4c1e-a8a6-{index:012}"),
            "resourceVersion": format!("{}", 100_000 + index),
            "creationTimestamp": "2026-11-30T10:00:00Z",
            "labels": {"app": name, "tier": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()},
            "managedFields": [{"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubectl-client-side-apply",
                "operation": "Update", "time": "2026-11-30T10:00:00Z",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                    "f:labels": {".": {}, "f:app": {}, "f:tier": {}}},
                    "f:spec": {"f:internalTrafficPolicy": {}, "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {}},
                        "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}}}]
        },
        "spec": spec,
        "status": {"loadBalancer": {}}
    })
}

fn kind() -> ResourceKind {
    ResourceKind::new("v1", "Service")
}

/// The store filled as a watch's first list fills it, and its memory.
fn filled() -> (Arc<ContextStore>, usize, usize) {
    let objects: Vec<Value> = (0..SERVICES).map(service).collect();
    let listed_bytes: usize = objects.iter().map(|object| object.to_string().len()).sum();
    let store = ContextStore::new("bench");
    let (cache, _) = store.add_kind(kind());
    // `replace` consumes (and frees) the listed objects: count what they
    // held, and add it back.
    let start = IN_USE.load(Ordering::Relaxed);
    let listed = objects.clone();
    let input = IN_USE.load(Ordering::Relaxed) - start;
    let before = IN_USE.load(Ordering::Relaxed);
    let failures = cache.replace(listed);
    assert!(failures.is_empty());
    let used = (IN_USE.load(Ordering::Relaxed) + input) - before;
    drop(objects);
    (Arc::new(store), used, listed_bytes)
}

fn context(c: &mut Criterion) {
    let (store, used, listed_bytes) = filled();
    let cache = store.kind(&kind()).expect("the kind");
    eprintln!(
        "context store: {SERVICES} Services as listed {listed_bytes} B of JSON ({} B each); stored {} B of JSON, \
         {used} B in all ({} B per object)",
        listed_bytes / SERVICES,
        cache.json_bytes(),
        used / SERVICES
    );
    let source: Arc<dyn ContextSource> = store.clone();
    let policy = PolicyContext::new(
        vec![Declaration {
            kind: kind(),
            scope: Scope::Cluster,
        }],
        source,
    );
    let request = policy.for_request(Some("team-042".to_owned()));
    let mut group = c.benchmark_group("context");
    group.bench_function("get", |b| {
        b.iter(|| {
            request
                .get(black_box(&kind()), Some("team-042"), black_box("app-04242"))
                .unwrap()
                .expect("found")
        })
    });
    group.bench_function("get-and-copy", |b| {
        // What the host hands the guest: the object's text as an owned String.
        b.iter(|| {
            let object = request
                .get(&kind(), Some("team-042"), "app-04242")
                .unwrap()
                .expect("found");
            black_box(object.to_string())
        })
    });
    group.bench_function("list-namespace-100", |b| {
        b.iter(|| {
            let listed = request.list(&kind(), Some("team-042"), "").unwrap();
            assert_eq!(listed.len(), SERVICES / NAMESPACES);
            listed
        })
    });
    group.bench_function("list-selector-1-of-10000", |b| {
        b.iter(|| {
            let listed = request
                .list(&kind(), None, r#"{"matchLabels":{"app":"app-04242"}}"#)
                .unwrap();
            assert_eq!(listed.len(), 1);
            listed
        })
    });
    group.bench_function("apply-one-watch-event", |b| {
        let object = service(4242);
        b.iter(|| cache.apply(object.clone()).unwrap())
    });
    group.finish();

    // A whole review through the engine: statefulset-service-name on the
    // recorded StatefulSet, without context (the server's build without the
    // cluster-context checks) and with a 10,000-Service cache (the read
    // finds no Service of the name serviceName gives, and warns).
    let engine = Engine::new(EngineConfig::default()).expect("an engine");
    let builtin = wasmhook_policy_artifacts::builtin("statefulset-service-name").expect("the built-in");
    let load = |with_context| {
        engine
            .load(
                "statefulset-service-name",
                builtin.component(with_context),
                "null",
                Limits::default(),
            )
            .expect("loads")
    };
    let without = load(false);
    let with = load(true).with_context(Some(PolicyContext::new(
        vec![Declaration {
            kind: kind(),
            scope: Scope::Cluster,
        }],
        store.clone(),
    )));
    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/admission-reviews/mutating-create-statefulset-mysql.json"),
    )
    .expect("the recorded review");
    let input = AdmissionInput::from_review(&body).expect("a review");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("review");
    for (label, policy) in [("without-context", &without), ("with-context-10000-services", &with)] {
        let verdict = policy.evaluate_blocking(input.request_text(), None).expect("evaluates");
        assert_eq!(
            verdict.warnings.len(),
            usize::from(label.starts_with("with-")),
            "{label}: {verdict:?}"
        );
        group.bench_function(format!("statefulset-service-name/{label}"), |b| {
            b.iter(|| {
                runtime
                    .block_on(policy.evaluate(input.request_text(), None))
                    .expect("evaluates")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, context);
criterion_main!(benches);
