//! Self-registration (`wasmhook serve --register`): the server applies its own
//! webhook configurations, with the CA bundle it currently serves under, by
//! server-side apply — and applies them again when the CA bundle or the
//! policy set changes, so a rotated CA never leaves a stale `caBundle` behind
//! and a removed policy never leaves a webhook that calls a path that is gone.
//!
//! Registration is safe by construction (see deploy/README.md):
//!
//! - the configurations are applied only once wasmhook's Service has a ready
//!   endpoint ([`Registrar::service_is_ready`]): a first install whose pods
//!   never become ready, or that fails halfway, leaves no webhook behind that
//!   would refuse the cluster's writes;
//! - they are owned (`ownerReferences`) by the ClusterRole that grants the
//!   registration, which the same `kubectl apply -k` creates: `kubectl delete
//!   -k` deletes it, and Kubernetes' garbage collector then deletes the
//!   configurations — no webhook outlives the installation.
//!
//! Every call to the API server is bounded in time: without a reachable
//! cluster, or without the rights the registration needs, start-up fails
//! with a clear error instead of hanging.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams};

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
    /// The ClusterRole that owns the configurations (the one that grants
    /// this registration): deleting it deletes them.
    pub owner: String,
}

/// The default owner: deploy/base's ClusterRole for the registration.
pub const DEFAULT_OWNER: &str = "wasmhook-register";

/// The label by which EndpointSlices name their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

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
    /// The owning ClusterRole cannot be read.
    #[error(
        "cannot read ClusterRole {name:?} at {server}, which must own the webhook configurations \
         (--register-owner): {reason}"
    )]
    Owner {
        /// The ClusterRole's name.
        name: String,
        /// The API server's URL.
        server: String,
        /// What happened.
        reason: String,
    },
    /// The Service's EndpointSlices cannot be listed.
    #[error("cannot list the EndpointSlices of Service {namespace}/{service} at {server}: {reason}")]
    Endpoints {
        /// wasmhook's namespace.
        namespace: String,
        /// wasmhook's Service.
        service: String,
        /// The API server's URL.
        server: String,
        /// What happened.
        reason: String,
    },
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
    /// The owning ClusterRole, once read ([`Registrar::resolve_owner`]).
    owner: Mutex<Option<OwnerReference>>,
    /// What was last applied, to apply again only on a change.
    last_applied: Mutex<Option<(MutatingWebhookConfiguration, ValidatingWebhookConfiguration)>>,
}

impl Registrar {
    /// Builds a client from the kubeconfig (or the in-cluster environment).
    /// No request is made yet.
    pub async fn connect(config: RegisterConfig) -> Result<Self, RegisterError> {
        let mut kube_config = crate::kube_config::load(config.kubeconfig.as_deref())
            .await
            .map_err(RegisterError::Client)?;
        kube_config.connect_timeout = Some(config.timeout);
        kube_config.read_timeout = Some(config.timeout);
        kube_config.write_timeout = Some(config.timeout);
        let server = kube_config.cluster_url.to_string();
        let client = kube::Client::try_from(kube_config).map_err(|error| RegisterError::Client(error.to_string()))?;
        Ok(Self {
            client,
            server,
            config,
            owner: Mutex::new(None),
            last_applied: Mutex::new(None),
        })
    }

    /// Reads the owning ClusterRole, retrying with back-off until the
    /// start-up timeout: this is also where start-up learns that the API
    /// server is reachable and that the credentials are good.
    pub async fn resolve_owner(&self) -> Result<(), RegisterError> {
        let api: Api<ClusterRole> = Api::all(self.client.clone());
        let name = self.config.owner.as_str();
        let role = retry_until(self.config.timeout, || async {
            match tokio::time::timeout(self.config.timeout, api.get(name)).await {
                Ok(result) => result.map_err(|error| error.to_string()),
                Err(_) => Err(format!("no answer within {:?}", self.config.timeout)),
            }
        })
        .await
        .map_err(|reason| RegisterError::Owner {
            name: name.to_owned(),
            server: self.server.clone(),
            reason,
        })?;
        let uid = role.metadata.uid.ok_or_else(|| RegisterError::Owner {
            name: name.to_owned(),
            server: self.server.clone(),
            reason: "the API server returned it without a uid".into(),
        })?;
        *self.owner.lock().unwrap_or_else(|p| p.into_inner()) = Some(OwnerReference {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRole".into(),
            name: name.to_owned(),
            uid,
            ..OwnerReference::default()
        });
        Ok(())
    }

    /// Whether wasmhook's Service has at least one ready endpoint, so the API
    /// server can reach a wasmhook that answers. (An endpoint whose `ready`
    /// condition is unset counts as ready, as the API documents.)
    pub async fn service_is_ready(&self) -> Result<bool, RegisterError> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.config.namespace);
        let params = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={}", self.config.service));
        let failed = |reason: String| RegisterError::Endpoints {
            namespace: self.config.namespace.clone(),
            service: self.config.service.clone(),
            server: self.server.clone(),
            reason,
        };
        let slices = match tokio::time::timeout(self.config.timeout, api.list(&params)).await {
            Ok(Ok(slices)) => slices,
            Ok(Err(error)) => return Err(failed(error.to_string())),
            Err(_) => return Err(failed(format!("no answer within {:?}", self.config.timeout))),
        };
        Ok(slices.items.iter().flat_map(|slice| &slice.endpoints).any(|endpoint| {
            endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(true)
        }))
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

    /// Checks what can be checked before the Service is ready: the CA
    /// bundle and the target (namespace, service, port), so that a mistake
    /// in them fails start-up at once instead of after the first endpoint.
    pub fn check(&self, set: &PolicySet) -> Result<(), RegisterError> {
        self.desired(set).map(drop)
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
        let (mut mutating, mut validating) = WebhookConfigurations::build_complete(set, &target);
        let owner = self.owner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        mutating.metadata.owner_references = owner.clone().map(|owner| vec![owner]);
        validating.metadata.owner_references = owner.map(|owner| vec![owner]);
        Ok((mutating, validating))
    }
}

/// Calls `attempt` until it succeeds, pausing 200 ms, then twice as long each
/// time (at most 2 s), until `within` has passed; the error is the last
/// attempt's.
async fn retry_until<T, F, Fut>(within: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() + pause >= deadline => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "registration: retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}
