//! A real Kubernetes API server on loopback: etcd and kube-apiserver, started
//! from the binaries a machine has, with certificates made here, and stopped
//! when dropped — the tier of tests that needs a cluster's API (what envtest
//! is to Go controllers).
//!
//! The binaries come from `KUBE_APISERVER` and `ETCD` (paths), else from
//! `PATH`. [`binaries`] says how to get them when they are missing; the
//! Makefile runs this tier only when they are found. No controllers run: no
//! pods, no endpoints controller, no garbage collector (see
//! `../shared/NOTES-k8s.md` for everything that differs from a cluster).
//!
//! Ports: neither binary can report a port it was given as 0 (kube-apiserver
//! takes `--secure-port=0` to mean "do not serve"), so each start picks free
//! ports and, if a port was taken between the probe and the bind, starts again
//! with new ones — the only race left, and it is retried, not lost.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, log_file, tail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The Kubernetes version this tier is run against: the oldest the project
/// supports.
pub const OLDEST_SUPPORTED: &str = "v1.28";

/// How to get the binaries, for messages.
pub const HOW_TO_ENABLE: &str = "set KUBE_APISERVER and ETCD to the binaries (or put kube-apiserver and etcd on \
     PATH): etcd from Debian's etcd-server package, kube-apiserver v1.28 built from the Kubernetes sources as \
     ../shared/NOTES-k8s.md describes";

/// The two binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// etcd.
    pub etcd: PathBuf,
}

/// Finds the binaries, or says which is missing and how to get it.
pub fn binaries() -> Result<Binaries, String> {
    let find = |variable: &str, name: &str| -> Result<PathBuf, String> {
        if let Some(path) = std::env::var_os(variable) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{variable}={} is not a file", path.display()))
            };
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| format!("{name} not found (neither {variable} nor PATH)"))
    };
    let (kube_apiserver, etcd) = (find("KUBE_APISERVER", "kube-apiserver"), find("ETCD", "etcd"));
    match (kube_apiserver, etcd) {
        (Ok(kube_apiserver), Ok(etcd)) => Ok(Binaries { kube_apiserver, etcd }),
        (kube_apiserver, etcd) => {
            let missing: Vec<String> = [kube_apiserver.err(), etcd.err()].into_iter().flatten().collect();
            Err(format!("{}: {HOW_TO_ENABLE}", missing.join("; ")))
        }
    }
}

/// A running etcd and kube-apiserver, stopped on drop.
pub struct KubeApi {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// A kubeconfig with cluster-admin rights (`system:masters`).
    pub kubeconfig: PathBuf,
    /// The CA the API server's certificate chains to (PEM file).
    pub ca_file: PathBuf,
    binaries: Binaries,
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    etcd_url: String,
    port: u16,
}

/// How many times a start is retried with new ports.
const START_ATTEMPTS: u32 = 5;
/// How long the API server has to become ready.
const READY_WITHIN: Duration = Duration::from_secs(90);

impl KubeApi {
    /// Starts etcd and kube-apiserver and waits until `/readyz` answers.
    /// `extra_flags` are added to kube-apiserver's command line.
    pub fn start(extra_flags: &[&str]) -> Result<Self, String> {
        let binaries = binaries()?;
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        write_certificates(dir.path())?;
        let mut api = Self {
            url: String::new(),
            kubeconfig: dir.path().join("kubeconfig"),
            ca_file: dir.path().join("ca.crt"),
            binaries,
            dir,
            etcd: None,
            apiserver: None,
            etcd_url: String::new(),
            port: 0,
        };
        api.start_etcd()?;
        api.start_apiserver(extra_flags)?;
        Ok(api)
    }

