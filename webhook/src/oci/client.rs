//! The registry operations, async: resolve, pull and check a policy; push
//! one; find, verify and write its signatures. Every operation is bounded
//! by the configured timeout, retries included; transient failures
//! (unreachable, 5xx, 429) are retried with back-off, refusals are not.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use rustls_pki_types::pem::PemObject;

use super::artifact::{self, Artifact, MANIFEST_MEDIA_TYPE};
use super::cache::OciCache;
use super::signature::{self, FoundSignature, SignatureRequirement, SigningKey};
use super::{
    DEFAULT_MAX_MODULE_BYTES, OciError, PolicyReference, PullSource, PulledModule, RegistryConfig, credentials,
};
use crate::error_chain::error_chain;

/// The default bound of one operation.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts for a transient failure, and the pause before each retry.
const BACKOFF: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];
/// The largest signature payload read (cosign's are ~250 bytes).
const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;
/// The largest manifest accepted.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// One registry client, built for one load or command: credentials and the
/// CA bundle are read when it is built, so a rotated Secret is used by the
/// next load.
pub struct RegistryClient {
    client: Client,
    config: RegistryConfig,
    cache: OciCache,
}

/// What an attempt's failure means for the operation.
enum Failure {
    /// Worth another attempt.
    Transient(OciError),
    /// Final.
    Fatal(OciError),
}

