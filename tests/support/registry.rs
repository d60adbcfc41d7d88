//! A real OCI registry on loopback: the CNCF distribution registry (Debian's
//! `docker-registry`, 2.8) serving HTTPS with a CA made here and htpasswd
//! basic auth, stopped when dropped — the tier of tests for pushing and
//! pulling policies as OCI artifacts, against the registry most registries
//! are built on rather than a mock of one.
//!
//! The registry binary comes from `REGISTRY_BINARY` (a path), else
//! `docker-registry` on `PATH`; skopeo (the reference client the tests check
//! what was pushed with) from `PATH`. [`available`] says how to get them when
//! they are missing; the Makefile runs this tier only when they are found.
//!
//! The certificates are a CA and a separate leaf for `127.0.0.1`: rustls
//! (webpki) rejects a self-signed certificate used directly by a server
//! (`CaUsedAsEndEntity`), so a single certificate would not do.
//!
//! [`TestRegistry::start_plain_http`] starts the same registry without TLS
//! and without auth, as registries inside a cluster or a CI job often run:
//! the tests of `--insecure-registry` (only the registries named there are
//! spoken to in plain HTTP) need a real one.
//!
//! Ports: the registry cannot report a port it was given as 0, so a start
//! picks a free port and, if it was taken between the probe and the bind,
//! starts again with a new one. [`TestRegistry::restart`] keeps its port
//! (clients hold the host in their references and credentials).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::process::{free_port, log_file, tail};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// The test registry's user. A test-only credential: it guards nothing but a
/// registry on loopback that lives as long as one test.
pub const USER: &str = "wasmhook-test";
/// [`USER`]'s password (test-only, like the user).
pub const PASSWORD: &str = "wasmhook-test-password";
/// [`USER`] and [`PASSWORD`] as the registry's htpasswd file holds them:
/// bcrypt (the only scheme distribution accepts), generated once with
/// `htpasswd -Bbn wasmhook-test wasmhook-test-password` so that tests do not
/// need apache2-utils. Cost 5 keeps each authenticated request cheap.
const HTPASSWD: &str = "wasmhook-test:$2y$05$1TwK6zp40ArnIEiznLzYJOGNG8W6p1dqBF.DVOYOLdMojBzdNosie\n";
/// The realm the registry names in `WWW-Authenticate`.
pub const REALM: &str = "wasmhook-test";

/// How to get the binaries, for messages.
pub const HOW_TO_ENABLE: &str = "apt-get install docker-registry skopeo (or set REGISTRY_BINARY to a CNCF \
     distribution registry binary, v2.8)";

/// How long a start waits for `GET /v2/` to answer.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How many times a start is retried with a new port.
const START_ATTEMPTS: u32 = 5;
/// How long one skopeo command may take.
const SKOPEO_TIMEOUT: &str = "60s";

/// The two binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The registry (`docker-registry`).
    pub registry: PathBuf,
    /// skopeo.
    pub skopeo: PathBuf,
}

/// Whether this tier can run here: `Err` says what is missing and how to
/// install it.
pub fn available() -> Result<(), String> {
    binaries().map(drop)
}

/// Finds the binaries, or says which is missing and how to get it.
pub fn binaries() -> Result<Binaries, String> {
    find_binaries(std::env::var_os("REGISTRY_BINARY"), std::env::var_os("PATH"))
}

fn find_binaries(registry: Option<std::ffi::OsString>, path: Option<std::ffi::OsString>) -> Result<Binaries, String> {
    let on_path = |name: &str| {
        path.iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    };
    let registry = match registry.map(PathBuf::from) {
        Some(file) if file.is_file() => Ok(file),
        Some(file) => Err(format!("REGISTRY_BINARY={} is not a file", file.display())),
        None => on_path("docker-registry")
            .ok_or_else(|| "docker-registry not found (neither REGISTRY_BINARY nor PATH)".to_owned()),
    };
    let skopeo = on_path("skopeo").ok_or_else(|| "skopeo not found on PATH".to_owned());
    match (registry, skopeo) {
        (Ok(registry), Ok(skopeo)) => Ok(Binaries { registry, skopeo }),
        (registry, skopeo) => {
            let missing: Vec<String> = [registry.err(), skopeo.err()].into_iter().flatten().collect();
            Err(format!("{}: {HOW_TO_ENABLE}", missing.join("; ")))
        }
    }
}