    fn start_etcd(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("etcd");
        let log = self.dir.path().join("etcd.log");
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let (client, peer) = (free_port()?, free_port()?);
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let _ = std::fs::remove_dir_all(&data);
            let mut child = Command::new(&self.binaries.etcd)
                .arg("--data-dir")
                .arg(&data)
                .args(["--name", "default"])
                .args([
                    "--listen-client-urls",
                    &client_url,
                    "--advertise-client-urls",
                    &client_url,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                ])
                .args(["--initial-cluster", &format!("default={peer_url}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(&log)?)
                .spawn()
                .map_err(|error| format!("cannot start {}: {error}", self.binaries.etcd.display()))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
                    last_error = format!("etcd exited ({status}): {}", tail(&log));
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() && etcd_healthy(client) {
                    self.etcd = Some(child);
                    self.etcd_url = client_url;
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("etcd was not healthy within 30 s: {}", tail(&log)));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !last_error.contains("address already in use") {
                return Err(last_error);
            }
        }
        Err(last_error)
    }

    fn start_apiserver(&mut self, extra_flags: &[&str]) -> Result<(), String> {
        let dir = self.dir.path().to_owned();
        let log = dir.join("kube-apiserver.log");
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = if self.port == 0 { free_port()? } else { self.port };
            let file = |name: &str| format!("{}", dir.join(name).display());
            let mut child = Command::new(&self.binaries.kube_apiserver)
                .arg(format!("--etcd-servers={}", self.etcd_url))
                .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
                .arg(format!("--secure-port={port}"))
                .arg(format!("--tls-cert-file={}", file("serving.crt")))
                .arg(format!("--tls-private-key-file={}", file("serving.key")))
                .arg(format!("--client-ca-file={}", file("ca.crt")))
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg(format!("--service-account-key-file={}", file("sa.pub")))
                .arg(format!("--service-account-signing-key-file={}", file("sa.key")))
                .args(["--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=RBAC"])
                .args([
                    "--endpoint-reconciler-type=none",
                    "--disable-admission-plugins=ServiceAccount",
                ])
                .args(extra_flags)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(&log)?)
                .spawn()
                .map_err(|error| format!("cannot start {}: {error}", self.binaries.kube_apiserver.display()))?;
            self.port = port;
            self.url = format!("https://127.0.0.1:{port}");
            write_kubeconfig(&dir, &self.url)?;
            let deadline = Instant::now() + READY_WITHIN;
            loop {
                if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
                    last_error = format!("kube-apiserver exited ({status}): {}", tail(&log));
                    break;
                }
                if self
                    .kubectl(&["get", "--raw", "/readyz"])
                    .is_ok_and(|output| output.status.success())
                {
                    self.apiserver = Some(child);
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "kube-apiserver was not ready within {READY_WITHIN:?}: {}",
                        tail(&log)
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !last_error.contains("address already in use") {
                return Err(last_error);
            }
            self.port = 0;
        }
        Err(last_error)
    }

    /// Stops kube-apiserver and starts it again on the same port and etcd
    /// (what a control-plane upgrade or crash looks like to clients).
    pub fn restart_apiserver(&mut self, extra_flags: &[&str]) -> Result<(), String> {
        if let Some(mut child) = self.apiserver.take() {
            stop(&mut child);
        }
        self.start_apiserver(extra_flags)
    }

    /// Runs kubectl against this API server as cluster-admin.
    pub fn kubectl(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Runs kubectl with `input` on its standard input.
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> std::io::Result<Output> {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().expect("piped").write_all(input.as_bytes())?;
        child.wait_with_output()
    }

    /// Runs kubectl and returns its standard output, or fails with both
    /// streams in the message.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, String> {
        let output = self.kubectl(args).map_err(|error| format!("kubectl: {error}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Installs deploy/crds (the PolicyReport CRDs `wasmhook audit --report`
    /// writes to) by server-side apply, as deploy/README says, and waits
    /// until both are served.
    pub fn install_policy_report_crds(&self) -> Result<(), String> {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
        self.kubectl_ok(&["apply", "--server-side", "-k", &crds.display().to_string()])?;
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/policyreports.wgpolicyk8s.io",
            "crd/clusterpolicyreports.wgpolicyk8s.io",
            "--timeout=60s",
        ])?;
        Ok(())
    }

    /// The directory for this API server's files (certificates, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of kube-apiserver's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("kube-apiserver.log"))
    }

    /// Writes a kubeconfig that authenticates with the bearer `token` (for
    /// service accounts with narrower rights) and returns its path.
    pub fn kubeconfig_for_token(&self, name: &str, token: &str) -> Result<PathBuf, String> {
        let path = self.dir.path().join(format!("kubeconfig-{name}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    \
             certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- \
             name: test\n  context:\n    cluster: test\n    user: {name}\ncurrent-context: test\n",
            url = self.url,
            ca = self.ca_file.display(),
        );
        std::fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()))?;
        Ok(path)
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        for child in [self.apiserver.take(), self.etcd.take()].into_iter().flatten() {
            let mut child = child;
            stop(&mut child);
        }
    }
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn etcd_healthy(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

/// A CA; a serving certificate for 127.0.0.1 and the in-cluster names; a
/// `system:masters` client certificate; the service-account signing key.
fn write_certificates(dir: &Path) -> Result<(), String> {
    fn failed(what: &'static str) -> impl Fn(rcgen::Error) -> String {
        move |error| format!("cannot generate the {what}: {error}")
    }
    let write =
        |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|error| format!("{name}: {error}"));

    let ca_key = KeyPair::generate().map_err(failed("CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(&[(DnType::CommonName, "wasmhook test cluster CA")]);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(failed("CA"))?;
    write("ca.crt", &ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let mut serving = CertificateParams::default();
    serving.distinguished_name = name(&[(DnType::CommonName, "kube-apiserver")]);
    serving.subject_alt_names = vec![
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress([10, 0, 0, 1].into()),
        SanType::DnsName("localhost".try_into().map_err(failed("serving name"))?),
        SanType::DnsName("kubernetes.default.svc".try_into().map_err(failed("serving name"))?),
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate().map_err(failed("serving key"))?;
    let serving_cert = serving
        .signed_by(&serving_key, &issuer)
        .map_err(failed("serving certificate"))?;
    write("serving.crt", &serving_cert.pem())?;
    write("serving.key", &serving_key.serialize_pem())?;

    let mut admin = CertificateParams::default();
    admin.distinguished_name = name(&[
        (DnType::CommonName, "admin"),
        (DnType::OrganizationName, "system:masters"),
    ]);
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_key = KeyPair::generate().map_err(failed("admin key"))?;
    let admin_cert = admin
        .signed_by(&admin_key, &issuer)
        .map_err(failed("admin certificate"))?;
    write("admin.crt", &admin_cert.pem())?;
    write("admin.key", &admin_key.serialize_pem())?;

    // ECDSA P-256: kube-apiserver signs service-account tokens with ES256.
    let service_accounts = KeyPair::generate().map_err(failed("service-account key"))?;
    write("sa.key", &service_accounts.serialize_pem())?;
    write("sa.pub", &service_accounts.public_key_pem())?;
    Ok(())
}

fn name(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (kind, value) in parts {
        name.push(kind.clone(), *value);
    }
    name
}

fn write_kubeconfig(dir: &Path, url: &str) -> Result<(), String> {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    \
         certificate-authority: {dir}/ca.crt\nusers:\n- name: admin\n  user:\n    client-certificate: \
         {dir}/admin.crt\n    client-key: {dir}/admin.key\ncontexts:\n- name: test\n  context:\n    cluster: \
         test\n    user: admin\ncurrent-context: test\n",
        dir = dir.display()
    );
    std::fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()))
}
