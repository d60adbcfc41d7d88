//! Certificates for tests: a CA and a serving certificate laid out the way a
//! Kubernetes Secret volume is, rotated the way the kubelet rotates them, and
//! HTTPS clients that trust only that CA.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wasmhook::tls::{GeneratedCa, TlsFiles, generate_ca};

/// A test CA and its serving certificate for `localhost` / `127.0.0.1`,
/// laid out the way a Kubernetes Secret volume is: `tls.crt` and `tls.key`
/// are symlinks through `..data`, which points at a timestamped directory.
pub struct TestCerts {
    /// The CA.
    pub ca: GeneratedCa,
    /// The Secret-like directory.
    pub dir: tempfile::TempDir,
    generation: u32,
}

impl Default for TestCerts {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCerts {
    /// A CA and a first serving certificate.
    pub fn new() -> Self {
        let ca = generate_ca("wasmhook test CA", 2).expect("a CA");
        let dir = tempfile::tempdir().unwrap();
        let mut certs = Self { ca, dir, generation: 0 };
        certs.rotate();
        std::os::unix::fs::symlink("..data/tls.crt", certs.dir.path().join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", certs.dir.path().join("tls.key")).unwrap();
        certs
    }

    /// Issues a new serving certificate and swaps it in atomically, as the
    /// kubelet does: a new timestamped directory, then `..data` renamed over.
    /// Returns the new leaf certificate.
    pub fn rotate(&mut self) -> CertificateDer<'static> {
        self.generation += 1;
        let sans = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let issued = self.ca.issue_serving_cert(&sans, 2).expect("a serving certificate");
        let versioned = format!("..2026_11_22_{:02}", self.generation);
        let target = self.dir.path().join(&versioned);
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("tls.crt"), &issued.cert_pem).unwrap();
        std::fs::write(target.join("tls.key"), &issued.key_pem).unwrap();
        let staging = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&versioned, &staging).unwrap();
        std::fs::rename(&staging, self.dir.path().join("..data")).unwrap();
        CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()
    }

    /// The paths the server is given.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.path().join("tls.crt"),
            key: self.dir.path().join("tls.key"),
        }
    }

    /// A rustls client configuration trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        config
    }

    /// An HTTPS client over HTTP/1.1 (what the API server uses).
    pub fn http1_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(self.client_config(&[b"http/1.1"]))
            .http1_only()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// An HTTPS client over HTTP/2.
    pub fn http2_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(self.client_config(&[b"h2"]))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }
}

/// Makes ring the process's rustls provider, for clients that use the
/// default (the server itself is always built with ring explicitly).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
