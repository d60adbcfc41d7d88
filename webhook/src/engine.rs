//! The policy engine: compiles policy components once, and evaluates each
//! admission request in a fresh, sandboxed, bounded instance.
//!
//! One wasmtime [`wasmtime::Engine`] per process. Each policy is compiled once
//! (or loaded from the on-disk cache) and pre-linked into a `PolicyPre`; every
//! evaluation gets a new `Store` and instance from the pooling allocator, with
//! copy-on-write memory images, so no state leaks between requests and
//! instantiation takes microseconds. A counting gate keeps concurrent
//! evaluations within the pool; an epoch ticker and a memory limiter bound
//! each one in time and space.
//!
//! Evaluations are futures run by the server's own async workers: no thread
//! hand-off per review (which cost more than the evaluation itself). A guest
//! yields to the executor every epoch tick, so a policy that loops until its
//! timeout shares its worker instead of blocking it, and evaluations that run
//! for more than a few milliseconds together get at most a bounded number of
//! cores (`pacer`), so they never starve quick ones. Callers without a
//! runtime (the `eval` command, tests, policy loading) use the `_blocking`
//! forms.

mod bindings;
mod cache;
mod failure;
mod gate;
mod host;
mod pacer;
mod ticker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmhook_rawjson::ContainerIndex;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::context::PolicyContext;
use wasmtime::{Config, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Store};

pub use bindings::Verdict;
pub use cache::{CacheOutcome, sha256_hex};
pub use failure::PolicyFailure;

use bindings::PolicyPre;
use gate::Gate;
use host::{HostState, MemoryLimitExceeded};
use pacer::LongRunning;
use ticker::EpochTicker;

/// Bytes of each pooled memory (and table) kept resident between instances:
/// covers a Rust policy's stack, data and heap (the stack ends at 1 MiB).
const KEEP_RESIDENT: usize = 2 << 20;

/// Distinct modules whose linked components are kept for sharing.
const MAX_SHARED_MODULES: usize = 64;

/// Limits one policy runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for one evaluation (instantiation included).
    pub timeout: Duration,
    /// Bytes each of the policy's linear memories may grow to.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            memory: 128 << 20,
        }
    }
}

/// Process-wide engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How many evaluations may run at once (the size of the instance pool).
    pub max_concurrent_evaluations: u32,
    /// How many of those one policy may hold; `None` means half of them (at
    /// least one), so a policy that hangs until its timeout under load can
    /// never starve the others.
    pub max_concurrent_per_policy: Option<u32>,
    /// How many evaluations still running after a few milliseconds may run at
    /// once; the others wait, using no CPU. `None` means half the CPUs (at
    /// least one), so evaluations that loop until their timeout always leave
    /// quick ones a share of the cores.
    pub max_long_running_evaluations: Option<u32>,
    /// The largest memory limit any policy may be configured with.
    pub max_memory_limit: usize,
    /// Where precompiled policies are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Bytes of stdout and of stderr kept per evaluation.
    pub output_limit: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_concurrent_evaluations: 64,
            max_concurrent_per_policy: None,
            max_long_running_evaluations: None,
            max_memory_limit: 1 << 30,
            cache_dir: None,
            output_limit: 16 << 10,
        }
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a component wasmtime can compile.
    #[error("policy {policy:?}: not a valid WebAssembly component: {reason}")]
    Compile {
        /// The policy's name.
        policy: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// The component does not implement the `wasmhook:policy` world, or needs
    /// imports the sandbox does not provide.
    #[error("policy {policy:?}: cannot be linked against the wasmhook:policy@0.1.0 world: {reason}")]
    Link {
        /// The policy's name.
        policy: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// The policy's `validate-settings` rejected the settings.
    #[error("policy {policy:?}: settings rejected by the policy: {message}")]
    Settings {
        /// The policy's name.
        policy: String,
        /// The policy's message.
        message: String,
    },
    /// `validate-settings` failed to run (trap, timeout…).
    #[error("policy {policy:?}: validating its settings failed: {failure}")]
    SettingsFailed {
        /// The policy's name.
        policy: String,
        /// What went wrong.
        #[source]
        failure: PolicyFailure,
    },
    /// The configured limits are outside what the engine allows.
    #[error("policy {policy:?}: memory limit {requested} bytes exceeds the engine's maximum of {maximum} bytes")]
    MemoryLimit {
        /// The policy's name.
        policy: String,
        /// The configured limit.
        requested: usize,
        /// The engine's maximum.
        maximum: usize,
    },
}

/// The engine that compiles and runs policies. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    wasmtime: wasmtime::Engine,
    linker: Linker<HostState>,
    /// Linked components by module sha256, shared by every policy of the
    /// same module (100 copies of a policy cost one component's memory).
    linked: std::sync::Mutex<std::collections::HashMap<String, PolicyPre<HostState>>>,
    cache: cache::ArtifactCache,
    gate: Gate,
    long_running: LongRunning,
    ticker: EpochTicker,
    config: EngineConfig,
}

