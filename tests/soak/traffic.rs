//! The soak's clients: what an API server sends (every recorded review, to
//! both built-in policies), what a broken or hostile client sends (malformed
//! and oversized bodies, headers trickled byte by byte, requests abandoned
//! half-way, TLS handshakes that never finish), and reviews for policies that
//! misbehave. Every answer is checked; everything sent is counted, so the
//! server's metrics can be compared with it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use wasmhook_tests::Case;

/// Keep at most this many problem descriptions (all are counted).
const KEPT_PROBLEMS: usize = 20;

/// How the soak reaches the server.
#[derive(Clone)]
pub struct Target {
    /// The HTTPS address.
    pub addr: SocketAddr,
    /// An HTTP/1.1 client that trusts only the soak's CA.
    pub client: reqwest::Client,
    /// A TLS connector that trusts only the soak's CA (for raw connections).
    pub tls: TlsConnector,
    /// The review every request but the valid ones carries.
    pub service_review: Arc<Vec<u8>>,
    /// The largest body the server accepts.
    pub max_body_bytes: usize,
    /// The server's handshake and header-read timeout.
    pub client_timeout: Duration,
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// POSTs `body`; the status and the JSON answer, or what went wrong.
    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> Result<(StatusCode, Value), String> {
        let response = self
            .client
            .post(self.url(path))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|error| format!("POST {path}: {}", error_chain(&error)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("POST {path}: reading the answer: {}", error_chain(&error)))?;
        let json = serde_json::from_slice(&body).map_err(|error| {
            format!(
                "POST {path}: answer {status} is not JSON ({error}): {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        Ok((status, json))
    }

    /// A TLS connection to the server, handshake done.
    async fn connect_tls(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        self.tls
            .connect(ServerName::try_from("localhost").expect("a valid name"), tcp)
            .await
            .map_err(|error| format!("TLS handshake: {error}"))
    }

    /// The leaf certificate a new TLS handshake is given.
    pub async fn presented_leaf(&self) -> Result<CertificateDer<'static>, String> {
        let stream = self.connect_tls().await?;
        let (_, connection) = stream.get_ref();
        connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.clone().into_owned())
            .ok_or_else(|| "the server presented no certificate".into())
    }
}

/// What the soak sent and saw, and what went wrong.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<Counts>,
    problems: Mutex<(u64, Vec<String>)>,
}

/// The counts of a soak.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Valid reviews answered correctly.
    pub valid_ok: u64,
    /// Reviews for misbehaving policies answered as their failure policy says.
    pub misbehaving_ok: u64,
    /// Reviews answered, by policy (what the server's review counter must show).
    pub answered_by_policy: BTreeMap<String, u64>,
    /// Requests refused before evaluation, by the server's rejection reason.
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// Slow clients (headers trickled) that the server cut off in time.
    pub slow_clients_cut_off: u64,
    /// TLS handshakes left unfinished that the server closed in time.
    pub stalled_handshakes_closed: u64,
    /// Requests abandoned half-way through their body.
    pub abandoned_requests: u64,
}

