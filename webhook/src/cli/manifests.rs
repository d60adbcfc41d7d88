//! `wasmhook manifests`: print the webhook configurations that register a
//! policy set with the API server — or the RBAC its context watches
//! (`--rbac`) or `wasmhook audit` (`--audit-rbac`) need, or the
//! ValidatingAdmissionPolicies that back the built-ins up while wasmhook is
//! down (`--backstop`) — so they are generated from the same file the server
//! reads instead of being kept in step with it by hand.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::EXIT_USAGE;
use crate::backstop::{ApiVersion, Backstop, BackstopError};
use crate::config::PolicySet;
use crate::engine::EngineConfig;
use crate::registration::{
    DEFAULT_NAMESPACE, DEFAULT_PORT, DEFAULT_SERVICE, RegistrationError, Trust, WebhookConfigurations, WebhookTarget,
};
use crate::tls::TlsError;

/// Arguments of `wasmhook manifests`. The flags that describe the deployment
/// have environment-variable twins (the Service port's is
/// `WASMHOOK_WEBHOOK_PORT`: Kubernetes itself sets `WASMHOOK_PORT` and
/// `WASMHOOK_SERVICE_PORT` in pods beside a Service named `wasmhook`).
#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// Policy-set file [default: the built-in policies with their defaults, as `serve` without --config].
    #[arg(long, env = "WASMHOOK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The namespace wasmhook runs in (always excluded from every webhook, with kube-system).
    #[arg(long, env = "WASMHOOK_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// wasmhook's Service; also the name of the webhook configurations.
    #[arg(long, env = "WASMHOOK_SERVICE", default_value = DEFAULT_SERVICE)]
    service: String,
    /// The Service's port.
    #[arg(long, env = "WASMHOOK_WEBHOOK_PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// The CA certificate(s) that issued the serving certificate (PEM), e.g. ca.pem from `wasmhook certs`.
    #[arg(
        long,
        env = "WASMHOOK_CA_BUNDLE",
        value_name = "FILE",
        conflicts_with = "cert_manager"
    )]
    ca_bundle: Option<PathBuf>,
    /// Let cert-manager inject the caBundle from this Certificate.
    #[arg(long, env = "WASMHOOK_CERT_MANAGER", value_name = "NAMESPACE/CERTIFICATE")]
    cert_manager: Option<String>,
    /// Leave caBundle empty: wasmhook's pods fill it in (`serve --register --ca-bundle FILE`).
    #[arg(long, conflicts_with_all = ["ca_bundle", "cert_manager", "url"])]
    self_registered: bool,
    /// Call wasmhook at this https:// base URL instead of through the Service (e.g. out of the cluster);
    /// without --ca-bundle or --cert-manager its certificate must be publicly trusted.
    #[arg(long, env = "WASMHOOK_URL", value_name = "URL")]
    url: Option<String>,
    /// Print the RBAC the context watches need instead: a ClusterRole with
    /// get, list and watch of exactly the kinds the policies declare under
    /// `context:`, bound to the ServiceAccount named --service in --namespace.
    #[arg(long, conflicts_with_all = ["ca_bundle", "cert_manager", "self_registered", "url"])]
    rbac: bool,
    /// Print the RBAC `wasmhook audit` needs instead: a ClusterRole `<service>-audit`
    /// with get and list of every resource the policies' rules select, of the kinds
    /// they declare under `context:` and of namespaces, and get, list, create, patch
    /// and delete of wgpolicyk8s.io PolicyReports and ClusterPolicyReports, bound to
    /// the ServiceAccount `<service>-audit` in --namespace.
    #[arg(long, conflicts_with_all = ["ca_bundle", "cert_manager", "self_registered", "url", "rbac"])]
    audit_rbac: bool,
    /// Print the backstop instead: for each built-in policy whose rules CEL can express, a
    /// ValidatingAdmissionPolicy and its binding that the API server evaluates itself, so the
    /// policy's denials hold while wasmhook does not answer (named `<service>-<policy>`;
    /// --namespace is excluded, as from every webhook).
    #[arg(long, conflicts_with_all = ["ca_bundle", "cert_manager", "self_registered", "url", "rbac", "audit_rbac"])]
    backstop: bool,
    /// The API version of the backstop: v1 for Kubernetes 1.30 and later, v1beta1 for 1.28 and
    /// 1.29 (where the ValidatingAdmissionPolicy feature gate and the v1beta1 API must be enabled).
    #[arg(long, value_enum, default_value_t = BackstopApiVersion::V1, requires = "backstop")]
    backstop_api_version: BackstopApiVersion,
    /// Write the manifests to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs `wasmhook manifests`: 0 when the manifests were written, 2 on a usage
