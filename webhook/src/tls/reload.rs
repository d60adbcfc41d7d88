//! A serving certificate that follows its files, so certificate rotation
//! (cert-manager renewing a Secret, an operator replacing one) needs no
//! restart and drops no connection.
//!
//! Kubernetes updates a Secret volume by writing the new files into a fresh
//! `..<timestamp>` directory and atomically renaming a `..data` symlink to
//! point at it; `tls.crt` and `tls.key` are symlinks through `..data`. The
//! files themselves are never written, so a watch on them sees nothing.
//! [`ReloadingCert::watch`] therefore polls: it re-reads both files and
//! compares their SHA-256 with what is being served. Reading both files is
//! not atomic, so a poll can straddle a swap and see a certificate with the
//! other pair's key; that pair fails validation, the old one stays in
//! service, and the next poll sees the consistent new pair.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsError, TlsFiles, crypto_provider, read, read_certs};
use crate::engine::sha256_hex;

/// What a reload attempt by [`ReloadingCert::watch`] did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new, valid pair was swapped in.
    Swapped,
    /// The files changed but the new pair was rejected; the old one serves on.
    Rejected,
}

/// A rustls [`ResolvesServerCert`] that always serves the current
/// certificate and can swap in a new one from the same files.
pub struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Digest of the files behind `current`; the lock also serialises reloads.
    digest: Mutex<String>,
    generation: AtomicU64,
}

impl ReloadingCert {
    /// Loads and validates the pair: at least one certificate, a private key
    /// in PKCS#8, PKCS#1 or SEC1 form, and the key must belong to the leaf
    /// certificate.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = crypto_provider();
        let (cert_pem, key_pem) = (read(&files.cert)?, read(&files.key)?);
        let key = certified_key(&files, &cert_pem, &key_pem, &provider)?;
        Ok(Arc::new(Self {
            digest: Mutex::new(digest(&cert_pem, &key_pem)),
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            generation: AtomicU64::new(0),
        }))
    }

    /// Re-reads the files. If their contents changed and the new pair is
    /// valid, swaps it in and returns `Ok(true)`; unchanged contents give
    /// `Ok(false)`; an invalid new pair is an error and the old pair stays in
    /// service.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (read(&self.files.cert)?, read(&self.files.key)?);
        let new_digest = digest(&cert_pem, &key_pem);
        let mut served = self.digest.lock().unwrap_or_else(PoisonError::into_inner);
        if *served == new_digest {
            return Ok(false);
        }
        let key = certified_key(&self.files, &cert_pem, &key_pem, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        *served = new_digest;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// Polls the files every `interval` until `shutdown` resolves, logging
    /// swaps at info and broken pairs at warn (once per distinct error; the
    /// old pair stays in service).
    ///
    /// Polling rather than a file watch because Kubernetes Secret volumes
    /// update by atomically swapping a `..data` symlink in the directory,
    /// which a watch on the files misses (see the module documentation).
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
        on_reload: impl Fn(ReloadOutcome) + Send,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // The first tick is immediate; the pair was just loaded.
        tokio::pin!(shutdown);
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            let this = Arc::clone(&self);
            // Blocking file reads stay off the async workers.
            let outcome = tokio::task::spawn_blocking(move || this.reload()).await;
            let error = match outcome {
                Ok(Ok(changed)) => {
                    if changed {
                        tracing::info!(
                            cert = %self.files.cert.display(),
                            generation = self.generation(),
                            "TLS certificate reloaded"
                        );
                        on_reload(ReloadOutcome::Swapped);
                    }
                    last_error = None;
                    continue;
                }
                Ok(Err(error)) => error.to_string(),
                Err(join_error) => format!("the reload task failed: {join_error}"),
            };
            if last_error.as_ref() != Some(&error) {
                on_reload(ReloadOutcome::Rejected);
                tracing::warn!(%error, "cannot reload the TLS certificate; still serving the previous one");
                last_error = Some(error);
            }
        }
    }

    /// How many times a new pair has been swapped in.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The leaf certificate currently served.
    pub fn current_leaf(&self) -> CertificateDer<'static> {
        self.current().cert[0].clone()
    }

    /// The certificate chain and key currently served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The files this certificate is loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Identifies a pair by content: SHA-256 of each file.
fn digest(cert_pem: &[u8], key_pem: &[u8]) -> String {
    format!("{}:{}", sha256_hex(cert_pem), sha256_hex(key_pem))
}

/// Parses and validates a pair read from `files`.
fn certified_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(&files.cert, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: files.key.clone(),
        },
        source => TlsError::Pem {
            path: files.key.clone(),
            source,
        },
    })?;
    // Checks that the key belongs to the leaf (the ring provider's keys all
    // expose their public key, so "cannot tell" does not happen here).
    CertifiedKey::from_der(chain, key, provider).map_err(|error| match error {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        source => TlsError::InvalidPair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        },
    })
}
