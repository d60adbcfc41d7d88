//! # wasmhook-soak — sustained mixed load, faults and a graceful stop
//!
//! Runs the real `wasmhook` binary (the one built beside this one) over TLS on
//! loopback for `--duration` (default 10 minutes; `make test` runs 20 seconds)
//! and proves that nothing is lost and nothing falls over:
//!
//! - valid reviews for every recorded fixture, to both built-in policies,
//!   each answer checked against `tests/fixtures/expected.json` (verdict and
//!   exact patch), interleaved with malformed and oversized requests, slow
//!   clients, abandoned requests, TLS handshakes that never finish, and
//!   reviews for policies that time out, trap and exhaust their memory;
//! - during the load: certificate rotations (Secret-style symlink swaps, each
//!   confirmed by a new handshake) and policy-set reloads by SIGHUP, one of
//!   them with a broken module;
//! - the server's process: the same one throughout, its RSS and open file
//!   descriptors sampled, growth after warm-up bounded;
//! - its metrics: equal to what was sent;
//! - the end: SIGTERM under load, every request already in flight answered,
//!   exit code 0.
//!
//! The report is printed and written to `target/soak/report.md`; the exit
//! code is 1 if any criterion failed.

mod server;
mod traffic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::StatusCode;
use server::{Sample, ServerProcess, ServerSetup};
use tokio_rustls::TlsConnector;
use traffic::{Misbehaving, Tally, Target};
use wasmhook_tests::certs::TestCerts;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Soak-test the wasmhook server.
#[derive(Debug, Parser)]
#[command(name = "wasmhook-soak")]
struct Args {
    /// How long the mixed load runs (e.g. 20s, 10m).
    #[arg(long, default_value = "10m", value_parser = wasmhook::duration::parse)]
    duration: Duration,
    /// Samples before this are warm-up, not growth [default: a quarter of --duration, at most 1m].
    #[arg(long, value_parser = wasmhook::duration::parse)]
    warmup: Option<Duration>,
    /// Fail if resident memory grows by more than this after warm-up.
    #[arg(long, default_value_t = 48)]
    max_rss_growth_mib: u64,
    /// Fail if open file descriptors grow by more than this after warm-up.
    #[arg(long, default_value_t = 16)]
    max_fd_growth: i64,
    /// Concurrent clients sending valid reviews.
    #[arg(long, default_value_t = 3)]
    valid_clients: usize,
    /// The `wasmhook` binary [default: the one beside this binary].
    #[arg(long)]
    server: Option<PathBuf>,
}

impl Args {
    /// Samples before this are warm-up, not growth.
    fn warmup(&self) -> Duration {
        self.warmup
            .unwrap_or_else(|| (self.duration / 4).min(Duration::from_secs(60)))
    }
}

/// The server's handshake and header-read timeout in the soak: short, so
/// slow clients and stalled handshakes are cut off many times per run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest body the soak's server accepts.
const MAX_BODY_BYTES: usize = 1 << 20;
/// The review the misbehaving policies and the malformed requests use.
const SERVICE_REVIEW: &str = "crafted-mutating-create-service-db-headless.json";

/// How many slow reviews (the spinner's) are in flight when SIGTERM arrives.
const SLOW_REVIEWS_AT_SIGTERM: usize = 8;
/// The spinner's timeout in the shutdown phase: the slow reviews must still
/// be running when the signal arrives, and the drain waits for them.
const SHUTDOWN_SPINNER_TIMEOUT: &str = "3s";

/// The misbehaving policies in the soak's policy set, and their answers.
fn misbehaving() -> Vec<Misbehaving> {
    vec![
        Misbehaving {
            policy: "spinner",
            allowed: true,
            says: "timed out",
        },
        Misbehaving {
            policy: "crasher",
            allowed: false,
            says: "deliberate panic",
        },
        Misbehaving {
            policy: "hog",
            allowed: true,
            says: "memory limit",
        },
        Misbehaving {
            policy: "reloaded",
            allowed: true,
            says: "",
        },
    ]
}