/// A running registry on `127.0.0.1`, killed on drop: with TLS and basic
/// auth ([`start`](Self::start)), or with neither
/// ([`start_plain_http`](Self::start_plain_http)).
///
/// Every method takes `&self`, so a test can share it (in an `Arc`) with a
/// thread that stops and restarts it while a client is working.
pub struct TestRegistry {
    binaries: Binaries,
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
    /// `None`: plain HTTP, no auth.
    tls: Option<ClientTls>,
    docker_configs: AtomicU32,
}

/// The client side of a registry with TLS.
struct ClientTls {
    /// Trusts only the CA; offers HTTP/2 and HTTP/1.1 (the registry serves both).
    client: rustls::ClientConfig,
    /// The same, offering only HTTP/1.1: the readiness probe speaks it by hand.
    probe: Arc<rustls::ClientConfig>,
}

impl TestRegistry {
    /// Makes the certificates, configuration and credentials in a new
    /// temporary directory, starts the registry and waits until `GET /v2/`
    /// answers 401.
    pub fn start() -> Result<Self, String> {
        let binaries = binaries()?;
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let ca_pem = write_certificates(dir.path())?;
        write(&dir.path().join("htpasswd"), HTPASSWD)?;
        let tls = ClientTls {
            client: client_config(Some(&ca_pem), &[b"h2", b"http/1.1"])?,
            probe: Arc::new(client_config(Some(&ca_pem), &[b"http/1.1"])?),
        };
        Self::first_start(binaries, dir, Some(tls))
    }

    /// Starts the registry in plain HTTP without auth (no certificates, no
    /// htpasswd) in a new temporary directory, and waits until `GET /v2/`
    /// answers 200. Clients reach it only when told it is insecure
    /// (`--insecure-registry` [`host`](Self::host)); what needs TLS or
    /// credentials behaves as each accessor says.
    pub fn start_plain_http() -> Result<Self, String> {
        let binaries = binaries()?;
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        Self::first_start(binaries, dir, None)
    }