impl RegistryClient {
    /// A client as `config` says.
    pub fn new(config: &RegistryConfig) -> Result<Self, OciError> {
        // reqwest is built without a provider of its own and takes the
        // process default: make it ring, the graph's only one (a no-op when
        // the binary has installed it already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut extra_root_certificates = Vec::new();
        if let Some(path) = &config.ca_bundle {
            let invalid = |reason: String| OciError::CaBundle {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|error| invalid(error.to_string()))?;
            // The client accepts any bytes here; check that they are certificates.
            let certificates: Vec<_> = <rustls_pki_types::CertificateDer as PemObject>::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|error| invalid(format!("not PEM certificates: {error}")))?;
            if certificates.is_empty() {
                return Err(invalid("holds no PEM certificate".to_owned()));
            }
            extra_root_certificates.extend(certificates.into_iter().map(|der| Certificate {
                encoding: CertificateEncoding::Der,
                data: der.to_vec(),
            }));
        }
        let protocol = if config.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(config.insecure.clone())
        };
        let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let client = Client::try_from(ClientConfig {
            protocol,
            extra_root_certificates,
            connect_timeout: Some(timeout.min(Duration::from_secs(10))),
            read_timeout: Some(timeout),
            platform_resolver: None,
            user_agent: concat!("wasmhook/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        })
        .map_err(|error| OciError::Registry {
            reference: "registry client".to_owned(),
            reason: error.to_string(),
        })?;
        Ok(Self {
            client,
            config: config.clone(),
            cache: OciCache::new(config.cache_dir.as_deref()),
        })
    }

    fn auth(&self, reference: &PolicyReference) -> Result<RegistryAuth, OciError> {
        credentials::for_registry(self.config.docker_config.as_deref(), reference.registry())
    }

    fn credentials_source(&self) -> String {
        self.config.docker_config.as_ref().map_or_else(
            || "no credentials file (--registry-config)".to_owned(),
            |path| path.display().to_string(),
        )
    }

    fn max_bytes(&self) -> u64 {
        self.config.max_module_bytes.unwrap_or(DEFAULT_MAX_MODULE_BYTES)
    }

    /// Pulls and checks the module (see [`super::Registry::pull`]).
    pub async fn pull(
        &self,
        reference: &PolicyReference,
        signatures: Option<&SignatureRequirement>,
    ) -> Result<PulledModule, OciError> {
        // A pinned digest in the cache needs no registry.
        if let Some(digest) = reference.digest()
            && let Some(cached) = self.cache.artifact(digest, self.max_bytes())
            && let Some(found) = signatures.map_or(Some(Vec::new()), |_| self.cache.signatures(digest))
            && verify_signatures(reference, digest, &found, signatures).is_ok()
        {
            return Ok(PulledModule {
                wasm: cached.wasm,
                digest: digest.to_owned(),
                source: PullSource::Cache,
            });
        }
        match self
            .bounded(reference, self.pull_from_registry(reference, signatures))
            .await
        {
            Err(error @ (OciError::Unreachable { .. } | OciError::Timeout { .. })) if reference.digest().is_none() => {
                self.pull_tag_from_cache(reference, signatures, error)
            }
            result => result,
        }
    }

    /// A tag's last resolution, when the registry cannot be asked: the
    /// server starts with what it last served instead of not at all.
    fn pull_tag_from_cache(
        &self,
        reference: &PolicyReference,
        signatures: Option<&SignatureRequirement>,
        error: OciError,
    ) -> Result<PulledModule, OciError> {
        let tag = reference.to_string();
        let Some(digest) = self.cache.tag(&tag) else {
            return Err(error);
        };
        let Some(cached) = self.cache.artifact(&digest, self.max_bytes()) else {
            return Err(error);
        };
        if signatures.is_some() {
            let found = self.cache.signatures(&digest).unwrap_or_default();
            verify_signatures(reference, &digest, &found, signatures)?;
        }
        tracing::warn!(
            reference = %tag,
            %digest,
            %error,
            "registry unreachable; using the digest this tag last resolved to, from the cache"
        );
        Ok(PulledModule {
            wasm: cached.wasm,
            digest,
            source: PullSource::StaleTag,
        })
    }

    async fn pull_from_registry(
        &self,
        reference: &PolicyReference,
        signatures: Option<&SignatureRequirement>,
    ) -> Result<PulledModule, OciError> {
        let auth = self.auth(reference)?;
        let (raw, digest) = self.pull_manifest(reference, &auth).await?;
        let (_, layer) = artifact::read_manifest(&reference.to_string(), &raw, self.max_bytes())?;
        let pinned = reference.at_digest(&digest);
        if signatures.is_some() {
            let found = self.find_signatures(&pinned, &digest, &auth).await?;
            self.cache.store_signatures(&digest, &found);
            verify_signatures(reference, &digest, &found, signatures)?;
        }
        let wasm = match self.cache.artifact(&digest, self.max_bytes()) {
            Some(cached) => cached.wasm,
            None => {
                let wasm = self.pull_blob(&pinned, &layer, self.max_bytes(), &auth).await?;
                self.cache.store_artifact(&digest, &raw, &wasm);
                wasm
            }
        };
        if reference.digest().is_none() {
            self.cache.store_tag(&reference.to_string(), &digest);
        }
        Ok(PulledModule {
            wasm,
            digest,
            source: PullSource::Registry,
        })
    }

    /// The manifest `reference` names, and its digest (checked against a
    /// pinned one).
    async fn pull_manifest(
        &self,
        reference: &PolicyReference,
        auth: &RegistryAuth,
    ) -> Result<(Vec<u8>, String), OciError> {
        let (raw, _) = self
            .retrying(reference, || {
                self.client
                    .pull_manifest_raw(reference.inner(), auth, &[MANIFEST_MEDIA_TYPE])
            })
            .await?;
        if raw.len() > MAX_MANIFEST_BYTES {
            return Err(OciError::NotAPolicy {
                reference: reference.to_string(),
                reason: format!("its manifest is {} bytes", raw.len()),
            });
        }
        let digest = artifact::sha256_digest(&raw);
        if let Some(pinned) = reference.digest()
            && pinned != digest
        {
            return Err(OciError::DigestMismatch {
                reference: reference.to_string(),
                expected: pinned.to_owned(),
                actual: digest,
            });
        }
        Ok((raw.to_vec(), digest))
    }

    /// A blob, at most `limit` bytes, checked against its digest.
    async fn pull_blob(
        &self,
        reference: &PolicyReference,
        blob: &OciDescriptor,
        limit: u64,
        auth: &RegistryAuth,
    ) -> Result<Vec<u8>, OciError> {
        self.client.store_auth_if_needed(reference.registry(), auth).await;
        let too_large = |size: u64| OciError::TooLarge {
            reference: reference.to_string(),
            size,
            limit,
        };
        let mut stream = self
            .retrying(reference, || self.client.pull_blob_stream(reference.inner(), blob))
            .await?;
        if let Some(length) = stream.content_length
            && length > limit
        {
            return Err(too_large(length));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0).min(limit as usize));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| blob_read_error(reference, blob, error))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > limit {
                return Err(too_large(bytes.len() as u64));
            }
        }
        let actual = artifact::sha256_digest(&bytes);
        if actual != blob.digest {
            return Err(OciError::DigestMismatch {
                reference: format!("{reference} (blob)"),
                expected: blob.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The signatures stored for `digest` (none when it has no `.sig` tag).
    async fn find_signatures(
        &self,
        pinned: &PolicyReference,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<Vec<FoundSignature>, OciError> {
        let signatures = pinned.at_tag(&signature::signature_tag(digest));
        let manifest = match self.signature_manifest(&signatures, auth).await? {
            Some(manifest) => manifest,
            None => return Ok(Vec::new()),
        };
        let mut found = Vec::new();
        for layer in &manifest.layers {
            let Some(annotation) = layer
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(signature::SIGNATURE_ANNOTATION))
            else {
                continue;
            };
            if layer.media_type != signature::SIMPLE_SIGNING_MEDIA_TYPE {
                continue;
            }
            let payload = self.pull_blob(&signatures, layer, MAX_PAYLOAD_BYTES, auth).await?;
            found.push(FoundSignature {
                payload: base64::engine::general_purpose::STANDARD.encode(payload),
                signature: annotation.clone(),
            });
        }
        Ok(found)
    }

    /// The signature manifest at `signatures` (a `.sig` tag), if any.
    async fn signature_manifest(
        &self,
        signatures: &PolicyReference,
        auth: &RegistryAuth,
    ) -> Result<Option<OciImageManifest>, OciError> {
        let raw = match self.pull_manifest(signatures, auth).await {
            Ok((raw, _)) => raw,
            Err(OciError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|error| OciError::Registry {
                reference: signatures.to_string(),
                reason: format!("the signature manifest is not an OCI image manifest: {error}"),
            })
    }

    /// Pushes `artifact` to `reference` (a tag); returns the manifest digest.
    pub async fn push(&self, reference: &PolicyReference, artifact: &Artifact) -> Result<String, OciError> {
        self.bounded(reference, self.push_unbounded(reference, artifact)).await
    }

    async fn push_unbounded(&self, reference: &PolicyReference, artifact: &Artifact) -> Result<String, OciError> {
        let auth = self.auth(reference)?;
        self.retrying(reference, || {
            self.client.auth(reference.inner(), &auth, RegistryOperation::Push)
        })
        .await?;
        let encoded = artifact.encode();
        let layer = &encoded.parsed.layers[0];
        self.push_blob(reference, &artifact.wasm, &layer.digest).await?;
        self.push_blob(reference, &encoded.config, &encoded.parsed.config.digest)
            .await?;
        self.push_manifest(reference, &encoded.manifest).await?;
        Ok(artifact::sha256_digest(&encoded.manifest))
    }

    async fn push_blob(&self, reference: &PolicyReference, bytes: &[u8], digest: &str) -> Result<(), OciError> {
        let bytes = bytes::Bytes::copy_from_slice(bytes);
        self.retrying(reference, || {
            self.client.push_blob(reference.inner(), bytes.clone(), digest)
        })
        .await
        .map(drop)
    }

    async fn push_manifest(&self, reference: &PolicyReference, manifest: &[u8]) -> Result<(), OciError> {
        let manifest = bytes::Bytes::copy_from_slice(manifest);
        let content_type = reqwest_header(MANIFEST_MEDIA_TYPE);
        self.retrying(reference, || {
            self.client
                .push_manifest_raw(reference.inner(), manifest.clone(), content_type.clone())
        })
        .await
        .map(drop)
    }

    /// Signs the artifact `reference` names with `key`, adding a layer to its
    /// `.sig` manifest as cosign does; returns the digest signed.
    pub async fn sign(&self, reference: &PolicyReference, key: &SigningKey) -> Result<String, OciError> {
        self.bounded(reference, self.sign_unbounded(reference, key)).await
    }

    async fn sign_unbounded(&self, reference: &PolicyReference, key: &SigningKey) -> Result<String, OciError> {
        let auth = self.auth(reference)?;
        let (raw, digest) = self.pull_manifest(reference, &auth).await?;
        artifact::read_manifest(&reference.to_string(), &raw, u64::MAX)?;
        let signatures = reference.at_tag(&signature::signature_tag(&digest));
        let existing = self.signature_manifest(&signatures, &auth).await?;
        self.retrying(&signatures, || {
            self.client.auth(signatures.inner(), &auth, RegistryOperation::Push)
        })
        .await?;

        let payload = signature::payload(&reference.repository_path(), &digest);
        let signed = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
        let payload_digest = artifact::sha256_digest(&payload);
        self.push_blob(&signatures, &payload, &payload_digest).await?;
        let mut layers = existing.map(|manifest| manifest.layers).unwrap_or_default();
        layers.push(OciDescriptor {
            media_type: signature::SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
            digest: payload_digest,
            size: payload.len() as i64,
            annotations: Some(BTreeMap::from([(signature::SIGNATURE_ANNOTATION.to_owned(), signed)])),
            ..OciDescriptor::default()
        });
        // cosign's config: an image config whose layers are the payloads.
        let diff_ids: Vec<&str> = layers.iter().map(|layer| layer.digest.as_str()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }))
        .expect("the config serializes");
        let config_digest = artifact::sha256_digest(&config);
        self.push_blob(&signatures, &config, &config_digest).await?;
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            config: OciDescriptor {
                media_type: signature::SIGNATURE_CONFIG_MEDIA_TYPE.to_owned(),
                digest: config_digest,
                size: config.len() as i64,
                ..OciDescriptor::default()
            },
            layers,
            artifact_type: None,
            annotations: None,
            subject: None,
        };
        let manifest = serde_json::to_vec(&manifest).expect("the manifest serializes");
        self.push_manifest(&signatures, &manifest).await?;
        Ok(digest)
    }

    /// `operation` bounded by the configured timeout.
    async fn bounded<T>(
        &self,
        reference: &PolicyReference,
        operation: impl Future<Output = Result<T, OciError>>,
    ) -> Result<T, OciError> {
        let timeout = self.config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        tokio::time::timeout(timeout, operation).await.unwrap_or_else(|_| {
            Err(OciError::Timeout {
                reference: reference.to_string(),
                timeout,
            })
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or has been retried
    /// for every back-off step.
    async fn retrying<T, F, Fut>(&self, reference: &PolicyReference, mut attempt: F) -> Result<T, OciError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let mut pauses = BACKOFF.iter();
        loop {
            match classify(reference, self, attempt().await) {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Transient(error)) => match pauses.next() {
                    Some(pause) => {
                        tracing::debug!(reference = %reference, %error, "registry call failed; retrying");
                        tokio::time::sleep(*pause).await;
                    }
                    None => return Err(error),
                },
            }
        }
    }
}

/// A failure while a blob streams in: the client's digest check at its end
/// (the registry served other bytes than it announced), or the connection.
fn blob_read_error(reference: &PolicyReference, blob: &OciDescriptor, error: std::io::Error) -> OciError {
    let digest_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>());
    if let Some(oci_client::errors::DigestError::VerificationError { expected, actual }) = digest_error {
        return OciError::DigestMismatch {
            reference: format!("{reference} (blob {})", blob.digest),
            expected: expected.clone(),
            actual: actual.clone(),
        };
    }
    OciError::Unreachable {
        reference: reference.to_string(),
        reason: format!("reading the blob {}: {error}", blob.digest),
    }
}