impl Engine {
    /// Creates the engine: wasmtime with the pooling allocator, epoch
    /// interruption, and WASI preview 2 linked (granting nothing).
    pub fn new(config: EngineConfig) -> wasmtime::Result<Self> {
        let slots = config.max_concurrent_evaluations.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            // Scripting-language components (componentize-py, jco) carry
            // several core modules and memories; Rust policies use 1 memory,
            // 2 tables and ~3 core instances.
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .total_core_instances(slots * 8)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            .max_memory_size(config.max_memory_limit)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .total_stacks(slots)
            // Reset a released slot's memory by rewriting the pages the guest
            // touched instead of unmapping them: no page faults in the next
            // instance, and no TLB shoot-down across the server's threads per
            // review (measured: the Wasm path's CPU cost nearly halved).
            // PAGEMAP_SCAN (Linux 6.7+) finds the touched pages; without it
            // the first KEEP_RESIDENT bytes are cleared with memset.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);

        let mut wasmtime_config = Config::new();
        wasmtime_config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let wasmtime = wasmtime::Engine::new(&wasmtime_config)?;

        let mut linker = Linker::new(&wasmtime);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::wasmhook::policy::request_layout::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )?;
        bindings::wasmhook::policy::cluster_context::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )?;

        Ok(Self {
            inner: Arc::new(EngineInner {
                cache: cache::ArtifactCache::new(config.cache_dir.clone(), &wasmtime),
                ticker: EpochTicker::start(wasmtime.clone()),
                gate: Gate::new(slots as usize),
                linked: std::sync::Mutex::new(std::collections::HashMap::new()),
                long_running: LongRunning::new(config.max_long_running_evaluations.map_or_else(
                    || std::thread::available_parallelism().map_or(1, |cpus| cpus.get() / 2),
                    |capacity| capacity as usize,
                )),
                linker,
                wasmtime,
                config,
            }),
        })
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// How many evaluations may run at once.
    pub fn evaluation_slots(&self) -> usize {
        self.inner.gate.capacity()
    }

    /// How many evaluations past their first milliseconds may run at once.
    pub fn long_running_slots(&self) -> usize {
        self.inner.long_running.capacity()
    }

    /// Compiles (or loads from the cache) a policy component, links it, and
    /// runs its `validate-settings` with `settings` (JSON).
    pub fn load(&self, name: &str, wasm: &[u8], settings: &str, limits: Limits) -> Result<CompiledPolicy, LoadError> {
        if limits.memory > self.inner.config.max_memory_limit {
            return Err(LoadError::MemoryLimit {
                policy: name.to_owned(),
                requested: limits.memory,
                maximum: self.inner.config.max_memory_limit,
            });
        }
        let started = Instant::now();
        let sha256 = sha256_hex(wasm);
        let (pre, cache) = self.linked(name, wasm, &sha256)?;
        let policy = CompiledPolicy {
            context: None,
            inner: Arc::new(PolicyInner {
                gate: Gate::new(self.per_policy_slots()),
                name: name.to_owned(),
                engine: self.clone(),
                reads_layout: imports_request_layout(&pre, &self.inner.wasmtime),
                pre,
                settings: settings.to_owned(),
                limits,
                sha256,
                cache,
                load_time: Duration::ZERO,
            }),
        };
        let validated = block_on(async {
            let mut instance = policy.instantiate(None).await?;
            instance.validate_settings(settings).await
        });
        match validated {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(LoadError::Settings {
                    policy: name.to_owned(),
                    message,
                });
            }
            Err(failure) => {
                return Err(LoadError::SettingsFailed {
                    policy: name.to_owned(),
                    failure,
                });
            }
        }
        let mut inner = Arc::into_inner(policy.inner).expect("no other reference exists during load");
        inner.load_time = started.elapsed();
        tracing::debug!(policy = name, sha256 = %inner.sha256, cache = ?cache, elapsed = ?inner.load_time, "policy loaded");
        Ok(CompiledPolicy {
            inner: Arc::new(inner),
            context: None,
        })
    }

    /// How many evaluation slots one policy may hold.
    /// The linked component of a module: shared if another policy loaded the
    /// same bytes, else compiled (or read from the on-disk cache) and linked.
    fn linked(&self, name: &str, wasm: &[u8], sha256: &str) -> Result<(PolicyPre<HostState>, CacheOutcome), LoadError> {
        let shared = |linked: &std::collections::HashMap<String, PolicyPre<HostState>>| linked.get(sha256).cloned();
        if let Some(pre) = shared(
            &self
                .inner
                .linked
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        ) {
            return Ok((pre, CacheOutcome::Shared));
        }
        let (component, cache) = self
            .inner
            .cache
            .load(&self.inner.wasmtime, wasm, sha256)
            .map_err(|error| LoadError::Compile {
                policy: name.to_owned(),
                reason: format!("{error:#}"),
            })?;
        let pre = self.pre_link(name, &component)?;
        let mut linked = self
            .inner
            .linked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Modules replaced by reloads would otherwise stay forever: past the
        // bound, forget them all (live policies keep their own reference;
        // only sharing with later loads is lost).
        if linked.len() >= MAX_SHARED_MODULES {
            linked.clear();
        }
        linked.insert(sha256.to_owned(), pre.clone());
        Ok((pre, cache))
    }

    fn per_policy_slots(&self) -> usize {
        let total = self.inner.gate.capacity();
        let share = self
            .inner
            .config
            .max_concurrent_per_policy
            .map_or(total / 2, |share| share as usize);
        share.clamp(1, total)
    }

    fn pre_link(&self, name: &str, component: &Component) -> Result<PolicyPre<HostState>, LoadError> {
        let link_error = |error: wasmtime::Error| LoadError::Link {
            policy: name.to_owned(),
            reason: format!("{error:#}"),
        };
        let instance_pre = self.inner.linker.instantiate_pre(component).map_err(link_error)?;
        PolicyPre::new(instance_pre).map_err(link_error)
    }
}

