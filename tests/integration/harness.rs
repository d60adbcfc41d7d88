//! An in-process wasmhook server on loopback (port 0) with real TLS, and a
//! real HTTPS client that trusts only the test CA — the pieces every server
//! test needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wasmhook::server::registry::PolicySource;
use wasmhook::server::{RunningServer, ServerConfig};
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

/// A running server and what it was started with.
pub struct TestServer {
    /// The server.
    pub server: RunningServer,
    /// Its certificates.
    pub certs: TestCerts,
    /// A directory for the policy set and modules.
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server for the policy set `yaml` (written to `policies.yaml`
    /// in a fresh directory; `files` are written beside it first), adjusting
    /// the configuration with `configure`.
    pub async fn start(yaml: &str, files: &[(&str, &[u8])], configure: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::try_start(yaml, files, |config, _| configure(config))
            .await
            .expect("the server starts")
    }

    /// Like [`TestServer::start`], returning the start-up error; `configure`
    /// also gets the test directory (for files the configuration names).
    pub async fn try_start(
        yaml: &str,
        files: &[(&str, &[u8])],
        configure: impl FnOnce(&mut ServerConfig, &std::path::Path),
    ) -> Result<Self, wasmhook::server::ServerError> {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let policy_set = dir.path().join("policies.yaml");
        std::fs::write(&policy_set, yaml).unwrap();
        let certs = TestCerts::new();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = ServerConfig::new(loopback, loopback, certs.files(), PolicySource::File(policy_set));
        config.policy_reload_interval = None;
        config.tls_reload_interval = Duration::from_millis(50);
        config.engine.max_concurrent_evaluations = 16;
        configure(&mut config, dir.path());
        let server = RunningServer::start(config).await?;
        Ok(Self { server, certs, dir })
    }

    /// `https://localhost:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.server.addr.port())
    }

    /// `http://<health address><path>`.
    pub fn health_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.health_addr)
    }

    /// The policy-set file.
    pub fn policy_set_path(&self) -> PathBuf {
        self.dir.path().join("policies.yaml")
    }

    /// A file beside the policy set.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Makes ring the process's rustls provider, for clients that use the
/// default (the server itself is always built with ring explicitly).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// POSTs a review body as the API server does and returns status and JSON.
pub async fn post_review(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {url}: {error}"));
    let status = response.status();
    let json = response
        .json()
        .await
        .unwrap_or_else(|error| panic!("POST {url}: the body is not JSON: {error}"));
    (status, json)
}

/// The bytes of the misbehaving test policy.
pub fn misbehaving_wasm() -> Vec<u8> {
    std::fs::read(wasmhook_policy_artifacts::MISBEHAVING_POLICY_PATH).unwrap()
}

/// Reads a fixture review as bytes.
pub fn fixture_body(fixture: &str) -> Vec<u8> {
    std::fs::read(wasmhook_tests::reviews_dir().join(fixture)).unwrap()
}
