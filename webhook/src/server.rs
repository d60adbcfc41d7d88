//! The admission server: loads and validates everything, binds, serves, and
//! shuts down gracefully. `wasmhook serve` runs it; tests start it in-process
//! on port 0.

mod app;
pub mod cpu;
mod drain;
mod listener;
pub mod metrics;
pub mod ready_file;
pub mod registry;
mod unread_body;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use app::{answer_margin, budget_within};
pub use listener::ConnectionTimeouts;

use crate::context::watch::ContextWatches;
use crate::engine::{Engine, EngineConfig};
use crate::oci::{Registry, RegistryConfig};
use crate::registration::{RegisterConfig, RegisterError, Registrar};
use crate::tls::{ReloadOutcome, ReloadingCert, TlsError, TlsFiles};
use app::AppState;
use metrics::{Metrics, ResultLabels};
use registry::{PolicySource, PolicyStore, StartupError};

/// Everything the server needs, resolved and validated by the caller.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Admission (TLS) address.
    pub listen: SocketAddr,
    /// Health and metrics (plain HTTP) address.
    pub health_listen: SocketAddr,
    /// Serving certificate and key.
    pub tls: TlsFiles,
    /// CA bundle client certificates must chain to, if clients must present one.
    pub client_ca: Option<PathBuf>,
    /// How often the certificate files are checked for rotation.
    pub tls_reload_interval: Duration,
    /// The policy set.
    pub policies: PolicySource,
    /// How often the policy set and module files are checked for changes
    /// (`None`: only on SIGHUP).
    pub policy_reload_interval: Option<Duration>,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Connection timeouts and the shutdown drain.
    pub timeouts: ConnectionTimeouts,
    /// Self-registration (`--register`): apply the webhook configurations
    /// at start-up and whenever the CA bundle or the policy set changes.
    pub registration: Option<RegisterConfig>,
    /// How reviews are decided: by the policies, except in the benchmark
    /// baseline.
    pub evaluator: Evaluator,
    /// Where policies with a `context:` read the cluster from.
    pub context: ContextConfig,
    /// How policies from OCI registries are pulled. Its `cache_dir`, when
    /// unset, is the engine's.
    pub registry: RegistryConfig,
}

/// The cluster the context watches follow (only when a policy declares
/// `context:`).
#[derive(Debug, Clone)]
pub struct ContextConfig {
    /// A kubeconfig file; `None` infers (in-cluster service account, then
    /// `KUBECONFIG` / `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Bounds discovery of each declared kind.
    pub timeout: Duration,
}

/// How the server decides a review once it has been read and parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Evaluator {
    /// Run the policy: what `wasmhook serve` always does.
    #[default]
    Policies,
    /// Allow every review without running any policy. The benchmark baseline
    /// (`wasmhook-baseline`): the same HTTP, TLS, routing, parsing, response
    /// encoding, metrics and logging, without Wasm, so a benchmark can state
    /// what the policies cost. No command-line flag or policy-set field
    /// selects it.
    AllowWithoutPolicy,
}

impl ServerConfig {
    /// Defaults for everything but the addresses, certificate and policies.
    pub fn new(listen: SocketAddr, health_listen: SocketAddr, tls: TlsFiles, policies: PolicySource) -> Self {
        Self {
            listen,
            health_listen,
            tls,
            client_ca: None,
            tls_reload_interval: Duration::from_secs(10),
            policies,
            policy_reload_interval: Some(Duration::from_secs(10)),
            engine: EngineConfig::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            timeouts: ConnectionTimeouts {
                handshake: Duration::from_secs(10),
                header_read: Duration::from_secs(30),
                drain: Duration::from_secs(25),
            },
            registration: None,
            evaluator: Evaluator::Policies,
            context: ContextConfig {
                kubeconfig: None,
                timeout: Duration::from_secs(30),
            },
            registry: RegistryConfig::default(),
        }
    }
}