/// or configuration error.
pub fn run(args: ManifestsArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let output = args.output.clone();
    let yaml = match manifests(args) {
        Ok(yaml) => yaml,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return EXIT_USAGE;
        }
    };
    let written = match &output {
        Some(path) => std::fs::write(path, &yaml).map_err(|error| format!("cannot write {}: {error}", path.display())),
        None => out
            .write_all(yaml.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|error| format!("cannot write the output: {error}")),
    };
    match written {
        Ok(()) => 0,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_USAGE
        }
    }
}

/// The YAML stream, or what is wrong.
fn manifests(args: ManifestsArgs) -> Result<String, String> {
    let ManifestsArgs {
        config,
        namespace,
        service,
        port,
        ca_bundle,
        cert_manager,
        self_registered,
        url,
        rbac,
        audit_rbac,
        backstop,
        backstop_api_version,
        output: _,
    } = args;
    if backstop {
        let (set, source) = read_set(config.as_ref())?;
        return Backstop::build(&set, &namespace, &service)
            .and_then(|backstop| backstop.to_yaml(&source, backstop_api_version.into()))
            .map_err(|error| match error {
                BackstopError::Registration(error) => with_flag(&error),
                error => error.to_string(),
            });
    }
    if rbac || audit_rbac {
        let (set, source) = read_set(config.as_ref())?;
        let yaml = if rbac {
            crate::registration::context_rbac_yaml(&set, &namespace, &service, &source)
        } else {
            crate::registration::audit_rbac_yaml(&set, &namespace, &service, &source)
        };
        return yaml.map_err(|error| error.to_string());
    }
    let trust = match (ca_bundle, cert_manager) {
        _ if self_registered => Trust::SelfRegistered,
        (Some(path), _) => {
            let pem = std::fs::read(&path)
                .map_err(|error| format!("--ca-bundle: cannot read {}: {error}", path.display()))?;
            Trust::ca_bundle(&path.display().to_string(), pem).map_err(|error| with_flag(&error))?
        }
        (None, Some(reference)) => Trust::cert_manager(&reference).map_err(|error| with_flag(&error))?,
        (None, None) if url.is_some() => Trust::SystemRoots,
        (None, None) => {
            return Err(
                "the API server must be able to verify wasmhook's certificate: pass --ca-bundle FILE \
                        (e.g. ca.pem from `wasmhook certs`), --cert-manager NAMESPACE/CERTIFICATE (cert-manager \
                        injects the CA), --self-registered (the pods fill it in with `serve --register`), or --url \
                        URL for a server whose certificate a public CA issued"
                    .to_owned(),
            );
        }
    };
    let target =
        WebhookTarget::new(&namespace, &service, port, url.as_deref(), trust).map_err(|error| with_flag(&error))?;
    let (set, source) = read_set(config.as_ref())?;
    WebhookConfigurations::build(&set, &target)
        .to_yaml(&source)
        .map_err(|error| error.to_string())
}

/// `--backstop-api-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackstopApiVersion {
    /// admissionregistration.k8s.io/v1 (Kubernetes 1.30 and later).
    V1,
    /// admissionregistration.k8s.io/v1beta1 (Kubernetes 1.28 and 1.29).
    V1beta1,
}

impl From<BackstopApiVersion> for ApiVersion {
    fn from(version: BackstopApiVersion) -> Self {
        match version {
            BackstopApiVersion::V1 => Self::V1,
            BackstopApiVersion::V1beta1 => Self::V1beta1,
        }
    }
}

/// The message of `error`, prefixed with the command-line flag whose value
/// is wrong (shared with `wasmhook certs`).
pub(super) fn with_flag(error: &RegistrationError) -> String {
    let flag = match error {
        RegistrationError::InvalidNamespace { .. } => Some("--namespace"),
        RegistrationError::InvalidService { .. } => Some("--service"),
        RegistrationError::InvalidPort => Some("--port"),
        RegistrationError::InvalidUrl { .. } => Some("--url"),
        RegistrationError::CaBundle { .. } => Some("--ca-bundle"),
        RegistrationError::CertManagerRef { .. } => Some("--cert-manager"),
        RegistrationError::Certificate(TlsError::InvalidRequest { .. }) => Some("--days"),
        _ => None,
    };
    match flag {
        Some(flag) => format!("{flag}: {error}"),
        None => error.to_string(),
    }
}

/// The policy set and a name for it in the output's header.
fn read_set(config: Option<&PathBuf>) -> Result<(PolicySet, String), String> {
    Ok(match config {
        Some(path) => (
            PolicySet::from_file(path, EngineConfig::default().max_memory_limit).map_err(|error| error.to_string())?,
            path.display().to_string(),
        ),
        None => (PolicySet::builtin_default(), "the built-in policies".to_owned()),
    })
}
