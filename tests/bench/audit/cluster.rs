//! The benchmark's own client of the test API server: HTTPS with the
//! harness's `system:masters` certificate, straight to the REST paths.
//!
//! Seeding goes through it rather than `kubectl apply`: one kubectl process
//! sends its requests one after another, behind client-go's rate limiter,
//! while this sends a bounded number at once. Its paginated lists are also
//! the listing floor the audit is compared with: the same pages, parsed into
//! JSON values as the audit's client parses them, and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use wasmhook_tests::kube::KubeApi;

/// How many times a create is retried when the API server is busy (429, 5xx).
const ATTEMPTS: u32 = 5;

/// A client of one test API server.
#[derive(Clone)]
pub struct Cluster {
    url: String,
    http: reqwest::Client,
}

/// What a paginated list read.
#[derive(Debug, Clone, Copy)]
pub struct Listed {
    /// Items.
    pub items: usize,
    /// Bytes of the response bodies.
    pub bytes: usize,
    /// Pages.
    pub pages: usize,
    /// From the first request to the last page parsed.
    pub elapsed: Duration,
}

impl Cluster {
    /// A client of `api`, authenticated as its admin.
    pub fn new(api: &KubeApi) -> Result<Self, String> {
        let read = |name: &str| {
            std::fs::read(api.dir().join(name)).map_err(|error| format!("{}: {error}", api.dir().join(name).display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&read("ca.crt")?).map_err(|error| format!("ca.crt: {error}"))?)
            .map_err(|error| format!("ca.crt: {error}"))?;
        let cert =
            CertificateDer::from_pem_slice(&read("admin.crt")?).map_err(|error| format!("admin.crt: {error}"))?;
        let key = PrivateKeyDer::from_pem_slice(&read("admin.key")?).map_err(|error| format!("admin.key: {error}"))?;
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .map_err(|error| format!("the admin certificate: {error}"))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            url: api.url.clone(),
            http,
        })
    }

    /// POSTs `object` to `path` (a collection), retrying while the API
    /// server is busy. An object that already exists is an error.
    pub async fn create(&self, path: &str, object: &Value) -> Result<(), String> {
        let url = format!("{}{path}?fieldManager=kubectl-client-side-apply", self.url);
        let body = serde_json::to_vec(object).map_err(|error| error.to_string())?;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let response = match self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
            {
                Ok(response) => response,
                Err(error) => {
                    last = format!("POST {path}: {error}");
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let text = response.text().await.unwrap_or_default();
            last = format!("POST {path}: {status}: {text}");
            if !(status.as_u16() == 429 || status.is_server_error()) {
                break;
            }
        }
        Err(last)
    }

    /// Every item at `path` (a collection), `limit` at a time, each page
    /// parsed; `each` sees every item.
    pub async fn list(&self, path: &str, limit: u32, mut each: impl FnMut(&Value)) -> Result<Listed, String> {
        let started = Instant::now();
        let mut listed = Listed {
            items: 0,
            bytes: 0,
            pages: 0,
            elapsed: Duration::ZERO,
        };
        let mut token = String::new();
        loop {
            let mut url = format!("{}{path}?limit={limit}", self.url);
            if !token.is_empty() {
                url.push_str("&continue=");
                url.push_str(&token);
            }
            let response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|error| format!("GET {path}: {error}"))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|error| format!("GET {path}: {error}"))?;
            if !status.is_success() {
                return Err(format!("GET {path}: {status}: {}", String::from_utf8_lossy(&body)));
            }
            let page: Value = serde_json::from_slice(&body).map_err(|error| format!("GET {path}: {error}"))?;
            listed.bytes += body.len();
            listed.pages += 1;
            for item in page["items"].as_array().into_iter().flatten() {
                listed.items += 1;
                each(item);
            }
            match page.pointer("/metadata/continue").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => token = next.to_owned(),
                _ => break,
            }
        }
        listed.elapsed = started.elapsed();
        Ok(listed)
    }
}