/// The API server sends requests of up to 3 MiB; an UPDATE carries the object twice.
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 << 20;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The engine could not be created.
    #[error("cannot start the policy engine: {0}")]
    Engine(String),
    /// The policy set or a policy is invalid.
    #[error(transparent)]
    Policies(#[from] StartupError),
    /// The certificate, key or client CA is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An address could not be bound.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
    /// Self-registration failed.
    #[error("cannot register the webhook configurations: {0}")]
    Register(#[from] RegisterError),
}

/// A running server.
pub struct RunningServer {
    /// The admission (TLS) address actually bound.
    pub addr: SocketAddr,
    /// The health and metrics address actually bound.
    pub health_addr: SocketAddr,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    state: Arc<AppState>,
    certificate: Arc<ReloadingCert>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Loads the policies and certificate (failing on anything invalid),
    /// binds both addresses, and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::new(config.engine.clone()).map_err(|error| ServerError::Engine(format!("{error:#}")))?;
        tracing::info!(
            evaluation_slots = engine.evaluation_slots(),
            long_running_slots = engine.long_running_slots(),
            "policy engine ready"
        );
        let (shutdown, stopping) = watch::channel(false);
        let context = Arc::new(ContextWatches::new(
            config.context.kubeconfig.clone(),
            config.context.timeout,
            stopping.clone(),
        ));
        let pulls = metrics.clone();
        let registry = Arc::new(
            Registry::new(RegistryConfig {
                cache_dir: config
                    .registry
                    .cache_dir
                    .clone()
                    .or_else(|| config.engine.cache_dir.clone()),
                ..config.registry.clone()
            })
            .with_observer(Arc::new(move |reference, source| {
                let result = source.map_or("failed", |source| source.as_str());
                pulls
                    .registry_pulls
                    .get_or_create(&metrics::PullLabels {
                        reference: reference.to_string(),
                        result,
                    })
                    .inc();
            })),
        );
        let store = {
            let metrics = metrics.clone();
            let source = config.policies.clone();
            let context = context.clone();
            tokio::task::spawn_blocking(move || PolicyStore::load(engine, source, metrics, context, registry))
                .await
                .expect("loading policies does not panic")
        };
        let store = match store {
            Ok(store) => store,
            Err(error) => {
                let _ = shutdown.send(true);
                return Err(error.into());
            }
        };
        let store = Arc::new(store);
        let certificate = ReloadingCert::load(config.tls.clone())?;
        let tls = TlsAcceptor::from(crate::tls::server_config(
            certificate.clone(),
            config.client_ca.as_deref(),
        )?);

        let admission = listener::bind(config.listen).await?;
        let health = listener::bind(config.health_listen).await?;
        let addr = admission.local_addr()?;
        let health_addr = health.local_addr()?;

        let state = Arc::new(AppState {
            store: store.clone(),
            metrics: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.timeouts.header_read,
            evaluator: config.evaluator,
            shutting_down: AtomicBool::new(false),
            context,
        });
        let mut tasks = vec![
            tokio::spawn(listener::serve(
                admission,
                Some(tls),
                app::admission_router(state.clone()),
                config.timeouts,
                Some(metrics.clone()),
                stopping.clone(),
            )),
            tokio::spawn(listener::serve(
                health,
                None,
                app::health_router(state.clone()),
                config.timeouts,
                None,
                stopping.clone(),
            )),
        ];
        let reloads = metrics.clone();
        let mut stopping_certificates = stopping.clone();
        tasks.push(tokio::spawn(certificate.clone().watch(
            config.tls_reload_interval,
            async move { listener::stopped(&mut stopping_certificates).await },
            move |outcome| {
                let result = match outcome {
                    ReloadOutcome::Swapped => "success",
                    ReloadOutcome::Rejected => "failure",
                };
                reloads
                    .certificate_reloads
                    .get_or_create(&ResultLabels { result })
                    .inc();
            },
        )));
        if let Some(interval) = config.policy_reload_interval {
            tasks.push(tokio::spawn(watch_policies(store.clone(), interval, stopping.clone())));
        }
        if let Some(registration) = config.registration.clone() {
            // Registered only once serving (and once the Service has a ready
            // endpoint): the API server may call at once.
            let registered = register(registration, store.clone(), metrics.clone(), config.tls_reload_interval).await;
            match registered {
                Ok(task) => tasks.push(tokio::spawn(task.run(stopping))),
                Err(error) => {
                    let _ = shutdown.send(true);
                    for task in tasks {
                        let _ = task.await;
                    }
                    return Err(error.into());
                }
            }
        }
        let snapshot = store.snapshot();
        tracing::info!(%addr, %health_addr, policies = snapshot.policies.len(), "wasmhook serving");
        Ok(Self {
            addr,
            health_addr,
            store,
            metrics,
            state,
            certificate,
            shutdown,
            tasks,
        })
    }

    /// Reloads the policy set now (what SIGHUP does).
    pub async fn reload_policies(&self) {
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.reload()).await;
    }

    /// The names of the policies being served.
    pub fn policy_names(&self) -> Vec<String> {
        self.store.snapshot().policies.keys().cloned().collect()
    }

    /// The metrics, in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// How many times the serving certificate was swapped.
    pub fn certificate_generation(&self) -> u64 {
        self.certificate.generation()
    }

    /// Turns `/readyz` to 503 while everything keeps serving: the first step
    /// of a shutdown with a delay (`--shutdown-delay`), which gives the
    /// endpoints time to stop sending reviews before the server stops
    /// accepting them.
    pub fn stop_being_ready(&self) {
        self.state.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Stops accepting, lets every accepted request finish (bounded by the
    /// drain timeout), and returns when everything has stopped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        tracing::info!("wasmhook stopped");
    }
}