impl Tally {
    /// Runs `update` on the counts.
    pub fn count(&self, update: impl FnOnce(&mut Counts)) {
        update(&mut self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    /// Records something that should not have happened.
    pub fn problem(&self, problem: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        problems.0 += 1;
        if problems.1.len() < KEPT_PROBLEMS {
            problems.1.push(problem);
        }
    }

    /// A copy of the counts.
    pub fn counts(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// How many problems, and the first few.
    pub fn problems(&self) -> (u64, Vec<String>) {
        self.problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Set when the traffic must end.
pub type Stop = Arc<AtomicBool>;

fn stopped(stop: &Stop) -> bool {
    stop.load(Ordering::Relaxed)
}

/// Every recorded review to the mutating endpoint of each built-in policy,
/// over and over; each answer must be the table's (verdict and exact patch).
pub async fn valid_reviews(target: Target, cases: Arc<Vec<Case>>, tally: Arc<Tally>, stop: Stop, offset: usize) {
    let bodies: Vec<Vec<u8>> = cases
        .iter()
        .map(|case| std::fs::read(wasmhook_tests::reviews_dir().join(&case.fixture)).expect("a fixture"))
        .collect();
    let mut index = offset;
    while !stopped(&stop) {
        let case = &cases[index % cases.len()];
        let body = bodies[index % cases.len()].clone();
        index += 1;
        match target
            .post(&format!("/mutate/{}", case.policy), "application/json", body)
            .await
        {
            Ok((StatusCode::OK, answer)) => match case.check_answer(&answer) {
                Ok(()) => tally.count(|counts| {
                    counts.valid_ok += 1;
                    *counts.answered_by_policy.entry(case.policy.clone()).or_default() += 1;
                }),
                Err(problem) => tally.problem(format!("valid review answered wrongly: {problem}")),
            },
            Ok((status, answer)) => tally.problem(format!("valid review {}: HTTP {status}: {answer}", case.label())),
            Err(error) => tally.problem(format!("valid review {}: {error}", case.label())),
        }
    }
}

/// A misbehaving policy and what its failure policy makes of its failure.
pub struct Misbehaving {
    /// The policy's name in the soak's policy set.
    pub policy: &'static str,
    /// Whether the review is allowed.
    pub allowed: bool,
    /// A part of the warning (allowed) or the denial message (denied).
    pub says: &'static str,
}

/// Reviews for policies that time out, trap and exhaust their memory.
pub async fn misbehaving_reviews(target: Target, policies: Arc<Vec<Misbehaving>>, tally: Arc<Tally>, stop: Stop) {
    let mut index = 0;
    while !stopped(&stop) {
        let policy = &policies[index % policies.len()];
        index += 1;
        let path = format!("/mutate/{}", policy.policy);
        match target
            .post(&path, "application/json", target.service_review.to_vec())
            .await
        {
            Ok((StatusCode::OK, answer)) => match check_misbehaving(policy, &answer) {
                Ok(()) => tally.count(|counts| {
                    counts.misbehaving_ok += 1;
                    *counts.answered_by_policy.entry(policy.policy.to_owned()).or_default() += 1;
                }),
                Err(problem) => tally.problem(format!("{}: {problem}", policy.policy)),
            },
            Ok((status, answer)) => tally.problem(format!("{}: HTTP {status}: {answer}", policy.policy)),
            Err(error) => tally.problem(format!("{}: {error}", policy.policy)),
        }
    }
}

/// Checks the answer to a review for a misbehaving policy.
pub fn check_misbehaving(policy: &Misbehaving, answer: &Value) -> Result<(), String> {
    let response = &answer["response"];
    if response["allowed"] != policy.allowed {
        return Err(format!("allowed should be {}: {response}", policy.allowed));
    }
    let text = if policy.allowed {
        response["warnings"].to_string()
    } else {
        response["status"]["message"].to_string()
    };
    if !text.contains(policy.says) {
        return Err(format!("the answer does not say {:?}: {response}", policy.says));
    }
    Ok(())
}

/// A request the server must refuse: what it is, path, content type, body,
/// the expected status, and the server's rejection reason.
type BadRequest<'a> = (&'a str, &'a str, &'a str, &'a [u8], StatusCode, &'static str);

/// Requests the server must refuse with a 4xx that names the problem.
pub async fn malformed_requests(target: Target, tally: Arc<Tally>, stop: Stop) {
    let review = target.service_review.to_vec();
    let oversized = vec![b' '; target.max_body_bytes + 1024];
    // (what, path, content type, body, expected status, the server's rejection reason)
    let requests: [BadRequest<'_>; 5] = [
        (
            "invalid JSON",
            "/mutate/headless-service",
            "application/json",
            b"{\"apiVersion\": tru",
            StatusCode::BAD_REQUEST,
            "malformed_review",
        ),
        (
            "a review without a request",
            "/mutate/headless-service",
            "application/json",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            StatusCode::BAD_REQUEST,
            "malformed_review",
        ),
        (
            "a wrong content type",
            "/mutate/headless-service",
            "text/plain",
            &review,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
        ),
        (
            "an unknown policy",
            "/mutate/no-such-policy",
            "application/json",
            &review,
            StatusCode::NOT_FOUND,
            "unknown_policy",
        ),
        (
            "an oversized body",
            "/mutate/headless-service",
            "application/json",
            &oversized,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    let mut index = 0;
    while !stopped(&stop) {
        let (what, path, content_type, body, expected, reason) = requests[index % requests.len()];
        index += 1;
        match target.post(path, content_type, body.to_vec()).await {
            Ok((status, answer)) if status == expected && answer["error"].as_str().is_some_and(|m| !m.is_empty()) => {
                tally.count(|counts| *counts.rejected_by_reason.entry(reason).or_default() += 1);
            }
            Ok((status, answer)) => tally.problem(format!("{what}: HTTP {status} (expected {expected}): {answer}")),
            Err(error) => tally.problem(format!("{what}: {error}")),
        }
        // Bad requests are a trickle next to the valid ones, as in a real cluster.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Slowloris: request headers trickled a byte at a time, never finished. The
/// server must cut each such client off within its header-read timeout.
pub async fn slow_clients(target: Target, tally: Arc<Tally>, stop: Stop) {
    const HEADERS: &[u8] =
        b"POST /mutate/headless-service HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Padding: ";
    while !stopped(&stop) {
        let started = Instant::now();
        let mut stream = match target.connect_tls().await {
            Ok(stream) => stream,
            Err(error) => {
                tally.problem(format!("slow client: {error}"));
                continue;
            }
        };
        let limit = target.client_timeout + Duration::from_secs(3);
        let mut cut_off = false;
        for byte in HEADERS.iter().chain(std::iter::repeat(&b'x')) {
            if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
                cut_off = true;
                break;
            }
            // Between bytes, see whether the server has closed the connection.
            let mut buffer = [0u8; 512];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await
            {
                cut_off = true;
                break;
            }
            if started.elapsed() > limit {
                break;
            }
        }
        if cut_off {
            tally.count(|counts| counts.slow_clients_cut_off += 1);
        } else {
            tally.problem(format!(
                "a slow client was still connected after {:?}",
                started.elapsed()
            ));
        }
    }
}

/// TLS handshakes that never finish: a silent TCP connection, and one that
/// sends the start of a ClientHello and stops. The server must close both
/// within its handshake timeout.
pub async fn stalled_handshakes(target: Target, tally: Arc<Tally>, stop: Stop) {
    let mut partial = false;
    while !stopped(&stop) {
        partial = !partial;
        let started = Instant::now();
        let mut stream = match TcpStream::connect(target.addr).await {
            Ok(stream) => stream,
            Err(error) => {
                tally.problem(format!("stalled handshake: connect: {error}"));
                continue;
            }
        };
        if partial {
            // A handshake record header announcing 512 bytes, and 3 of them.
            let _ = stream
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
                .await;
        }
        let limit = target.client_timeout + Duration::from_secs(3);
        let mut buffer = [0u8; 64];
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => tally.count(|counts| counts.stalled_handshakes_closed += 1),
            Ok(Ok(read)) => tally.problem(format!("a stalled handshake got {read} bytes instead of being closed")),
            Err(_) => tally.problem(format!(
                "a stalled handshake was still open after {:?}",
                started.elapsed()
            )),
        }
    }
}

/// Requests abandoned half-way: headers announce a 4 KiB body, 1 KiB is sent,
/// then the connection is dropped. The server must count each one and go on.
pub async fn abandoned_requests(target: Target, tally: Arc<Tally>, stop: Stop) {
    let head = b"POST /mutate/headless-service HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n";
    while !stopped(&stop) {
        match target.connect_tls().await {
            Ok(mut stream) => {
                let sent = async {
                    stream.write_all(head).await?;
                    stream.write_all(&target.service_review[..1024]).await?;
                    stream.flush().await?;
                    stream.shutdown().await
                };
                match sent.await {
                    // The server reads the headers, fails to read the body,
                    // and counts a rejection.
                    Ok(()) => tally.count(|counts| {
                        counts.abandoned_requests += 1;
                        *counts.rejected_by_reason.entry("body_read").or_default() += 1;
                    }),
                    Err(error) => tally.problem(format!("abandoned request: sending: {error}")),
                }
            }
            Err(error) => tally.problem(format!("abandoned request: {error}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An error and its sources, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
