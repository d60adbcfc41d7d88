//! Policies from OCI registries: `module: oci://registry/repository:tag` (or
//! `@sha256:…`) in a policy set, `wasmhook push`, `wasmhook pull` and
//! `wasmhook sign`.
//!
//! A policy is a CNCF Wasm OCI artifact: an image manifest whose config has
//! the media type `application/vnd.wasm.config.v0+json` and whose one layer
//! is the component, `application/wasm` ([`artifact`]). Pulled artifacts are
//! kept on disk by digest ([`cache`]), so a restart with a pinned digest
//! starts without the registry, and a tag the registry cannot be asked about
//! falls back to the digest it last resolved to. A policy may require
//! signatures in cosign's keyed format ([`signature`]), verified on every
//! load, from the registry or from the cache.
//!
//! Everything here runs while policies are loaded, never on the review path.
//! The network calls are async ([`client`]); [`Registry`] runs them on a
//! runtime of its own so the loaders, which are blocking code, can call them.

pub mod artifact;
pub mod cache;
pub mod client;
pub mod credentials;
pub mod reference;
pub mod signature;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use reference::PolicyReference;
pub use signature::{SignatureRequirement, VerificationKey};

/// The largest module `pull` accepts unless configured otherwise: a Python
/// policy is ~20 MB, a JavaScript one a few MB.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 128 * 1024 * 1024;

/// Why a policy could not be pulled, pushed, signed or verified. Each text
/// names the reference (or the file) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Not an `oci://` (or `registry://`) reference.
    #[error("{reference:?} is not an OCI reference: {reason}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Docker config file with the registry credentials is unusable.
    #[error("registry credentials {}: {reason}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA bundle for private registries is unusable.
    #[error("registry CA bundle {}: {reason}", path.display())]
    CaBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The registry refused the credentials (401/403).
    #[error(
        "{reference}: the registry refused access ({reason}): check the credentials for {registry} in {credentials}"
    )]
    Unauthorized {
        /// The artifact.
        reference: String,
        /// The registry host.
        registry: String,
        /// Where the credentials came from.
        credentials: String,
        /// The registry's answer.
        reason: String,
    },
    /// The registry has no such artifact (or tag).
    #[error("{reference}: not found in the registry ({reason})")]
    NotFound {
        /// The artifact.
        reference: String,
        /// The registry's answer.
        reason: String,
    },
    /// The registry could not be reached (name lookup, connection, TLS).
    #[error("{reference}: cannot reach the registry: {reason}")]
    Unreachable {
        /// The artifact.
        reference: String,
        /// The client's error, with its causes.
        reason: String,
    },
    /// The registry did not answer in time.
    #[error("{reference}: the registry did not answer within {}s", timeout.as_secs_f64())]
    Timeout {
        /// The artifact.
        reference: String,
        /// The limit.
        timeout: Duration,
    },
    /// Any other failure reported by the registry.
    #[error("{reference}: {reason}")]
    Registry {
        /// The artifact.
        reference: String,
        /// The registry's or client's message.
        reason: String,
    },
    /// The artifact is not a wasmhook policy (media types, layers).
    #[error("{reference}: not a wasmhook policy artifact: {reason}")]
    NotAPolicy {
        /// The artifact.
        reference: String,
        /// What it is instead.
        reason: String,
    },
    /// The module is larger than the configured limit.
    #[error("{reference}: the module is {size} bytes, more than the limit of {limit} (--max-module-size)")]
    TooLarge {
        /// The artifact.
        reference: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Content does not have the digest it was addressed by.
    #[error("{reference}: digest mismatch: expected {expected}, the content has {actual}")]
    DigestMismatch {
        /// The artifact.
        reference: String,
        /// The digest asked for.
        expected: String,
        /// The content's.
        actual: String,
    },
    /// The signatures the policy requires are missing or invalid.
    #[error("{reference}: signature verification failed: {reason}")]
    Signature {
        /// The artifact, with its digest.
        reference: String,
        /// Which keys found no valid signature, and why.
        reason: String,
    },
    /// A key file is unusable.
    #[error("key {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The module file to push is unusable.
    #[error("{}: {reason}", path.display())]
    Module {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// How the server reaches registries: what operators configure with
/// `serve`'s `--registry-*` flags.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// A Docker `config.json` with credentials (`auths`), as a
    /// `kubernetes.io/dockerconfigjson` Secret mounts it.
    pub docker_config: Option<PathBuf>,
    /// PEM certificates trusted in addition to the platform's roots.
    pub ca_bundle: Option<PathBuf>,
    /// Registries (`host` or `host:port`) spoken to in plain HTTP.
    pub insecure: Vec<String>,
    /// The bound of one registry operation, retries included; `None`: 60 s.
    pub timeout: Option<Duration>,
    /// Where pulled artifacts are kept (`<dir>/oci`); `None`: not kept.
    pub cache_dir: Option<PathBuf>,
    /// The largest module accepted; `None`: [`DEFAULT_MAX_MODULE_BYTES`].
    pub max_module_bytes: Option<u64>,
}

/// A module pulled from a registry, checked.
#[derive(Debug, Clone)]
pub struct PulledModule {
    /// The component's bytes.
    pub wasm: Vec<u8>,
    /// The manifest digest the reference resolved to.
    pub digest: String,
    /// Where it came from.
    pub source: PullSource,
}

/// Where a pulled module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullSource {
    /// The registry (the blob itself may have been cached).
    Registry,
    /// The cache, for a pinned digest: the registry was not asked.
    Cache,
    /// The cache, for a tag the registry could not be asked about: the
    /// digest it last resolved to, which may since have moved.
    StaleTag,
}

