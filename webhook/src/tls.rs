//! TLS for the webhook: the API server only calls admission webhooks over
//! HTTPS, so the server needs a certificate it can rotate without restarting,
//! and development needs certificates without a cluster's cert-manager.
//!
//! - [`ReloadingCert`] serves the current certificate from a pair of PEM files
//!   and swaps in a new pair when the files change — including the way a
//!   Kubernetes Secret volume changes them, by swapping a `..data` symlink;
//! - [`server_config`] builds the rustls configuration (TLS 1.2 and 1.3,
//!   HTTP/2 and HTTP/1.1 by ALPN, optional client-certificate authentication);
//! - [`generate_ca`] and [`GeneratedCa`] make certificates with rcgen (an
//!   existing CA is read back with rcgen's x509-parser support), and
//!   [`ensure_dev_certs`] keeps a development CA and serving certificate in a
//!   state directory.
//!
//! Cryptography comes from rustls' ring provider, passed explicitly to every
//! builder: nothing here depends on a process-wide default provider.

mod certs;
mod dev;
mod reload;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub use certs::{GeneratedCa, GeneratedCert, generate_ca};
pub use dev::{DevCerts, ensure_dev_certs};
pub use reload::{ReloadOutcome, ReloadingCert};

/// The protocol versions the server accepts.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ALPN protocols the server offers, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate, key or TLS configuration could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("{}: not valid PEM: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A file that should hold certificates holds none.
    #[error("{}: no certificate found (expected a PEM \"CERTIFICATE\" block)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A file that should hold a private key holds none.
    #[error(
        "{}: no private key found (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)",
        path.display()
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not the key of the certificate.
    #[error("the private key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls cannot use the certificate or the key (unparseable certificate,
    /// unsupported key type).
    #[error("cannot use the certificate in {} with the key in {}: {source}", cert.display(), key.display())]
    InvalidPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls reported.
        #[source]
        source: rustls::Error,
    },
    /// The client CA bundle cannot be used to verify client certificates.
    #[error("client CA bundle {}: {reason}", path.display())]
    ClientCa {
        /// The bundle file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls rejected the server configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// rcgen could not generate a key or certificate.
    #[error("cannot generate the {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// What rcgen reported.
        #[source]
        source: rcgen::Error,
    },
    /// A CA certificate and key cannot be used to issue certificates.
    #[error("CA certificate and key: {reason}")]
    InvalidCa {
        /// What is wrong with them.
        reason: String,
    },
    /// A certificate was requested with impossible parameters.
    #[error("invalid certificate request: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },
}

/// Paths of a PEM certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// The crypto provider every TLS object in wasmhook is built with.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration: TLS 1.2 and 1.3, ALPN `h2` then
/// `http/1.1`, certificates from `cert` (so rotations apply to new
/// handshakes), and — when `client_ca` names a PEM bundle — required client
/// certificates issued by one of its CAs; otherwise no client authentication.
pub fn server_config(cert: Arc<ReloadingCert>, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::Config)?;
    let builder = match client_ca {
        Some(path) => {
            let roots = Arc::new(client_roots(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|error| TlsError::ClientCa {
                    path: path.to_owned(),
                    reason: error.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Reads a CA bundle into a root store; every certificate must be usable.
fn client_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bytes = read(path)?;
    let certs = read_certs(path, &bytes)?;
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|error| TlsError::ClientCa {
            path: path.to_owned(),
            reason: format!("certificate {} is not a usable trust anchor: {error}", index + 1),
        })?;
    }
    Ok(roots)
}

/// Reads a whole file, naming it in the error.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the PEM `bytes` read from `path`; at least one.
fn read_certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}