/// A request as a policy is given it: the JSON of an AdmissionReview's
/// `request` and, when the caller has it, the index of its containers
/// ([`ContainerIndex`], handed to policies that import `request-layout`).
/// From a bare `&str` the engine indexes the text itself when the policy
/// needs it; [`crate::review::AdmissionInput::request_text`] has the index
/// from the pass that compacted the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestText<'a> {
    json: &'a str,
    containers: Option<&'a ContainerIndex>,
    /// The request's namespace, when the caller has read it (for policies
    /// whose context is scoped to it; read from `json` otherwise).
    namespace: Option<Option<&'a str>>,
}

impl<'a> RequestText<'a> {
    /// `json` with `containers`, the index of exactly this text.
    pub fn indexed(json: &'a str, containers: &'a ContainerIndex) -> Self {
        Self {
            json,
            containers: Some(containers),
            namespace: None,
        }
    }

    /// The same text, whose `namespace` the caller has read.
    pub fn in_namespace(self, namespace: Option<&'a str>) -> Self {
        Self {
            namespace: Some(namespace),
            ..self
        }
    }

    /// The request's namespace: as given, else read from the text.
    fn namespace(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Namespace {
            namespace: Option<String>,
        }
        match self.namespace {
            Some(namespace) => namespace.map(str::to_owned),
            None => serde_json::from_str::<Namespace>(self.json)
                .ok()
                .and_then(|request| request.namespace)
                .filter(|namespace| !namespace.is_empty()),
        }
    }
}