impl PullSource {
    /// The metric label: `registry`, `cache` or `stale_tag`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registry => "registry",
            Self::Cache => "cache",
            Self::StaleTag => "stale_tag",
        }
    }
}

/// Told of every pull [`Registry::pull`] makes: where the module came from,
/// or `None` when the pull failed. The server counts them
/// (`wasmhook_registry_pulls_total`).
pub type PullObserver = std::sync::Arc<dyn Fn(&PolicyReference, Option<PullSource>) + Send + Sync>;

/// The registries, as the loaders and commands use them: blocking calls,
/// run on a runtime of this value's own.
pub struct Registry {
    config: RegistryConfig,
    observer: Option<PullObserver>,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Registries reached as `config` says. Nothing is read or connected
    /// until the first pull.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            observer: None,
            runtime: OnceLock::new(),
        }
    }

    /// The same registries, telling `observer` of every pull.
    pub fn with_observer(mut self, observer: PullObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Pulls the module `reference` names and checks it: media types, size,
    /// digests and, when `signatures` requires them, its signatures. A pinned
    /// digest found in the cache is not asked of the registry; a tag the
    /// registry cannot be reached for falls back to its cached resolution.
    /// Blocking; call it outside async code.
    pub fn pull(
        &self,
        reference: &PolicyReference,
        signatures: Option<&SignatureRequirement>,
    ) -> Result<PulledModule, OciError> {
        let pulled = self
            .client()
            .and_then(|client| self.block_on(client.pull(reference, signatures)));
        if let Some(observer) = &self.observer {
            observer(reference, pulled.as_ref().ok().map(|pulled| pulled.source));
        }
        pulled
    }

    /// Pushes `wasm` as a policy artifact; returns the manifest digest.
    pub fn push(&self, reference: &PolicyReference, artifact: &artifact::Artifact) -> Result<String, OciError> {
        let client = self.client()?;
        self.block_on(client.push(reference, artifact))
    }

    /// Signs the artifact `reference` names (resolving a tag) with `key`;
    /// returns the digest signed.
    pub fn sign(&self, reference: &PolicyReference, key: &signature::SigningKey) -> Result<String, OciError> {
        let client = self.client()?;
        self.block_on(client.sign(reference, key))
    }

    /// A client for one operation: the credentials and the CA bundle are
    /// read now, so a rotated Secret is used by the next load, and a fixed
    /// file by the next attempt.
    fn client(&self) -> Result<client::RegistryClient, OciError> {
        client::RegistryClient::new(&self.config)
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("wasmhook-registry")
                .enable_all()
                .build()
                .expect("a runtime for registry calls")
        });
        runtime.block_on(future)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the registry may be dropped in async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
