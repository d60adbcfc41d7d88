//! Self-registration (`wasmhook serve --register`): the server applies its own
//! webhook configurations, with the CA bundle it currently serves under, by
//! server-side apply — and applies them again when the CA bundle or the
//! policy set changes, so a rotated CA never leaves a stale `caBundle` behind
//! and a removed policy never leaves a webhook that calls a path that is gone.
//!
//! Every call to the API server is bounded in time: without a reachable
//! cluster, start-up fails with a clear error instead of hanging.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::{Api, Patch, PatchParams};

use super::{Trust, WebhookConfigurations, WebhookTarget};
use crate::config::PolicySet;

/// The field manager wasmhook applies as.
pub const FIELD_MANAGER: &str = "wasmhook";

/// Where to register, and with what.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// wasmhook's namespace.
    pub namespace: String,
    /// wasmhook's Service (and the configurations' name).
    pub service: String,
    /// The Service's port.
    pub port: u16,
    /// The CA bundle (PEM) the API server must trust: the CA of the serving
    /// certificate, such as the `ca.crt` of the mounted TLS Secret.
    pub ca_bundle: PathBuf,
    /// A kubeconfig file; `None` infers (in-cluster service account, then
    /// `KUBECONFIG` / `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// How long start-up keeps trying, and the bound on each call.
    pub timeout: Duration,
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// No usable cluster credentials.
    #[error("cannot configure a Kubernetes client: {0}")]
    Client(String),
    /// The CA bundle is unreadable or holds no certificate.
    #[error("CA bundle {path}: {reason}")]
    CaBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The target is invalid (namespace, service or port).
    #[error("{0}")]
    Target(String),
    /// The API server refused or could not be reached in time.
    #[error("cannot apply {kind} {name:?} at {server}: {reason}")]
    Apply {
        /// `MutatingWebhookConfiguration` or `ValidatingWebhookConfiguration`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The API server's URL.
        server: String,
        /// What happened.
        reason: String,
    },
}

/// Applies wasmhook's webhook configurations.
pub struct Registrar {
    client: kube::Client,
    server: String,
    config: RegisterConfig,
    /// What was last applied, to apply again only on a change.
    last_applied: Mutex<Option<(MutatingWebhookConfiguration, ValidatingWebhookConfiguration)>>,
}

impl Registrar {
    /// Builds a client from the kubeconfig (or the in-cluster environment).
    /// No request is made yet.
    pub async fn connect(config: RegisterConfig) -> Result<Self, RegisterError> {
        let client_error = |error: &dyn std::fmt::Display| RegisterError::Client(error.to_string());
        let mut kube_config = match &config.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .map_err(|error| RegisterError::Client(format!("{}: {error}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|error| client_error(&error))?
            }
            None => kube::Config::infer().await.map_err(|error| client_error(&error))?,
        };
        kube_config.connect_timeout = Some(config.timeout);
        kube_config.read_timeout = Some(config.timeout);
        kube_config.write_timeout = Some(config.timeout);
        let server = kube_config.cluster_url.to_string();
        let client = kube::Client::try_from(kube_config).map_err(|error| client_error(&error))?;
        Ok(Self {
            client,
            server,
            config,
            last_applied: Mutex::new(None),
        })
    }

    /// Applies the configurations for `set` unless they equal what was last
    /// applied. Returns whether anything was applied.
    pub async fn apply(&self, set: &PolicySet) -> Result<bool, RegisterError> {
        let desired = self.desired(set)?;
        if self.last_applied.lock().unwrap_or_else(|p| p.into_inner()).as_ref() == Some(&desired) {
            return Ok(false);
        }
        let (mutating, validating) = &desired;
        let name = self.config.service.as_str();
        self.apply_one("MutatingWebhookConfiguration", name, mutating).await?;
        self.apply_one("ValidatingWebhookConfiguration", name, validating)
            .await?;
        tracing::info!(server = %self.server, name = %name, "webhook configurations applied");
        *self.last_applied.lock().unwrap_or_else(|p| p.into_inner()) = Some(desired);
        Ok(true)
    }

    /// Server-side-applies one object, bounded by the timeout.
    async fn apply_one<K>(&self, kind: &'static str, name: &str, object: &K) -> Result<(), RegisterError>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let reason =
            match tokio::time::timeout(self.config.timeout, api.patch(name, &params, &Patch::Apply(object))).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {:?}", self.config.timeout),
            };
        Err(RegisterError::Apply {
            kind,
            name: name.to_owned(),
            server: self.server.clone(),
            reason,
        })
    }

    /// Applies, retrying with back-off until the start-up timeout; the error
    /// is the last attempt's.
    pub async fn apply_at_startup(&self, set: &PolicySet) -> Result<(), RegisterError> {
        let deadline = Instant::now() + self.config.timeout;
        let mut pause = Duration::from_millis(200);
        loop {
            match self.apply(set).await {
                Ok(_) => return Ok(()),
                Err(error @ (RegisterError::CaBundle { .. } | RegisterError::Target(_))) => return Err(error),
                Err(error) if Instant::now() + pause >= deadline => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "registration failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// The configurations to apply now: the current CA bundle file, the set.
    fn desired(
        &self,
        set: &PolicySet,
    ) -> Result<(MutatingWebhookConfiguration, ValidatingWebhookConfiguration), RegisterError> {
        let path = &self.config.ca_bundle;
        let pem = std::fs::read(path).map_err(|error| RegisterError::CaBundle {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        let trust = Trust::ca_bundle(&path.display().to_string(), pem).map_err(|error| RegisterError::CaBundle {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        let target = WebhookTarget::new(
            &self.config.namespace,
            &self.config.service,
            self.config.port,
            None,
            trust,
        )
        .map_err(|error| RegisterError::Target(error.to_string()))?;
        Ok(WebhookConfigurations::build_complete(set, &target))
    }
}