/// Connects and checks at start-up (bounded by the registration timeout):
/// the API server answers, the credentials can read the owning ClusterRole,
/// the CA bundle and target are valid. Returns the task that registers once
/// the Service is ready and re-applies on changes.
async fn register(
    config: RegisterConfig,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    interval: Duration,
) -> Result<Reregistration, RegisterError> {
    let registrar = Registrar::connect(config).await?;
    registrar.check(&store.snapshot().policy_set())?;
    registrar.resolve_owner().await?;
    Ok(Reregistration {
        registrar,
        store,
        metrics,
        interval,
    })
}

/// How often the Service's endpoints are checked before the first
/// registration, and how long a failed application waits at first.
const ENDPOINT_POLL: Duration = Duration::from_secs(2);

/// Applies the webhook configurations once wasmhook's Service has a ready
/// endpoint, then again whenever the CA bundle or the policy set changes.
struct Reregistration {
    registrar: Registrar,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    interval: Duration,
}

impl Reregistration {
    async fn run(self, mut stopping: watch::Receiver<bool>) {
        let mut announced = false;
        loop {
            match self.registrar.service_is_ready().await {
                Ok(true) => break,
                Ok(false) if !announced => {
                    tracing::info!(
                        "waiting for a ready endpoint of wasmhook's Service before registering the webhooks"
                    );
                    announced = true;
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot tell whether wasmhook's Service is ready; will retry"),
            }
            tokio::select! {
                () = listener::stopped(&mut stopping) => return,
                _ = tokio::time::sleep(ENDPOINT_POLL) => {}
            }
        }
        let mut pause = ENDPOINT_POLL;
        loop {
            let result = match self.registrar.apply(&self.store.snapshot().policy_set()).await {
                Ok(false) => None,
                Ok(true) => Some("success"),
                Err(error) => {
                    tracing::error!(%error, "cannot apply the webhook configurations; will retry");
                    Some("failure")
                }
            };
            if let Some(result) = result {
                self.metrics.registrations.get_or_create(&ResultLabels { result }).inc();
            }
            // Retry a failure sooner than the change check, backing off.
            let wait = if result == Some("failure") {
                pause = (pause * 2).min(self.interval.max(ENDPOINT_POLL));
                pause
            } else {
                pause = ENDPOINT_POLL;
                self.interval
            };
            tokio::select! {
                () = listener::stopped(&mut stopping) => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

async fn watch_policies(store: Arc<PolicyStore>, interval: Duration, mut stopping: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = listener::stopped(&mut stopping) => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
    }
}
