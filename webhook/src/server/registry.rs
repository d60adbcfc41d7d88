//! The policies being served, and how they are replaced.
//!
//! The active set is an immutable snapshot behind a lock that is held only to
//! clone an `Arc`, so a reload never blocks or drops a review: reviews in
//! flight finish on the snapshot they started with. A reload re-reads the
//! policy set, reuses every policy whose module, settings and limits are
//! unchanged, and compiles the rest. A policy that fails to load never takes
//! the server or the other policies down: its previous version keeps serving,
//! and the failure is logged, counted and reported by readiness.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{ConfigError, PolicyConfig, PolicySet};
use crate::context::ContextProvider;
use crate::engine::{CompiledPolicy, Engine, LoadError, sha256_hex};
use crate::oci::Registry;
use crate::server::cpu::Sampler;
use crate::server::metrics::{Metrics, PolicyLabels, ResultLabels};

/// Where the policy set comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// The built-in policies with their defaults.
    BuiltinDefault,
    /// A policy-set file.
    File(PathBuf),
}

/// A policy ready to serve requests.
pub struct ActivePolicy {
    /// Its configuration.
    pub config: PolicyConfig,
    /// Its compiled component.
    pub compiled: CompiledPolicy,
    /// Which of its evaluations the CPU metric measures.
    pub cpu_sampler: Sampler,
}

impl ActivePolicy {
    fn new(config: PolicyConfig, compiled: CompiledPolicy) -> Self {
        Self {
            config,
            compiled,
            cpu_sampler: Sampler::default(),
        }
    }
}

/// One consistent set of policies.
#[derive(Default)]
pub struct Snapshot {
    /// Serving policies by name.
    pub policies: BTreeMap<String, Arc<ActivePolicy>>,
    /// Their names in policy-set order (the order the API server calls them).
    pub order: Vec<String>,
    /// Policies whose newest configuration failed to load, with the reason.
    /// Those that had a previous version still serve it.
    pub load_failures: BTreeMap<String, String>,
    /// Why the newest policy-set file was not applied, if it was not.
    pub config_failure: Option<String>,
}

impl Snapshot {
    /// The configurations being served, in policy-set order.
    pub fn policy_set(&self) -> PolicySet {
        PolicySet {
            policies: self
                .order
                .iter()
                .filter_map(|name| self.policies.get(name))
                .map(|policy| policy.config.clone())
                .collect(),
        }
    }
}

/// Why the policy set could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The policy-set file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A policy failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A policy's `context:` cannot be served.
    #[error("policy {policy:?}: context: {reason}")]
    Context {
        /// The policy.
        policy: String,
        /// Why (an unknown kind, an unreachable or refusing API server).
        reason: String,
    },
}

/// The policies being served, swapped atomically on reload.
pub struct PolicyStore {
    engine: Engine,
    source: PolicySource,
    /// Gives policies with a `context:` their cluster objects.
    context: Arc<dyn ContextProvider>,
    /// Where modules from OCI registries are pulled.
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    current: RwLock<Arc<Snapshot>>,
    /// Serializes reloads, and remembers the fingerprint of the files the
    /// last one read.
    last_inputs: Mutex<String>,
}

impl PolicyStore {
    /// Loads every policy of the set; any failure is an error (start-up
    /// validates everything before a port is bound).
    pub fn load(
        engine: Engine,
        source: PolicySource,
        metrics: Arc<Metrics>,
        context: Arc<dyn ContextProvider>,
        registry: Arc<Registry>,
    ) -> Result<Self, StartupError> {
        let set = read_set(&source, engine.config().max_memory_limit)?;
        let mut snapshot = Snapshot::default();
        for config in set.policies {
            let wasm = config.read_module(&registry)?;
            let compiled = with_context(compile(&engine, &config, &wasm)?, &config, context.as_ref())?;
            snapshot.order.push(config.name.clone());
            snapshot
                .policies
                .insert(config.name.clone(), Arc::new(ActivePolicy::new(config, compiled)));
        }
        let inputs = fingerprint(&watched_files(&source, &snapshot));
        Ok(Self {
            engine,
            source,
            context,
            registry,
            metrics,
            current: RwLock::new(Arc::new(snapshot)),
            last_inputs: Mutex::new(inputs),
        })
    }

    /// The current set of policies.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads if the policy-set file or a module file changed since the last
    /// (re)load. Blocking: policies may be compiled.
    pub fn reload_if_changed(&self) {
        let PolicySource::File(_) = &self.source else { return };
        let mut last = self.last_inputs.lock().unwrap_or_else(|p| p.into_inner());
        if *last == fingerprint(&watched_files(&self.source, &self.snapshot())) {
            return;
        }
        tracing::info!("policy set or a policy module changed on disk; reloading");
        self.reload_locked();
        *last = fingerprint(&watched_files(&self.source, &self.snapshot()));
    }

    /// Reloads the policy set now (SIGHUP). Blocking: policies may be compiled.
    pub fn reload(&self) {
        let mut last = self.last_inputs.lock().unwrap_or_else(|p| p.into_inner());
        self.reload_locked();
        *last = fingerprint(&watched_files(&self.source, &self.snapshot()));
    }