/// The soak's policy set. `spinner_timeout` changes between reloads so that
/// each reload really changes something.
fn policy_set(spinner_timeout: &str) -> String {
    let rules = r#"rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [services]}]"#;
    format!(
        "apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: headless-service
    module: builtin:headless-service
  - name: statefulset-service-name
    module: builtin:statefulset-service-name
  - name: spinner
    module: ./misbehaving.wasm
    failurePolicy: Ignore
    timeout: {spinner_timeout}
    settings: {{behaviour: loop}}
    {rules}
  - name: crasher
    module: ./misbehaving.wasm
    failurePolicy: Fail
    settings: {{behaviour: panic}}
    {rules}
  - name: hog
    module: ./misbehaving.wasm
    failurePolicy: Ignore
    memoryLimit: 16Mi
    settings: {{behaviour: allocate}}
    {rules}
  - name: reloaded
    module: ./reloaded.wasm
    settings: {{behaviour: allow}}
    {rules}
"
    )
}

/// A fault injected during the load.
#[derive(Debug, Clone, Copy)]
enum Fault {
    RotateCertificate,
    Reload(&'static str),
    BreakModule,
    RestoreModule,
}

const FAULTS: [Fault; 6] = [
    Fault::RotateCertificate,
    Fault::Reload("250ms"),
    Fault::BreakModule,
    Fault::RestoreModule,
    Fault::RotateCertificate,
    Fault::Reload("200ms"),
];

/// What the faults did, for the metrics comparison.
#[derive(Debug, Default)]
struct FaultCounts {
    rotations: u64,
    good_reloads: u64,
    broken_reloads: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    wasmhook_tests::certs::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(soak(&args)) {
        Ok(report) => {
            println!("{}", report.text);
            let dir = server::output_dir();
            let written =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("report.md"), &report.text));
            if let Err(error) = written {
                eprintln!("warning: cannot write {}: {error}", dir.join("report.md").display());
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("soak: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The soak's outcome.
struct Report {
    text: String,
    passed: bool,
}

async fn soak(args: &Args) -> Result<Report, String> {
    let binary = match &args.server {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()
            .map_err(|error| error.to_string())?
            .with_file_name("wasmhook"),
    };
    if !binary.is_file() {
        return Err(format!(
            "{} does not exist: build it first (cargo build --bin wasmhook, with the same profile)",
            binary.display()
        ));
    }
    let work = tempfile::tempdir().map_err(|error| error.to_string())?;
    let mut certs = TestCerts::new();
    let module = std::fs::read(wasmhook_policy_artifacts::MISBEHAVING_POLICY_PATH)
        .map_err(|error| format!("the misbehaving test policy: {error}"))?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(work.path().join(name), bytes).map_err(|error| format!("writing {name}: {error}"))
    };
    write("misbehaving.wasm", &module)?;
    write("reloaded.wasm", &module)?;
    write("policies.yaml", policy_set("200ms").as_bytes())?;
    let output = server::output_dir();
    std::fs::create_dir_all(&output).map_err(|error| format!("{}: {error}", output.display()))?;
    let tls = certs.files();
    let setup = ServerSetup {
        binary,
        config: work.path().join("policies.yaml"),
        cert: tls.cert,
        key: tls.key,
        cache_dir: output.join("cache"),
        log: output.join("server.log"),
        ready_file: work.path().join("ready.json"),
        max_body_bytes: MAX_BODY_BYTES,
        client_timeout: CLIENT_TIMEOUT,
    };
    let started_at = Instant::now();
    let mut server = tokio::task::block_in_place(|| ServerProcess::start(&setup))?;
    let pid = server.pid();
    println!(
        "soak: wasmhook (pid {pid}) ready in {:.1?}; mixed load for {:?}",
        started_at.elapsed(),
        args.duration
    );

    let target = Target {
        addr: server.addr,
        client: certs.http1_client(),
        tls: TlsConnector::from(Arc::new(certs.client_config(&[b"http/1.1"]))),
        service_review: Arc::new(
            std::fs::read(wasmhook_tests::reviews_dir().join(SERVICE_REVIEW)).map_err(|error| error.to_string())?,
        ),
        max_body_bytes: MAX_BODY_BYTES,
        client_timeout: CLIENT_TIMEOUT,
    };
    let cases: Arc<Vec<_>> = Arc::new(
        wasmhook_tests::cases()
            .into_iter()
            .filter(|case| case.settings.is_null())
            .collect(),
    );
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));

    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..args.valid_clients {
        tasks.spawn(traffic::valid_reviews(
            target.clone(),
            cases.clone(),
            tally.clone(),
            stop.clone(),
            client * 7,
        ));
    }
    let policies = Arc::new(misbehaving());
    tasks.spawn(traffic::misbehaving_reviews(
        target.clone(),
        policies.clone(),
        tally.clone(),
        stop.clone(),
    ));
    tasks.spawn(traffic::malformed_requests(target.clone(), tally.clone(), stop.clone()));
    tasks.spawn(traffic::abandoned_requests(target.clone(), tally.clone(), stop.clone()));
    for _ in 0..2 {
        tasks.spawn(traffic::slow_clients(target.clone(), tally.clone(), stop.clone()));
        tasks.spawn(traffic::stalled_handshakes(target.clone(), tally.clone(), stop.clone()));
    }