impl<'a> From<&'a str> for RequestText<'a> {
    fn from(json: &'a str) -> Self {
        Self {
            json,
            containers: None,
            namespace: None,
        }
    }
}

/// One evaluation, as [`CompiledPolicy::evaluate_observed`] reports it.
#[derive(Debug)]
pub struct Evaluation {
    /// The verdict, or why there is none.
    pub result: Result<Verdict, PolicyFailure>,
    /// Whether the policy grew its memory beyond its initial size
    /// ([`PolicyInstance::memory_grown`]): a cost the server pays on every
    /// such review, which the policy's author can remove.
    pub memory_grown: bool,
}

/// A compiled, linked policy with its settings and limits. Cheap to clone;
/// evaluations may run concurrently from many threads.
#[derive(Clone)]
pub struct CompiledPolicy {
    inner: Arc<PolicyInner>,
    /// What the policy may read of the cluster (its `context:`); `None`
    /// without one, and every read is refused as undeclared.
    context: Option<PolicyContext>,
}

struct PolicyInner {
    /// This policy's share of the engine's evaluation slots.
    gate: Gate,
    name: String,
    engine: Engine,
    pre: PolicyPre<HostState>,
    /// Whether the policy imports `request-layout`: only then is it handed
    /// the request's index. (componentize-py and jco give a component every
    /// import of the world, so the Python and JavaScript policies import it
    /// without calling it.)
    reads_layout: bool,
    settings: String,
    limits: Limits,
    sha256: String,
    cache: CacheOutcome,
    load_time: Duration,
}

impl CompiledPolicy {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The same policy, reading the cluster through `context` (its policy-set
    /// entry's `context:`; `None` for none). The compiled code is shared.
    pub fn with_context(self, context: Option<PolicyContext>) -> Self {
        Self { context, ..self }
    }

    /// What the policy may read of the cluster.
    pub fn context(&self) -> Option<&PolicyContext> {
        self.context.as_ref()
    }

    /// The sha256 of the component it was loaded from.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Whether the policy imports `request-layout`, and so is handed the
    /// index of each request's containers (policies built with the Rust SDK
    /// import it and use it).
    pub fn reads_request_layout(&self) -> bool {
        self.inner.reads_layout
    }

    /// Whether loading hit the compile cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache
    }

