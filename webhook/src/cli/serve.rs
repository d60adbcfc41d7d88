//! `wasmhook serve`: run the admission server until SIGTERM/SIGINT, reloading
//! the policy set on SIGHUP. With no arguments it serves the built-in policies
//! on https://127.0.0.1:8443 with a development CA it generates, and prints a
//! `curl` that posts a sample review.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use kube::core::admission::Operation;
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::EXIT_USAGE;
use crate::engine::EngineConfig;
use crate::manifest::{self, RequestSpec};
use crate::oci::RegistryConfig;
use crate::registration::RegisterConfig;
use crate::server::ready_file::ReadyFile;
use crate::server::registry::PolicySource;
use crate::server::{
    ConnectionTimeouts, ContextConfig, DEFAULT_MAX_BODY_BYTES, Evaluator, RunningServer, ServerConfig,
};
use crate::tls::TlsFiles;

/// Arguments of `wasmhook serve`. Every flag has an environment-variable twin.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Policy-set file [default: the built-in policies with their defaults].
    #[arg(long, env = "WASMHOOK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Admission (HTTPS) address.
    #[arg(long, env = "WASMHOOK_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Health (/healthz, /readyz) and metrics (/metrics) plain-HTTP address.
    #[arg(long, env = "WASMHOOK_HEALTH_LISTEN", default_value = "127.0.0.1:9090")]
    health_listen: SocketAddr,
    /// Once serving, write the addresses actually bound (JSON: listen,
    /// healthListen, pid) to this file; removed at shutdown. With port 0 in
    /// --listen/--health-listen, this is how a harness learns the ports.
    #[arg(long, env = "WASMHOOK_READY_FILE", value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Serving certificate chain (PEM) [default: a development certificate in --state-dir].
    #[arg(long, env = "WASMHOOK_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "WASMHOOK_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA bundle (PEM).
    #[arg(long, env = "WASMHOOK_CLIENT_CA", value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// Where development certificates and the sample review are kept
    /// [default: $XDG_STATE_HOME/wasmhook or ~/.local/state/wasmhook].
    #[arg(long, env = "WASMHOOK_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Compile cache [default: $XDG_CACHE_HOME/wasmhook or ~/.cache/wasmhook].
    #[arg(long, env = "WASMHOOK_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled policies on disk.
    #[arg(long, env = "WASMHOOK_NO_CACHE", conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Evaluations that may run at once (the size of the instance pool).
    #[arg(long, env = "WASMHOOK_MAX_CONCURRENT_EVALUATIONS", default_value_t = 64)]
    max_concurrent_evaluations: u32,
    /// Evaluations one policy may run at once [default: half of --max-concurrent-evaluations],
    /// so a policy that hangs under load cannot starve the others.
    #[arg(long, env = "WASMHOOK_MAX_CONCURRENT_PER_POLICY")]
    max_concurrent_per_policy: Option<u32>,
    /// Evaluations still running after a few milliseconds that may run at once
    /// [default: half the CPUs, at least 1]; the others wait without using CPU,
    /// so policies that loop until their timeout cannot starve quick ones.
    #[arg(long, env = "WASMHOOK_MAX_LONG_RUNNING_EVALUATIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_long_running_evaluations: Option<u32>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WASMHOOK_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Time allowed for a TLS handshake.
    #[arg(long, env = "WASMHOOK_HANDSHAKE_TIMEOUT", value_parser = crate::duration::parse, default_value = "10s")]
    handshake_timeout: Duration,
    /// Time allowed for request headers and body; also the keep-alive idle timeout.
    #[arg(long, env = "WASMHOOK_HEADER_READ_TIMEOUT", value_parser = crate::duration::parse, default_value = "30s")]
    header_read_timeout: Duration,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, env = "WASMHOOK_DRAIN_TIMEOUT", value_parser = crate::duration::parse, default_value = "25s")]
    drain_timeout: Duration,
    /// On SIGTERM, how long to keep serving (with /readyz answering 503)
    /// before the drain begins, so that Service endpoints and the API server
    /// stop sending reviews first — what a preStop sleep does, with no hook.
    /// A second SIGTERM or SIGINT ends the delay [default: none].
    #[arg(long, env = "WASMHOOK_SHUTDOWN_DELAY", value_parser = crate::duration::parse)]
    shutdown_delay: Option<Duration>,
    /// How often the certificate files are checked for rotation.
    #[arg(long, env = "WASMHOOK_TLS_RELOAD_INTERVAL", value_parser = crate::duration::parse, default_value = "10s")]
    tls_reload_interval: Duration,
    /// How often the policy set and module files are checked for changes.
    #[arg(long, env = "WASMHOOK_POLICY_RELOAD_INTERVAL", value_parser = crate::duration::parse, default_value = "10s")]
    policy_reload_interval: Duration,
    /// Reload the policy set only on SIGHUP, never by watching files.
    #[arg(long, env = "WASMHOOK_NO_POLICY_WATCH")]
    no_policy_watch: bool,
    /// Apply wasmhook's own webhook configurations by server-side apply at
    /// start-up, and again when the CA bundle or the policy set changes.
    #[arg(long, env = "WASMHOOK_REGISTER")]
    register: bool,
    /// The CA bundle (PEM) put in the webhook configurations' caBundle
    /// [default: the development CA, without --tls-cert].
    #[arg(long, env = "WASMHOOK_CA_BUNDLE", value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
    /// wasmhook's namespace, excluded from every webhook.
    #[arg(long, env = "WASMHOOK_NAMESPACE", default_value = crate::registration::DEFAULT_NAMESPACE)]
    namespace: String,
    /// wasmhook's Service (and the webhook configurations' name).
    #[arg(long, env = "WASMHOOK_SERVICE", default_value = crate::registration::DEFAULT_SERVICE)]
    service: String,
    /// The Service's port. (Not WASMHOOK_PORT: Kubernetes sets that in pods
    /// beside a Service named wasmhook.)
    #[arg(long, env = "WASMHOOK_WEBHOOK_PORT", default_value_t = crate::registration::DEFAULT_PORT)]
    service_port: u16,
    /// Kubeconfig for --register and for the watches of policies that declare
    /// `context:` [default: in-cluster, then KUBECONFIG or ~/.kube/config].
    #[arg(long, env = "WASMHOOK_KUBECONFIG", value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The ClusterRole that owns the registered webhook configurations (the
    /// one granting the registration): deleting it, as `kubectl delete -k`
    /// does, deletes them.
    #[arg(long, env = "WASMHOOK_REGISTER_OWNER", default_value = crate::registration::DEFAULT_OWNER, value_name = "CLUSTERROLE")]
    register_owner: String,
    /// Docker config.json with credentials for OCI registries (a mounted
    /// kubernetes.io/dockerconfigjson Secret); read at every (re)load.
    #[arg(long, env = "WASMHOOK_REGISTRY_CONFIG", value_name = "FILE")]
    registry_config: Option<PathBuf>,
    /// PEM certificates to trust for OCI registries, besides the system's.
    #[arg(long, env = "WASMHOOK_REGISTRY_CA", value_name = "FILE")]
    registry_ca: Option<PathBuf>,
    /// A registry (host or host:port) to pull from over plain HTTP. Repeatable.
    #[arg(
        long,
        env = "WASMHOOK_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    insecure_registry: Vec<String>,
    /// The bound of one pull, retries included.
    #[arg(long, env = "WASMHOOK_REGISTRY_TIMEOUT", value_parser = crate::duration::parse, default_value = "60s")]
    registry_timeout: Duration,
    /// The largest policy module pulled from a registry, in MiB.
    #[arg(long, env = "WASMHOOK_MAX_MODULE_SIZE_MIB", default_value_t = 128)]
    max_module_size_mib: u64,
    /// How long start-up keeps trying to reach the API server; also bounds each API call.
    #[arg(long, env = "WASMHOOK_REGISTER_TIMEOUT", value_parser = crate::duration::parse, default_value = "30s")]
    register_timeout: Duration,
}