    // Faults at even intervals; the process sampled every half second.
    let load_started = Instant::now();
    let mut samples: Vec<(Duration, Sample)> = Vec::new();
    let mut faults = FaultCounts::default();
    let mut next_fault = 0;
    while load_started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = server.exited() {
            tally.problem(format!("the server exited during the load: {status}"));
            break;
        }
        if let Some(sample) = server.sample() {
            samples.push((load_started.elapsed(), sample));
        }
        let due = args
            .duration
            .mul_f64((next_fault + 1) as f64 / (FAULTS.len() + 1) as f64);
        if next_fault < FAULTS.len() && load_started.elapsed() >= due {
            let fault = FAULTS[next_fault];
            next_fault += 1;
            if let Err(problem) = inject(fault, &mut certs, &target, &server, work.path(), &module, &mut faults).await {
                tally.problem(format!("{fault:?}: {problem}"));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|error| format!("a traffic task panicked: {error}"))?;
    }
    let load_time = load_started.elapsed();

    let mut checks = Vec::new();
    let metrics = server.metrics()?;
    if std::env::var_os("WASMHOOK_SOAK_DUMP_METRICS").is_some() {
        eprintln!("{}", metrics.text);
    }
    let counts = tally.counts();
    compare_metrics(&metrics, &counts, &faults, &mut checks);
    let growth = Growth::of(&samples, args.warmup());
    checks.push(Check::new(
        "resident memory after warm-up",
        growth.rss_kib <= args.max_rss_growth_mib as i64 * 1024,
        format!(
            "grew {:+.1} MiB (bound {} MiB)",
            growth.rss_kib as f64 / 1024.0,
            args.max_rss_growth_mib
        ),
    ));
    checks.push(Check::new(
        "open file descriptors after warm-up",
        growth.fds <= args.max_fd_growth,
        format!("grew {:+} (bound {})", growth.fds, args.max_fd_growth),
    ));
    checks.push(Check::new(
        "the server never restarted",
        server.exited().is_none() && server.pid() == pid,
        format!("pid {pid} ran throughout"),
    ));

    let shutdown = shutdown_under_load(&target, &mut server, work.path(), cases.clone()).await;
    checks.push(Check::new(
        "SIGTERM under load: every request in flight answered",
        shutdown.in_flight_answered == shutdown.in_flight && shutdown.problems.is_empty(),
        format!(
            "{}/{} in-flight answered; {} more answered after SIGTERM, {} refused once it stopped accepting{}",
            shutdown.in_flight_answered,
            shutdown.in_flight,
            shutdown.answered_after_signal,
            shutdown.refused_after_signal,
            if shutdown.problems.is_empty() {
                String::new()
            } else {
                format!("; problems: {}", shutdown.problems.join("; "))
            }
        ),
    ));
    checks.push(Check::new(
        "SIGTERM: exit code 0",
        shutdown.exit_code == Some(0),
        format!("exit code {:?} after {:.1?}", shutdown.exit_code, shutdown.exit_took),
    ));