    /// How long loading took (compile or cache load, link, settings check).
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// The policy's limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Evaluates one request (the JSON of an AdmissionReview's `request`) in
    /// a fresh instance.
    ///
    /// `budget` caps the wall-clock time below the policy's own timeout (the
    /// API server's deadline); the effective timeout is the smaller of the two.
    pub async fn evaluate<'r>(
        &self,
        request: impl Into<RequestText<'r>>,
        budget: Option<Duration>,
    ) -> Result<Verdict, PolicyFailure> {
        self.evaluate_observed(request, budget).await.result
    }

    /// [`CompiledPolicy::evaluate`], and what the server watches of the
    /// evaluation besides its result.
    pub async fn evaluate_observed<'r>(
        &self,
        request: impl Into<RequestText<'r>>,
        budget: Option<Duration>,
    ) -> Evaluation {
        let mut instance = match self.instantiate(budget).await {
            Ok(instance) => instance,
            Err(failure) => {
                return Evaluation {
                    result: Err(failure),
                    memory_grown: false,
                };
            }
        };
        let result = instance.evaluate(request).await;
        Evaluation {
            result,
            memory_grown: instance.memory_grown(),
        }
    }

    /// [`CompiledPolicy::evaluate`] for callers outside an async runtime.
    pub fn evaluate_blocking<'r>(
        &self,
        request: impl Into<RequestText<'r>>,
        budget: Option<Duration>,
    ) -> Result<Verdict, PolicyFailure> {
        block_on(self.evaluate(request, budget))
    }

    /// Takes this policy's evaluation slots and instantiates it: the first
    /// half of [`CompiledPolicy::evaluate`], public so the two halves can be
    /// measured apart. The clock (`budget` or the policy's timeout) starts
    /// now and covers both halves.
    pub async fn instantiate(&self, budget: Option<Duration>) -> Result<PolicyInstance<'_>, PolicyFailure> {
        let timeout = budget.map_or(self.inner.limits.timeout, |budget| {
            budget.min(self.inner.limits.timeout)
        });
        let engine = &self.inner.engine.inner;
        let started = Instant::now();
        let deadline = started + timeout;
        // The policy's own share first, so a policy at its share never takes
        // a slot another policy could use.
        let overloaded = |gate: &Gate| PolicyFailure::Overloaded {
            slots: gate.capacity(),
            waited: started.elapsed(),
        };
        let Some(policy_permit) = self.inner.gate.acquire(deadline).await else {
            return Err(overloaded(&self.inner.gate));
        };
        let Some(engine_permit) = engine.gate.acquire(deadline).await else {
            return Err(overloaded(&engine.gate));
        };
        if Instant::now() >= deadline {
            // A slot freed up just as the budget ran out: nothing left to run with.
            return Err(overloaded(&engine.gate));
        }
        let running = engine.ticker.running();

        let state = HostState::new(self.inner.limits.memory, engine.config.output_limit);
        let mut store = Store::new(&engine.wasmtime, state);
        store.limiter(|state| &mut state.limiter);
        // Every tick: stop at the deadline, else yield to the executor so
        // other reviews on this worker go on; past a short grace, only with a
        // long-running permit (see `pacer`).
        store.set_epoch_deadline(1);
        let mut pacer = engine.long_running.pacer(deadline);
        store.epoch_deadline_callback(move |_| Ok(pacer.on_tick()));
        match self.inner.pre.instantiate_async(&mut store).await {
            Ok(bindings) => Ok(PolicyInstance {
                store,
                bindings,
                policy: self,
                timeout,
                _running: running,
                _engine_permit: engine_permit,
                _policy_permit: policy_permit,
            }),
            Err(error) => {
                let stderr = self.forward_output(&store);
                Err(self.classify(error, &store, timeout, &stderr))
            }
        }
    }

    /// Turns a wasmtime error into a typed failure.
    fn classify(
        &self,
        error: wasmtime::Error,
        store: &Store<HostState>,
        timeout: Duration,
        stderr: &str,
    ) -> PolicyFailure {
        let limiter = &store.data().limiter;
        if limiter.exceeded() || error.downcast_ref::<MemoryLimitExceeded>().is_some() {
            return PolicyFailure::OutOfMemory { limit: limiter.limit() };
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => PolicyFailure::Timeout(timeout),
            Some(trap) => PolicyFailure::Trap {
                message: panic_message(stderr).unwrap_or_else(|| trap.to_string()),
            },
            None => PolicyFailure::Instantiation {
                message: format!("{error:#}"),
            },
        }
    }

    /// Sends what the policy printed to the server's log, tagged with the
    /// policy, and returns its stderr (for panic messages).
    fn forward_output(&self, store: &Store<HostState>) -> String {
        let policy = self.inner.name.as_str();
        let (stdout, stdout_dropped) = store.data().stdout.take();
        let (stderr, stderr_dropped) = store.data().stderr.take();
        for (stream, text, dropped) in [("stdout", &stdout, stdout_dropped), ("stderr", &stderr, stderr_dropped)] {
            if !text.is_empty() {
                tracing::info!(target: "wasmhook::policy_output", policy, stream, dropped_bytes = dropped, "{}", text.trim_end());
            }
        }
        stderr
    }
}

/// A fresh instance of a policy, holding its evaluation slots until dropped.
///
/// Production evaluates each instance once ([`CompiledPolicy::evaluate`]);
/// the type exists so benchmarks can time instantiation and evaluation apart.
pub struct PolicyInstance<'p> {
    // Field order is drop order: the store returns its pool slot before the
    // permits that guard the pool are released.
    store: Store<HostState>,
    bindings: bindings::Policy,
    policy: &'p CompiledPolicy,
    timeout: Duration,
    _running: ticker::RunningGuard<'p>,
    _engine_permit: gate::Permit<'p>,
    _policy_permit: gate::Permit<'p>,
}