    fn reload_locked(&self) {
        let previous = self.snapshot();
        let set = match read_set(&self.source, self.engine.config().max_memory_limit) {
            Ok(set) => set,
            Err(error) => {
                tracing::error!(%error, "policy set not reloaded; the previous policies keep serving");
                self.metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "failure" })
                    .inc();
                let snapshot = Snapshot {
                    policies: previous.policies.clone(),
                    order: previous.order.clone(),
                    load_failures: previous.load_failures.clone(),
                    config_failure: Some(error.to_string()),
                };
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
                return;
            }
        };
        let mut snapshot = Snapshot::default();
        for config in set.policies {
            let name = config.name.clone();
            let old = previous.policies.get(&name);
            // Read once: a tag is resolved again at every reload.
            let compiled = config
                .read_module(&self.registry)
                .map_err(StartupError::from)
                .and_then(
                    |wasm| match old.filter(|old| same_code(&old.config, &old.compiled, &config, &wasm)) {
                        Some(old) => Ok(old.compiled.clone()),
                        None => compile(&self.engine, &config, &wasm),
                    },
                );
            let active = compiled
                .and_then(|compiled| with_context(compiled, &config, self.context.as_ref()))
                .map(|compiled| ActivePolicy::new(config, compiled));
            match active {
                Ok(active) => {
                    snapshot.order.push(name.clone());
                    snapshot.policies.insert(name, Arc::new(active));
                }
                Err(error) => {
                    self.metrics
                        .policy_load_failures
                        .get_or_create(&PolicyLabels { policy: name.clone() })
                        .inc();
                    match old {
                        Some(old) => {
                            tracing::error!(policy = %name, %error, "policy not reloaded; its previous version keeps serving");
                            snapshot.order.push(name.clone());
                            snapshot.policies.insert(name.clone(), old.clone());
                        }
                        None => tracing::error!(policy = %name, %error, "new policy failed to load; it is not served"),
                    }
                    snapshot.load_failures.insert(name, error.to_string());
                }
            }
        }
        let result = if snapshot.load_failures.is_empty() {
            "success"
        } else {
            "failure"
        };
        self.metrics
            .config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        tracing::info!(
            policies = snapshot.policies.len(),
            failures = snapshot.load_failures.len(),
            "policy set reloaded"
        );
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }
}

fn read_set(source: &PolicySource, max_memory_limit: usize) -> Result<PolicySet, ConfigError> {
    match source {
        PolicySource::BuiltinDefault => Ok(PolicySet::builtin_default()),
        PolicySource::File(path) => PolicySet::from_file(path, max_memory_limit),
    }
}

/// Compiles the module read for `config` (its pin checked) with its settings.
fn compile(engine: &Engine, config: &PolicyConfig, wasm: &[u8]) -> Result<CompiledPolicy, StartupError> {
    Ok(engine.load(&config.name, wasm, &config.settings_json(), config.limits)?)
}

/// `compiled` reading the cluster as `config`'s `context:` declares.
pub fn with_context(
    compiled: CompiledPolicy,
    config: &PolicyConfig,
    provider: &dyn ContextProvider,
) -> Result<CompiledPolicy, StartupError> {
    if config.context.is_empty() {
        return Ok(compiled.with_context(None));
    }
    let context = provider
        .provide(&config.name, &config.context)
        .map_err(|reason| StartupError::Context {
            policy: config.name.clone(),
            reason,
        })?;
    Ok(compiled.with_context(Some(context)))
}

/// Whether `compiled` (built for `old`) can serve `new`, whose module is
/// `wasm`, as is.
fn same_code(old: &PolicyConfig, compiled: &CompiledPolicy, new: &PolicyConfig, wasm: &[u8]) -> bool {
    sha256_hex(wasm) == compiled.sha256() && old.settings == new.settings && old.limits == new.limits
}

/// The files a reload reads: the policy-set file and every module file it names.
fn watched_files(source: &PolicySource, snapshot: &Snapshot) -> Vec<PathBuf> {
    let PolicySource::File(path) = source else {
        return Vec::new();
    };
    let modules = snapshot
        .policies
        .values()
        .filter_map(|policy| match &policy.config.module {
            crate::builtin::ModuleSource::File(module) => Some(module.clone()),
            crate::builtin::ModuleSource::Builtin(_) | crate::builtin::ModuleSource::Oci(_) => None,
        });
    std::iter::once(path.clone()).chain(modules).collect()
}

/// A cheap fingerprint of files: size, modification time and inode of what
/// each path resolves to. A Kubernetes ConfigMap or Secret volume update (an
/// atomic `..data` symlink swap) changes the inode the path resolves to.
fn fingerprint(files: &[PathBuf]) -> String {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|file| match std::fs::metadata(file) {
            Ok(meta) => format!("{}:{}:{}.{};", meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec()),
            Err(_) => "missing;".to_owned(),
        })
        .collect()
}