    let (problem_count, problems) = tally.problems();
    checks.insert(
        0,
        Check::new(
            "every request answered as expected (valid ones correctly), no 5xx, nothing lost",
            problem_count == 0,
            format!("{problem_count} problems"),
        ),
    );
    let passed = checks.iter().all(|check| check.passed);
    let text = report(args, load_time, &counts, &faults, &samples, &growth, &checks, &problems);
    Ok(Report { text, passed })
}

/// Applies one fault and confirms the server took it.
async fn inject(
    fault: Fault,
    certs: &mut TestCerts,
    target: &Target,
    server: &ServerProcess,
    work: &Path,
    module: &[u8],
    counts: &mut FaultCounts,
) -> Result<(), String> {
    match fault {
        Fault::RotateCertificate => {
            let leaf = certs.rotate();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if target.presented_leaf().await? == leaf {
                    counts.rotations += 1;
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err("new handshakes still get the old certificate after 15 s".into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Fault::Reload(timeout) => {
            std::fs::write(work.join("policies.yaml"), policy_set(timeout)).map_err(|error| error.to_string())?;
            reload(server, "success").await?;
            counts.good_reloads += 1;
            Ok(())
        }
        Fault::BreakModule => {
            std::fs::write(work.join("reloaded.wasm"), b"\0asm this is not a component")
                .map_err(|error| error.to_string())?;
            reload(server, "failure").await?;
            counts.broken_reloads += 1;
            let (status, body) = server.readiness()?;
            if status != 200 || !body.contains("reloaded") {
                return Err(format!(
                    "readiness should stay 200 and name the broken policy: {status} {body}"
                ));
            }
            Ok(())
        }
        Fault::RestoreModule => {
            std::fs::write(work.join("reloaded.wasm"), module).map_err(|error| error.to_string())?;
            reload(server, "success").await?;
            counts.good_reloads += 1;
            Ok(())
        }
    }
}

/// Reloads the policy set by SIGHUP and waits until the server counts the
/// reload with `result` (`success` or `failure`).
async fn reload(server: &ServerProcess, result: &str) -> Result<(), String> {
    let label = [("result", result)];
    let before = server.metrics()?.sum("wasmhook_config_reloads_total", &label);
    server.signal("HUP")?;
    wait_for_metric(
        server,
        "wasmhook_config_reloads_total",
        &label,
        before + 1,
        Duration::from_secs(60),
    )
    .await
}

/// Waits until the sum of metric `name`'s samples with `labels` reaches
/// `at_least`, for at most `within`.
async fn wait_for_metric(
    server: &ServerProcess,
    name: &str,
    labels: &[(&str, &str)],
    at_least: u64,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if server.metrics()?.sum(name, labels) >= at_least {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{name}{labels:?} did not reach {at_least} within {within:?}"))
}

/// One pass/fail criterion.
struct Check {
    what: &'static str,
    passed: bool,
    detail: String,
}

impl Check {
    fn new(what: &'static str, passed: bool, detail: String) -> Self {
        Self { what, passed, detail }
    }
}

/// The server's counters against what the soak sent.
fn compare_metrics(metrics: &server::Metrics, counts: &traffic::Counts, faults: &FaultCounts, checks: &mut Vec<Check>) {
    let mut mismatches = Vec::new();
    let mut expect = |what: String, expected: u64, actual: u64| {
        if expected != actual {
            mismatches.push(format!("{what}: sent {expected}, server counted {actual}"));
        }
    };
    for (policy, answered) in &counts.answered_by_policy {
        expect(
            format!("reviews of {policy}"),
            *answered,
            metrics.sum("wasmhook_reviews_total", &[("policy", policy)]),
        );
    }
    expect(
        "reviews, all policies".into(),
        counts.answered_by_policy.values().sum(),
        metrics.sum("wasmhook_reviews_total", &[]),
    );
    for (reason, rejected) in &counts.rejected_by_reason {
        expect(
            format!("rejections for {reason}"),
            *rejected,
            metrics.sum("wasmhook_rejected_requests_total", &[("reason", reason)]),
        );
    }
    expect(
        "rejections, all reasons".into(),
        counts.rejected_by_reason.values().sum(),
        metrics.sum("wasmhook_rejected_requests_total", &[]),
    );
    expect(
        "unfinished TLS handshakes closed".into(),
        counts.stalled_handshakes_closed,
        metrics.sum(
            "wasmhook_connection_errors_total",
            &[("reason", "tls_handshake_timeout")],
        ),
    );
    expect(
        "certificate reloads".into(),
        faults.rotations,
        metrics.sum("wasmhook_certificate_reloads_total", &[("result", "success")]),
    );
    expect(
        "successful policy-set reloads".into(),
        faults.good_reloads,
        metrics.sum("wasmhook_config_reloads_total", &[("result", "success")]),
    );
    expect(
        "failed policy-set reloads".into(),
        faults.broken_reloads,
        metrics.sum("wasmhook_config_reloads_total", &[("result", "failure")]),
    );
    expect(
        "load failures of the broken module".into(),
        faults.broken_reloads,
        metrics.sum("wasmhook_policy_load_failures_total", &[("policy", "reloaded")]),
    );
    // Every slow client must be counted as a header timeout. The same reason
    // also counts keep-alive connections closed for idling past the
    // header-read timeout (it is the idle timeout too), and the soak's own
    // pooled client may leave one idle that long on a starved machine (a
    // 20-second debug run counted 21 for 20 slow clients): more is not an
    // error, fewer is.
    let header_timeouts = metrics.sum("wasmhook_connection_errors_total", &[("reason", "header_timeout")]);
    if header_timeouts < counts.slow_clients_cut_off {
        mismatches.push(format!(
            "slow clients cut off (header timeouts): sent {}, server counted {header_timeouts}",
            counts.slow_clients_cut_off
        ));
    }
    // An abandoned request is counted exactly as a `body_read` rejection
    // (above). Whether its connection then also ends as "lost" is a race:
    // the client closes right after its half body, and the server's 400
    // either meets a reset connection (lost) or is written before the close
    // and the connection ends cleanly (a 10-minute run saw 50 of 11,520 end
    // cleanly). An oversized body may lose its connection too (the server
    // answers 413 without reading it all). Nothing else the soak sends may
    // lose one: more lost connections than these two mean the server dropped
    // connections it should have kept.
    let lost = metrics.sum("wasmhook_connection_errors_total", &[("reason", "connection_lost")]);
    let may_lose = counts.abandoned_requests
        + counts
            .rejected_by_reason
            .get("body_too_large")
            .copied()
            .unwrap_or_default();
    if lost > may_lose {
        mismatches.push(format!(
            "the server counted {lost} lost connections, but only {} abandoned requests and oversized bodies may lose one",
            may_lose
        ));
    }
    let detail = if mismatches.is_empty() {
        format!(
            "{} reviews, {} rejections, {} rotations, {} reloads ({} with a broken module) all counted",
            counts.answered_by_policy.values().sum::<u64>(),
            counts.rejected_by_reason.values().sum::<u64>(),
            faults.rotations,
            faults.good_reloads + faults.broken_reloads,
            faults.broken_reloads
        )
    } else {
        mismatches.join("; ")
    };
    checks.push(Check::new("metrics equal what was sent", mismatches.is_empty(), detail));
}

/// Growth after warm-up: the median of the last tenth of the samples
/// against the median of the tenth right after warm-up.
#[derive(Debug, Default)]
struct Growth {
    rss_kib: i64,
    fds: i64,
    first: Option<Sample>,
    last: Option<Sample>,
}

impl Growth {
    fn of(samples: &[(Duration, Sample)], warmup: Duration) -> Self {
        let settled: Vec<Sample> = samples
            .iter()
            .filter(|(at, _)| *at >= warmup)
            .map(|(_, sample)| *sample)
            .collect();
        if settled.len() < 2 {
            return Self::default();
        }
        let window = (settled.len() / 10).max(1);
        let median = |part: &[Sample]| {
            let mut rss: Vec<u64> = part.iter().map(|sample| sample.rss_kib).collect();
            let mut fds: Vec<usize> = part.iter().map(|sample| sample.fds).collect();
            rss.sort_unstable();
            fds.sort_unstable();
            Sample {
                rss_kib: rss[rss.len() / 2],
                fds: fds[fds.len() / 2],
            }
        };
        let first = median(&settled[..window]);
        let last = median(&settled[settled.len() - window..]);
        Self {
            rss_kib: last.rss_kib as i64 - first.rss_kib as i64,
            fds: last.fds as i64 - first.fds as i64,
            first: Some(first),
            last: Some(last),
        }
    }
}

/// What happened when SIGTERM arrived under load.
struct Shutdown {
    in_flight: usize,
    in_flight_answered: usize,
    answered_after_signal: u64,
    refused_after_signal: u64,
    problems: Vec<String>,
    exit_code: Option<i32>,
    exit_took: Duration,
}

/// Whether a request failed the way a stopping server refuses one: no
/// connection, or a kept-alive one closed before the server read the request.
/// The kernel ends such a connection with a FIN, or with a RST when the
/// request's bytes had already arrived unread ("Connection reset by peer"):
/// the same idle-close race either way, and the request was not processed.
fn refused_cleanly(error: &str) -> bool {
    [
        "Connection refused",
        "connection closed before message completed",
        "Connection reset by peer",
    ]
    .iter()
    .any(|clean| error.contains(clean))
}

/// Starts reviews that take a while (the spinner runs into its timeout),
/// keeps valid reviews coming, sends SIGTERM, and checks that every review
/// in flight is answered, that later ones are refused cleanly (never a 5xx or
/// a broken answer), and that the process exits 0.
async fn shutdown_under_load(
    target: &Target,
    server: &mut ServerProcess,
    work: &Path,
    cases: Arc<Vec<wasmhook_tests::Case>>,
) -> Shutdown {
    let mut problems = Vec::new();
    // The slow reviews must still be running when the signal arrives: the
    // spinner is given long enough to be caught in flight on a loaded machine.
    let slow = std::fs::write(work.join("policies.yaml"), policy_set(SHUTDOWN_SPINNER_TIMEOUT))
        .map_err(|error| error.to_string());
    if let Err(error) = match slow {
        Ok(()) => reload(server, "success").await,
        Err(error) => Err(error),
    } {
        problems.push(format!("giving the spinner a longer timeout: {error}"));
    }
    let spinner = Arc::new(misbehaving().into_iter().next().expect("the spinner"));
    let in_flight: Vec<_> = (0..SLOW_REVIEWS_AT_SIGTERM)
        .map(|_| {
            let (target, spinner) = (target.clone(), spinner.clone());
            tokio::spawn(async move {
                let answer = target
                    .post("/mutate/spinner", "application/json", target.service_review.to_vec())
                    .await;
                match answer {
                    Ok((StatusCode::OK, answer)) => traffic::check_misbehaving(&spinner, &answer),
                    Ok((status, answer)) => Err(format!("HTTP {status}: {answer}")),
                    Err(error) => Err(error),
                }
            })
        })
        .collect();
    // Nothing else is being sent yet: the server's in-flight count is the
    // slow reviews'. Once it shows all of them, they are being evaluated.
    if let Err(error) = wait_for_metric(
        server,
        "wasmhook_reviews_in_flight",
        &[],
        SLOW_REVIEWS_AT_SIGTERM as u64,
        Duration::from_secs(1),
    )
    .await
    {
        problems.push(format!("the slow reviews never were all in flight: {error}"));
    }
    let signalled = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = (0..2)
        .map(|offset| {
            let (target, cases, signalled) = (target.clone(), cases.clone(), signalled.clone());
            tokio::spawn(async move {
                let (mut answered_after, mut refused, mut problems) = (0u64, 0u64, Vec::new());
                let mut index = offset;
                loop {
                    let case = &cases[index % cases.len()];
                    index += 1;
                    let body = std::fs::read(wasmhook_tests::reviews_dir().join(&case.fixture)).expect("a fixture");
                    let sent_after = signalled.load(std::sync::atomic::Ordering::SeqCst);
                    let answer = target
                        .post(&format!("/mutate/{}", case.policy), "application/json", body)
                        .await;
                    let failed_after = signalled.load(std::sync::atomic::Ordering::SeqCst);
                    match answer {
                        Ok((StatusCode::OK, answer)) => {
                            if let Err(problem) = case.check_answer(&answer) {
                                problems.push(problem);
                            }
                            answered_after += u64::from(sent_after);
                        }
                        Ok((status, answer)) => problems.push(format!("HTTP {status} during shutdown: {answer}")),
                        // Once the server stops accepting, a new request is refused:
                        // the connection is refused, or closed before the server read
                        // the request (HTTP/1.1's idle-close race: why the Deployment
                        // sets --shutdown-delay). Never a 5xx, never a broken answer.
                        Err(error) if failed_after && refused_cleanly(&error) => {
                            refused += 1;
                            break;
                        }
                        Err(error) => problems.push(error),
                    }
                    if problems.len() > 5 {
                        break;
                    }
                }
                (answered_after, refused, problems)
            })
        })
        .collect();
    // Let the valid streams get going, then stop the server.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The flag goes up before the signal: sending it runs `kill`, which can
    // take milliseconds on a loaded machine, and a request the stopping
    // server refuses in that window must count as refused, not as a problem
    // (seen under `make test` beside other load).
    signalled.store(true, std::sync::atomic::Ordering::SeqCst);
    let signal_sent = Instant::now();
    if let Err(error) = server.signal("TERM") {
        problems.push(error);
    }
    let exit = tokio::task::block_in_place(|| server.wait(Duration::from_secs(40)));
    let exit_took = signal_sent.elapsed();

    let total = in_flight.len();
    let mut in_flight_answered = 0;
    for task in in_flight {
        match task.await {
            Ok(Ok(())) => in_flight_answered += 1,
            Ok(Err(problem)) => problems.push(format!("in flight at SIGTERM: {problem}")),
            Err(error) => problems.push(format!("in flight at SIGTERM: panicked: {error}")),
        }
    }
    let (mut answered_after_signal, mut refused_after_signal) = (0, 0);
    for stream in streams {
        match stream.await {
            Ok((answered, refused, stream_problems)) => {
                answered_after_signal += answered;
                refused_after_signal += refused;
                problems.extend(stream_problems);
            }
            Err(error) => problems.push(format!("a valid stream panicked: {error}")),
        }
    }
    Shutdown {
        in_flight: total,
        in_flight_answered,
        answered_after_signal,
        refused_after_signal,
        problems,
        exit_code: exit.and_then(|status| status.code()),
        exit_took,
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    load_time: Duration,
    counts: &traffic::Counts,
    faults: &FaultCounts,
    samples: &[(Duration, Sample)],
    growth: &Growth,
    checks: &[Check],
    problems: &[String],
) -> String {
    let mut text = String::new();
    let mut line = |row: String| {
        text.push_str(&row);
        text.push('\n');
    };
    let reviews: u64 = counts.answered_by_policy.values().sum();
    let rejected: u64 = counts.rejected_by_reason.values().sum();
    line(format!("# wasmhook soak: {:.0?} of mixed load\n", load_time));
    line("| sent | count |".into());
    line("|---|---:|".into());
    line(format!(
        "| valid reviews answered correctly (every fixture, both built-ins) | {} |",
        counts.valid_ok
    ));
    line(format!(
        "| reviews for misbehaving policies (timeout, trap, memory bomb, reloaded) | {} |",
        counts.misbehaving_ok
    ));
    for (reason, count) in &counts.rejected_by_reason {
        line(format!("| refused with a 4xx: {reason} | {count} |"));
    }
    line(format!(
        "| requests abandoned half-way through the body | {} |",
        counts.abandoned_requests
    ));
    line(format!(
        "| slow clients (headers trickled) cut off | {} |",
        counts.slow_clients_cut_off
    ));
    line(format!(
        "| TLS handshakes left unfinished, closed by the server | {} |",
        counts.stalled_handshakes_closed
    ));
    line(format!(
        "| certificate rotations / policy reloads (of which with a broken module) | {} / {} ({}) |",
        faults.rotations,
        faults.good_reloads + faults.broken_reloads,
        faults.broken_reloads
    ));
    line(format!(
        "| total: reviews answered / requests refused | {reviews} / {rejected} ({:.0} reviews/s) |\n",
        reviews as f64 / load_time.as_secs_f64()
    ));
    let peak = samples
        .iter()
        .map(|(_, sample)| sample.rss_kib)
        .max()
        .unwrap_or_default();
    let max_fds = samples.iter().map(|(_, sample)| sample.fds).max().unwrap_or_default();
    if let (Some(first), Some(last)) = (growth.first, growth.last) {
        line(format!(
            "Process ({} samples; warm-up {:?}): RSS {:.1} → {:.1} MiB (peak {:.1} MiB), open fds {} → {} (peak {}).\n",
            samples.len(),
            args.warmup(),
            first.rss_kib as f64 / 1024.0,
            last.rss_kib as f64 / 1024.0,
            peak as f64 / 1024.0,
            first.fds,
            last.fds,
            max_fds
        ));
    }
    line("| criterion | result | |".into());
    line("|---|---|---|".into());
    for check in checks {
        line(format!(
            "| {} | {} | {} |",
            check.what,
            if check.passed { "pass" } else { "**FAIL**" },
            check.detail
        ));
    }
    if !problems.is_empty() {
        line("\nFirst problems:".into());
        for problem in problems {
            line(format!("- {problem}"));
        }
    }
    let passed = checks.iter().all(|check| check.passed);
    line(format!("\nsoak: {}", if passed { "PASSED" } else { "FAILED" }));
    text
}