/// Runs `wasmhook serve`: 0 after a graceful shutdown, 2 when it cannot start.
///
/// `evaluator` is [`Evaluator::Policies`] for `wasmhook serve`; the benchmark
/// baseline passes [`Evaluator::AllowWithoutPolicy`].
pub fn run(args: ServeArgs, evaluator: Evaluator, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(err, "error: cannot start the async runtime: {error}");
            return EXIT_USAGE;
        }
    };
    runtime.block_on(serve(args, evaluator, out, err))
}

async fn serve(args: ServeArgs, evaluator: Evaluator, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let ServeArgs {
        config,
        listen,
        health_listen,
        ready_file,
        tls_cert,
        tls_key,
        client_ca,
        state_dir,
        cache_dir,
        no_cache,
        max_concurrent_evaluations,
        max_concurrent_per_policy,
        max_long_running_evaluations,
        max_body_bytes,
        handshake_timeout,
        header_read_timeout,
        drain_timeout,
        shutdown_delay,
        tls_reload_interval,
        policy_reload_interval,
        no_policy_watch,
        register,
        ca_bundle,
        namespace,
        service,
        service_port,
        kubeconfig,
        register_owner,
        register_timeout,
        registry_config,
        registry_ca,
        insecure_registry,
        registry_timeout,
        max_module_size_mib,
    } = args;
    let state_dir = state_dir
        .or_else(super::default_state_dir)
        .unwrap_or_else(|| PathBuf::from(".wasmhook"));
    let (tls, dev_ca) = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => (TlsFiles { cert, key }, None),
        _ => {
            let sans = dev_sans(listen);
            match crate::tls::ensure_dev_certs(&state_dir.join("dev-tls"), &sans) {
                Ok(dev) => (dev.files, Some(dev.ca)),
                Err(error) => {
                    let _ = writeln!(err, "error: cannot create development certificates: {error}");
                    return EXIT_USAGE;
                }
            }
        }
    };
    let registration = match (register, ca_bundle.or_else(|| dev_ca.clone())) {
        (false, _) => None,
        (true, None) => {
            let _ = writeln!(
                err,
                "error: --register needs --ca-bundle (the CA the API server must trust)"
            );
            return EXIT_USAGE;
        }
        (true, Some(ca_bundle)) => Some(RegisterConfig {
            namespace,
            service,
            port: service_port,
            ca_bundle,
            kubeconfig: kubeconfig.clone(),
            timeout: register_timeout,
            owner: register_owner,
        }),
    };
    let policies = config.clone().map_or(PolicySource::BuiltinDefault, PolicySource::File);
    let server_config = ServerConfig {
        client_ca,
        tls_reload_interval,
        policy_reload_interval: (!no_policy_watch).then_some(policy_reload_interval),
        engine: EngineConfig {
            max_concurrent_evaluations,
            max_concurrent_per_policy,
            max_long_running_evaluations,
            cache_dir: if no_cache {
                None
            } else {
                cache_dir.or_else(super::default_cache_dir)
            },
            ..EngineConfig::default()
        },
        max_body_bytes,
        timeouts: ConnectionTimeouts {
            handshake: handshake_timeout,
            header_read: header_read_timeout,
            drain: drain_timeout,
        },
        registration,
        evaluator,
        context: ContextConfig {
            kubeconfig,
            timeout: register_timeout,
        },
        registry: RegistryConfig {
            docker_config: registry_config,
            ca_bundle: registry_ca,
            insecure: insecure_registry,
            timeout: Some(registry_timeout),
            // The engine's compile cache directory (--cache-dir), under oci/.
            cache_dir: None,
            max_module_bytes: Some(max_module_size_mib << 20),
        },
        ..ServerConfig::new(listen, health_listen, tls, policies)
    };
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            let _ = writeln!(err, "error: cannot install the signal handlers: {error}");
            return EXIT_USAGE;
        }
    };
    let server = match RunningServer::start(server_config).await {
        Ok(server) => server,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return EXIT_USAGE;
        }
    };
    if let Some(path) = &ready_file {
        let ready = ReadyFile {
            listen: server.addr,
            health_listen: server.health_addr,
            pid: std::process::id(),
        };
        if let Err(error) = ready.write(path) {
            let _ = writeln!(err, "error: {error}");
            server.shutdown().await;
            return EXIT_USAGE;
        }
    }
    if let Some(ca) = dev_ca {
        let _ = print_dev_hints(out, &server, &ca, &state_dir);
    }
    signals.serve_until_stopped(&server).await;
    if let Some(delay) = shutdown_delay {
        server.stop_being_ready();
        tracing::info!(?delay, "not ready; still serving until the shutdown delay has passed");
        signals.wait_for_stop_or(delay).await;
    }
    if let Some(path) = &ready_file
        && let Err(error) = ReadyFile::remove(path)
    {
        tracing::warn!(%error, "cannot remove the ready file");
    }
    server.shutdown().await;
    0
}