fn reqwest_header(value: &'static str) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_static(value)
}

/// `found` checked against `requirement` (nothing to check without one).
fn verify_signatures(
    reference: &PolicyReference,
    digest: &str,
    found: &[FoundSignature],
    requirement: Option<&SignatureRequirement>,
) -> Result<(), OciError> {
    let Some(requirement) = requirement else {
        return Ok(());
    };
    signature::verify(digest, found, requirement).map_err(|reason| OciError::Signature {
        reference: reference.at_digest(digest).to_string(),
        reason,
    })
}

/// What a client error means: refusals are final, an unreachable or
/// overloaded registry is worth another attempt.
fn classify<T>(
    reference: &PolicyReference,
    client: &RegistryClient,
    result: Result<T, OciDistributionError>,
) -> Result<T, Failure> {
    let error = match result {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let name = reference.to_string();
    let unauthorized = |reason: String| {
        Failure::Fatal(OciError::Unauthorized {
            reference: name.clone(),
            registry: reference.registry().to_owned(),
            credentials: client.credentials_source(),
            reason,
        })
    };
    let not_found = |reason: String| {
        Failure::Fatal(OciError::NotFound {
            reference: name.clone(),
            reason,
        })
    };
    let other = |reason: String| OciError::Registry {
        reference: name.clone(),
        reason,
    };
    Err(match error {
        OciDistributionError::AuthenticationFailure(reason) => unauthorized(reason),
        OciDistributionError::UnauthorizedError { url } => unauthorized(format!("401 from {url}")),
        OciDistributionError::ImageManifestNotFoundError(reason) => not_found(reason),
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|error| &error.code).collect();
            let reason = format!("{envelope} ({url})");
            if codes
                .iter()
                .any(|code| matches!(code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized(reason)
            } else if codes.iter().any(|code| {
                matches!(
                    code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                not_found(reason)
            } else if codes.iter().any(|code| matches!(code, OciErrorCode::Toomanyrequests)) {
                Failure::Transient(other(reason))
            } else {
                Failure::Fatal(other(reason))
            }
        }
        OciDistributionError::ServerError { code, url, message } => {
            let reason = format!("HTTP {code} from {url}: {message}");
            match code {
                401 | 403 => unauthorized(reason),
                404 => not_found(reason),
                429 | 500..=599 => Failure::Transient(other(reason)),
                _ => Failure::Fatal(other(reason)),
            }
        }
        OciDistributionError::DigestError(error) => Failure::Fatal(OciError::DigestMismatch {
            reference: name.clone(),
            expected: "the digest the registry announced".to_owned(),
            actual: error.to_string(),
        }),
        OciDistributionError::RequestError(error) => {
            let reason = error_chain(&error);
            if error.is_timeout() || error.is_connect() {
                Failure::Transient(OciError::Unreachable {
                    reference: name.clone(),
                    reason,
                })
            } else {
                Failure::Fatal(OciError::Unreachable {
                    reference: name.clone(),
                    reason,
                })
            }
        }
        other_error => Failure::Fatal(other(other_error.to_string())),
    })
}
