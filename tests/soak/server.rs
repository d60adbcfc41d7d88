//! The `wasmhook serve` process under soak: started from the binary beside
//! this one, watched through `/proc` (alive, RSS, open file descriptors) and
//! its `/metrics`, signalled like Kubernetes does (SIGHUP to reload, SIGTERM
//! to stop).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wasmhook::server::ready_file::ReadyFile;

/// Everything the server is started with.
pub struct ServerSetup {
    /// The `wasmhook` binary.
    pub binary: PathBuf,
    /// The policy set.
    pub config: PathBuf,
    /// `tls.crt` and `tls.key` (symlinks through `..data`, as in a Secret volume).
    pub cert: PathBuf,
    /// See `cert`.
    pub key: PathBuf,
    /// The compile cache.
    pub cache_dir: PathBuf,
    /// Where the server's stderr goes.
    pub log: PathBuf,
    /// Where the server writes the addresses it bound.
    pub ready_file: PathBuf,
    /// The largest request body the server accepts.
    pub max_body_bytes: usize,
    /// The server's TLS handshake timeout and header-read (and idle) timeout.
    pub client_timeout: Duration,
}

/// A running `wasmhook serve`.
pub struct ServerProcess {
    child: Child,
    /// The HTTPS address.
    pub addr: SocketAddr,
    /// The plain-HTTP health and metrics address.
    pub health_addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server on ports the OS chooses, reads them from its ready
    /// file, and waits until `/readyz` answers 200.
    pub fn start(setup: &ServerSetup) -> Result<Self, String> {
        ReadyFile::remove(&setup.ready_file).map_err(|error| error.to_string())?;
        let log = std::fs::File::create(&setup.log).map_err(|error| format!("{}: {error}", setup.log.display()))?;
        let timeout = wasmhook::duration::format(setup.client_timeout);
        let child = Command::new(&setup.binary)
            .arg("serve")
            .arg("--config")
            .arg(&setup.config)
            .arg("--tls-cert")
            .arg(&setup.cert)
            .arg("--tls-key")
            .arg(&setup.key)
            .arg("--cache-dir")
            .arg(&setup.cache_dir)
            .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
            .arg("--ready-file")
            .arg(&setup.ready_file)
            .args(["--max-body-bytes", &setup.max_body_bytes.to_string()])
            .args(["--handshake-timeout", &timeout, "--header-read-timeout", &timeout])
            .args(["--tls-reload-interval", "500ms", "--drain-timeout", "20s"])
            // Reloads happen on SIGHUP only, so the soak knows how many there were.
            .arg("--no-policy-watch")
            .env(
                "RUST_LOG",
                std::env::var("WASMHOOK_SOAK_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", setup.binary.display()))?;
        // Compiling the policies (no cache yet) takes a while in a debug build.
        let start_up = Duration::from_secs(600);
        let mut child = child;
        let bound = ReadyFile::wait(&setup.ready_file, &mut child, start_up)
            .map_err(|error| format!("{error}; see {}", setup.log.display()))?;
        let (addr, health_addr) = (bound.listen, bound.health_listen);
        let mut server = Self {
            child,
            addr,
            health_addr,
        };
        let deadline = Instant::now() + start_up;
        loop {
            if let Some(status) = server.child.try_wait().map_err(|error| error.to_string())? {
                return Err(format!(
                    "the server exited during start-up ({status}); see {}",
                    setup.log.display()
                ));
            }
            if http_get(health_addr, "/readyz").is_ok_and(|(status, _)| status == 200) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err("the server was not ready within 10 minutes".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while the process runs, its exit status once it has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends a signal (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .map_err(|error| format!("kill: {error}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("kill -{name} {} failed", self.pid()))
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory (`VmRSS`) and open file descriptors, right now.
    pub fn sample(&self) -> Option<Sample> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid())).ok()?.count();
        Some(Sample { rss_kib, fds })
    }

    /// The server's metrics, parsed.
    pub fn metrics(&self) -> Result<Metrics, String> {
        let (status, body) = http_get(self.health_addr, "/metrics")?;
        if status != 200 {
            return Err(format!("/metrics answered {status}"));
        }
        Ok(Metrics::parse(&body))
    }

    /// The readiness body (per-policy state).
    pub fn readiness(&self) -> Result<(u16, String), String> {
        http_get(self.health_addr, "/readyz")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One look at the process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
}

/// Prometheus text exposition, reduced to what the soak compares: each
/// sample's name, labels and value.
pub struct Metrics {
    /// The exposition as the server wrote it.
    pub text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let value = value.parse().ok()?;
                let (name, labels) = match series.split_once('{') {
                    None => (series, BTreeMap::new()),
                    Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
                };
                Some((name.to_owned(), labels, value))
            })
            .collect();
        Self {
            text: text.to_owned(),
            samples,
        }
    }

    /// The sum of `name` over the samples whose labels include every pair of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.samples
            .iter()
            .filter(|(sample, sample_labels, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(key, value)| sample_labels.get(*key).is_some_and(|actual| actual == value))
            })
            .map(|(_, _, value)| *value as u64)
            .sum()
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter_map(|pair| {
            let (key, value) = pair.split_once("=\"")?;
            Some((
                key.trim_start_matches(',').to_owned(),
                value.trim_end_matches('"').to_owned(),
            ))
        })
        .collect()
}

/// A plain HTTP/1.0 GET; the health port speaks plain HTTP.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|error| error.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|error| error.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|error| error.to_string())?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP answer"))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    Ok((status, body))
}

/// Where the soak writes its report and the server's log: `target/soak/`,
/// found from this binary's own path (`target/<profile>/wasmhook-soak`).
pub fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("soak")
}