    fn first_start(binaries: Binaries, dir: tempfile::TempDir, tls: Option<ClientTls>) -> Result<Self, String> {
        write(
            &dir.path().join("policy.json"),
            r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
        )?;
        let mut registry = Self {
            binaries,
            dir,
            port: 0,
            child: Mutex::new(None),
            tls,
            docker_configs: AtomicU32::new(0),
        };
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            registry.port = free_port()?;
            registry.write_config()?;
            match registry.spawn_and_wait() {
                Ok(child) => {
                    *registry.lock() = Some(child);
                    let credentials = registry.tls.as_ref().map(|_| (USER, PASSWORD));
                    write_docker_config(&registry.docker_config(), &registry.host(), credentials)?;
                    return Ok(registry);
                }
                Err(error) if error.contains("address already in use") => last_error = error,
                Err(error) => return Err(error),
            }
        }
        Err(last_error)
    }

    /// Whether the registry speaks plain HTTP without auth
    /// ([`start_plain_http`](Self::start_plain_http)).
    pub fn is_plain_http(&self) -> bool {
        self.tls.is_none()
    }

    /// `127.0.0.1:<port>`: the registry part of references, and the key of
    /// Docker config `auths`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port, unchanged by [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA the registry's certificate chains to (PEM file).
    ///
    /// # Panics
    ///
    /// For a plain-HTTP registry, which has no CA: a test that asks for one
    /// is wrong, and says so here rather than as a missing file in a client.
    pub fn ca_file(&self) -> PathBuf {
        self.cert_dir().join("ca.crt")
    }

    /// A directory holding only `ca.crt`: what skopeo's and podman's
    /// `--cert-dir` and containers' `certs.d/<host>/` expect.
    ///
    /// # Panics
    ///
    /// For a plain-HTTP registry, like [`ca_file`](Self::ca_file).
    pub fn cert_dir(&self) -> PathBuf {
        assert!(
            !self.is_plain_http(),
            "the test registry at {} speaks plain HTTP: it has no CA (reach it with --insecure-registry {0})",
            self.host()
        );
        self.dir.path().join("certs")
    }

    /// The user the registry accepts ([`USER`]). A plain-HTTP registry has
    /// no auth: it accepts any request, with these credentials or none.
    pub fn user(&self) -> &'static str {
        USER
    }

    /// That user's password ([`PASSWORD`]; see [`user`](Self::user)).
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// A Docker `config.json` with this registry's credentials:
    /// `{"auths": {"127.0.0.1:<port>": {"auth": base64("user:password")}}}`;
    /// for a plain-HTTP registry, which needs none, `{"auths": {}}` (so that
    /// a client given it does not fall back to the user's own file).
    /// Its directory is what `DOCKER_CONFIG` names.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker/config.json")
    }

    /// Writes another Docker `config.json` for this registry with the given
    /// credentials (wrong ones, for tests of refused pulls) in a directory of
    /// its own, and returns its path. A plain-HTTP registry ignores them.
    pub fn docker_config_with(&self, user: &str, password: &str) -> Result<PathBuf, String> {
        let number = self.docker_configs.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.dir.path().join(format!("docker-{number}/config.json"));
        write_docker_config(&path, &self.host(), Some((user, password)))?;
        Ok(path)
    }

    /// The registry's storage (`rootdirectory`): `docker/registry/v2/…`,
    /// for tests that corrupt or remove what it serves.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The directory of this registry's files (certificates, configuration,
    /// storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the registry (SIGKILL: what a crash or a lost network looks like
    /// to a client): connections are refused until [`restart`](Self::restart).
    /// Stopping a stopped registry does nothing.
    pub fn stop(&self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the registry if it runs, then starts it again on the same port,
    /// with the same storage, certificates and credentials, and waits until
    /// it answers.
    pub fn restart(&self) -> Result<(), String> {
        self.stop();
        // The port is ours, but a client's connection to the killed process
        // or another process may hold it briefly: retry for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_and_wait() {
                Ok(child) => {
                    *self.lock() = Some(child);
                    return Ok(());
                }
                Err(error) if error.contains("address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether the registry process is alive.
    pub fn is_running(&self) -> bool {
        self.lock()
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// An HTTPS client (HTTP/2 or 1.1) that trusts only this registry's CA and
    /// sends no credentials unless asked (`basic_auth(user(), Some(password()))`).
    /// For a plain-HTTP registry, a client that trusts no certificate at all:
    /// it speaks plain HTTP to [`url`](Self::url)s and nothing else.
    pub fn http_client(&self) -> reqwest::Client {
        let tls = match &self.tls {
            Some(tls) => tls.client.clone(),
            None => client_config(None, &[b"http/1.1"]).expect("a TLS configuration without roots"),
        };
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client")
    }

    /// `https://127.0.0.1:<port>` (`http://` for a plain-HTTP registry)
    /// followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.is_plain_http() { "http" } else { "https" };
        format!("{scheme}://{}{path}", self.host())
    }

    /// `skopeo inspect --raw`: the manifest (or index) `reference` names, as
    /// this registry serves it. `reference` is `repository[:tag|@digest]` in
    /// this registry, or a whole reference starting with [`host`](Self::host)
    /// (no `docker://`). `Err` carries skopeo's message (`manifest unknown`,
    /// `unauthorized`, a refused connection).
    pub fn skopeo_inspect_raw(&self, reference: &str) -> Result<Value, String> {
        let stdout = self.skopeo(&["inspect", "--raw"], &[&self.docker_reference(reference)], "")?;
        serde_json::from_slice(&stdout).map_err(|error| format!("skopeo inspect --raw {reference}: not JSON: {error}"))
    }

    /// `skopeo inspect --config --raw`: the config blob of the manifest
    /// `reference` names (same forms as [`skopeo_inspect_raw`](Self::skopeo_inspect_raw)).
    pub fn skopeo_inspect_config(&self, reference: &str) -> Result<Value, String> {
        let stdout = self.skopeo(
            &["inspect", "--config", "--raw"],
            &[&self.docker_reference(reference)],
            "",
        )?;
        serde_json::from_slice(&stdout)
            .map_err(|error| format!("skopeo inspect --config --raw {reference}: not JSON: {error}"))
    }

    /// `skopeo copy source docker://reference`: pushes what `source` names,
    /// in any transport skopeo reads (`oci:<layout dir>:<tag>`,
    /// `docker-archive:<file>`, …), to `reference` (same forms as
    /// [`skopeo_inspect_raw`](Self::skopeo_inspect_raw)).
    pub fn skopeo_copy_to(&self, source: &str, reference: &str) -> Result<(), String> {
        let policy = self.dir.path().join("policy.json");
        let policy = format!("--policy={}", policy.display());
        let destination = self.docker_reference(reference);
        self.skopeo(&[&policy, "copy", "--quiet"], &[source, &destination], "dest-")
            .map(drop)
    }

    /// The last lines of the registry's log (its standard error and access
    /// log), for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("registry.log"))
    }

    fn docker_reference(&self, reference: &str) -> String {
        let host = self.host();
        if reference.starts_with(&format!("{host}/")) {
            format!("docker://{reference}")
        } else {
            format!("docker://{host}/{reference}")
        }
    }

    /// Runs skopeo with this registry's CA and credentials (`--{prefix}cert-dir`,
    /// `--{prefix}creds`), or for a plain-HTTP registry with
    /// `--{prefix}tls-verify=false` (which lets it fall back to HTTP), and
    /// returns its standard output.
    fn skopeo(&self, command: &[&str], operands: &[&str], prefix: &str) -> Result<Vec<u8>, String> {
        let access = if self.is_plain_http() {
            vec![format!("--{prefix}tls-verify=false")]
        } else {
            vec![
                format!("--{prefix}cert-dir={}", self.cert_dir().display()),
                format!("--{prefix}creds={USER}:{PASSWORD}"),
            ]
        };
        let output = Command::new(&self.binaries.skopeo)
            .arg(format!("--command-timeout={SKOPEO_TIMEOUT}"))
            .args(command)
            .args(access)
            .args(operands)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("cannot run {}: {error}", self.binaries.skopeo.display()))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(format!(
                "skopeo {} {} failed ({}): {}",
                command.join(" "),
                operands.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_config(&self) -> Result<(), String> {
        let dir = self.dir.path();
        // JSON strings are YAML strings: paths quoted whatever they hold.
        let quote = |path: PathBuf| serde_json::to_string(&path).expect("a path is JSON");
        let mut text = format!(
            "version: 0.1\n\
             log:\n  level: info\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: wasmhook-test-upload-secret\n",
            storage = quote(self.storage_dir()),
            port = self.port,
        );
        if !self.is_plain_http() {
            text += &format!(
                "  tls:\n    certificate: {certificate}\n    key: {key}\n\
                 auth:\n  htpasswd:\n    realm: {REALM}\n    path: {htpasswd}\n",
                certificate = quote(dir.join("tls.crt")),
                key = quote(dir.join("tls.key")),
                htpasswd = quote(dir.join("htpasswd")),
            );
        }
        write(&dir.join("config.yml"), &text)
    }

    /// Starts the registry on `self.port` and waits until `GET /v2/` answers
    /// 401 (200 without auth); an error carries the log's tail.
    fn spawn_and_wait(&self) -> Result<Child, String> {
        let log = self.dir.path().join("registry.log");
        let stderr = log_file(&log)?;
        let stdout = stderr.try_clone().map_err(|error| error.to_string())?;
        let mut child = Command::new(&self.binaries.registry)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", self.binaries.registry.display()))?;
        let ready = if self.is_plain_http() { 200 } else { 401 };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
                return Err(format!("the registry exited ({status}): {}", tail(&log)));
            }
            let probe = match self.probe() {
                Ok(status) if status == ready => return Ok(child),
                Ok(status) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "GET /v2/ without credentials answered {status}, not {ready}: {}",
                        tail(&log)
                    ));
                }
                Err(error) => error,
            };
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the registry did not answer within {READY_WITHIN:?} (last probe: {probe}): {}",
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The status of an anonymous `GET /v2/` over TLS checked against the CA,
    /// or over plain HTTP (blocking, so that a start works inside and outside
    /// async tests).
    fn probe(&self) -> Result<u16, String> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut socket =
            TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(|error| error.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .and_then(|()| socket.set_write_timeout(Some(Duration::from_secs(5))))
            .map_err(|error| error.to_string())?;
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host()
        );
        let Some(tls) = &self.tls else {
            return status_of(&mut socket, &request);
        };
        let name = ServerName::from(std::net::IpAddr::from(Ipv4Addr::LOCALHOST));
        let mut connection =
            rustls::ClientConnection::new(Arc::clone(&tls.probe), name).map_err(|error| error.to_string())?;
        status_of(&mut rustls::Stream::new(&mut connection, &mut socket), &request)
    }
}