/// The signals `serve` handles. They are registered before the server binds:
/// a SIGTERM that arrives the moment the server is reachable must shut it
/// down gracefully, not kill it with the default action.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Serves until SIGTERM or SIGINT; reloads on SIGHUP.
    async fn serve_until_stopped(&mut self, server: &RunningServer) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => { tracing::info!("SIGTERM: shutting down gracefully"); return; }
                _ = self.interrupt.recv() => { tracing::info!("SIGINT: shutting down gracefully"); return; }
                _ = self.hangup.recv() => { tracing::info!("SIGHUP: reloading the policy set"); server.reload_policies().await; }
            }
        }
    }

    /// Waits `delay`, or less if SIGTERM or SIGINT arrives again.
    async fn wait_for_stop_or(&mut self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = self.terminate.recv() => tracing::info!("SIGTERM again: ending the shutdown delay"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT again: ending the shutdown delay"),
        }
    }
}

/// Names the development certificate must cover.
fn dev_sans(listen: SocketAddr) -> Vec<String> {
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let ip = listen.ip();
    if !ip.is_unspecified() && !sans.contains(&ip.to_string()) {
        sans.push(ip.to_string());
    }
    sans
}

/// Writes a sample review and prints how to try the server with curl.
fn print_dev_hints(out: &mut dyn Write, server: &RunningServer, ca: &Path, state_dir: &Path) -> std::io::Result<()> {
    let sample = state_dir.join("sample-review.json");
    std::fs::write(&sample, sample_review())?;
    let host = if server.addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        server.addr.ip().to_string()
    };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    writeln!(
        out,
        "wasmhook is serving {} on https://{host}:{}",
        server.policy_names().join(", "),
        server.addr.port()
    )?;
    writeln!(
        out,
        "health and metrics: http://{}/readyz  http://{}/metrics",
        server.health_addr, server.health_addr
    )?;
    writeln!(
        out,
        "development TLS (not for production; pass --tls-cert/--tls-key): CA {}",
        ca.display()
    )?;
    writeln!(out, "try it:")?;
    writeln!(
        out,
        "  curl --cacert {} -H 'Content-Type: application/json' --data @{} https://{host}:{}/mutate/headless-service",
        ca.display(),
        sample.display(),
        server.addr.port()
    )?;
    out.flush()
}

/// An AdmissionReview creating a Service that must become headless.
fn sample_review() -> String {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "demo-headless", "labels": {"app": "demo"}},
        "spec": {"selector": {"app": "demo"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    });
    let request = manifest::build_request(RequestSpec {
        object: service,
        old_object: None,
        operation: Operation::Create,
        default_namespace: "default".into(),
    })
    .expect("the sample is a valid object");
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    serde_json::to_string_pretty(&review).expect("JSON serializes")
}