impl PolicyInstance<'_> {
    /// Evaluates one request (the JSON of an AdmissionReview's `request`).
    pub async fn evaluate<'r>(&mut self, request: impl Into<RequestText<'r>>) -> Result<Verdict, PolicyFailure> {
        let request = request.into();
        if let Some(context) = &self.policy.context {
            self.store.data_mut().context = Some(context.for_request(request.namespace()));
        }
        let RequestText { json, containers, .. } = request;
        let settings = self.policy.inner.settings.as_str();
        if self.policy.inner.reads_layout {
            // Found natively, once: the policy then skips what it does not
            // read by a lookup instead of a scan in Wasm.
            self.store.data_mut().request_layout = match containers {
                Some(containers) => containers.clone(),
                None => ContainerIndex::of(json).unwrap_or_default(),
            };
        }
        let result = self.bindings.call_evaluate(&mut self.store, json, settings).await;
        match self.finish(result)? {
            Ok(verdict) => Ok(verdict),
            Err(message) => Err(PolicyFailure::PolicyError { message }),
        }
    }

    /// Whether the policy has grown a memory beyond its initial size. Each
    /// growth costs the server `mprotect` calls and a TLB flush on its
    /// threads (see `MemoryLimiter::grown`): a policy should fit a typical
    /// review in its initial memory (policies/README.md).
    pub fn memory_grown(&self) -> bool {
        self.store.data().limiter.grown()
    }

    /// Runs the policy's `validate-settings` on the policy's own settings.
    async fn validate_settings(&mut self, settings: &str) -> Result<Result<(), String>, PolicyFailure> {
        let result = self.bindings.call_validate_settings(&mut self.store, settings).await;
        self.finish(result)
    }

    /// Forwards what the policy printed and classifies a failure.
    fn finish<R>(&mut self, result: wasmtime::Result<R>) -> Result<R, PolicyFailure> {
        let stderr = self.policy.forward_output(&self.store);
        result.map_err(|error| self.policy.classify(error, &self.store, self.timeout, &stderr))
    }
}

/// Whether the policy `pre` links imports the `request-layout` interface.
fn imports_request_layout(pre: &PolicyPre<HostState>, engine: &wasmtime::Engine) -> bool {
    pre.instance_pre()
        .component()
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with(REQUEST_LAYOUT_INTERFACE))
}

/// The name of the `request-layout` interface, without its version.
const REQUEST_LAYOUT_INTERFACE: &str = "wasmhook:policy/request-layout@";

/// Runs `future` to completion on this thread, for callers outside an async
/// runtime. A current-thread runtime is enough: evaluations only need its
/// timer (for the gate's deadline).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime can always be built")
        .block_on(future)
}

/// The panic message a Rust policy printed: the SDK's one-line form
/// (`panicked at src/lib.rs:3:5: message`) or the standard hook's two-line
/// form (`thread '…' panicked at src/lib.rs:3:5:` then the message).
fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        let Some(start) = line.find("panicked at") else {
            continue;
        };
        let headline = &line[start..];
        return Some(match headline.strip_suffix(':') {
            Some(location) => format!("{location}: {}", lines.next().unwrap_or("").trim()),
            None => headline.to_owned(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_found_in_both_forms() {
        assert_eq!(
            panic_message("noise\npanicked at src/lib.rs:3:5: boom\n").as_deref(),
            Some("panicked at src/lib.rs:3:5: boom")
        );
        assert_eq!(
            panic_message("\nthread '<unnamed>' panicked at src/lib.rs:9:1:\nkaboom\nnote: run with RUST_BACKTRACE=1")
                .as_deref(),
            Some("panicked at src/lib.rs:9:1: kaboom")
        );
        assert_eq!(panic_message("just logging\n"), None);
    }
}
