//! An in-process wasmhook server on loopback (port 0) with real TLS, and a
//! real HTTPS client that trusts only the test CA — the pieces every server
//! test needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use wasmhook::server::registry::PolicySource;
use wasmhook::server::{RunningServer, ServerConfig};
pub use wasmhook_tests::certs::{TestCerts, install_crypto_provider};

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