/// Sends `request` on `stream` and reads the status of the answer.
fn status_of(stream: &mut (impl Read + Write), request: &str) -> Result<u16, String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("TLS or write: {error}"))?;
    let mut answer = Vec::new();
    let mut buffer = [0; 256];
    while !answer.windows(2).any(|pair| pair == b"\r\n") {
        let read = stream.read(&mut buffer).map_err(|error| format!("read: {error}"))?;
        if read == 0 {
            return Err("closed before a status line".to_owned());
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {line:?}"))
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A rustls client configuration trusting only `ca_pem` (nothing when
/// `None`), offering `alpn`.
fn client_config(ca_pem: Option<&str>, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca_pem) = ca_pem {
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|error| format!("the CA: {error}"))?;
        roots.add(ca).map_err(|error| format!("the CA: {error}"))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// `{"auths": {host: {"auth": base64("user:password")}}}` at `path`, or
/// `{"auths": {}}` without credentials.
fn write_docker_config(path: &Path, host: &str, credentials: Option<(&str, &str)>) -> Result<(), String> {
    let auths = match credentials {
        Some((user, password)) => {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            serde_json::json!({ host: { "auth": auth } })
        }
        None => serde_json::json!({}),
    };
    let config = serde_json::json!({ "auths": auths });
    let parent = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(parent).map_err(|error| format!("{}: {error}", parent.display()))?;
    write(path, &config.to_string())
}

/// A CA (`certs/ca.crt`) and a serving certificate for `127.0.0.1` and
/// `localhost` signed by it (`tls.crt`, `tls.key`). Returns the CA's PEM.
fn write_certificates(dir: &Path) -> Result<String, String> {
    fn failed(what: &'static str) -> impl Fn(rcgen::Error) -> String {
        move |error| format!("cannot generate the {what}: {error}")
    }
    let ca_key = KeyPair::generate().map_err(failed("CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = common_name("wasmhook test registry CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).map_err(failed("CA"))?.pem();
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).map_err(|error| format!("{}: {error}", certs.display()))?;
    write(&certs.join("ca.crt"), &ca_pem)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut serving = CertificateParams::default();
    serving.distinguished_name = common_name("wasmhook test registry");
    serving.subject_alt_names = vec![
        SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
        SanType::DnsName("localhost".try_into().map_err(failed("serving name"))?),
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate().map_err(failed("serving key"))?;
    let serving_cert = serving
        .signed_by(&serving_key, &issuer)
        .map_err(failed("serving certificate"))?;
    write(&dir.join("tls.crt"), &serving_cert.pem())?;
    write(&dir.join("tls.key"), &serving_key.serialize_pem())?;
    Ok(ca_pem)
}

fn common_name(value: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, value);
    name
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|error| format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let error = find_binaries(None, Some("/nonexistent".into())).unwrap_err();
        assert!(error.contains("docker-registry not found"), "{error}");
        assert!(error.contains("skopeo not found"), "{error}");
        assert!(error.contains("apt-get install docker-registry skopeo"), "{error}");
    }

    #[test]
    fn registry_binary_overrides_path() {
        let error = find_binaries(Some("/nonexistent/registry".into()), None).unwrap_err();
        assert!(
            error.contains("REGISTRY_BINARY=/nonexistent/registry is not a file"),
            "{error}"
        );
    }
}
