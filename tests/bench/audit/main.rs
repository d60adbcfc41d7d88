//! # wasmhook-bench-audit — `wasmhook audit` at scale, against a real API server
//!
//! `make bench-audit`. Starts kube-apiserver v1.28 and etcd on loopback
//! (`wasmhook_tests::kube`, with a service CIDR large enough for the
//! seeded Services' cluster IPs), seeds 10,000 Services and 1,000
//! StatefulSets over 20 namespaces (the mix is in [`seed`]; seeding is timed
//! on its own), installs the PolicyReport CRDs, then runs the release
//! `wasmhook audit` with deploy/base's policy set, each run under GNU time:
//!
//! - once with an empty compile cache (cold), then `--rounds` rounds of the
//!   variants — the default command; each of three policies alone (the
//!   Services through headless-service; the StatefulSets through
//!   statefulset-service-name, which first takes a snapshot of every
//!   Service, and through its verify step, which reads none); any
//!   `--page-sizes` / `--workers` asked for — each round in a rotated order,
//!   so that a drift of the machine spreads over all of them;
//! - in every round, the listing floor: the same paginated lists the audit
//!   makes, parsed and nothing else, and `kubectl get … -A -o json`;
//! - for every run, the CPU time of kube-apiserver and etcd too: they share
//!   the machine with the audit;
//! - twice with `--report`: the first write of the PolicyReports, then an
//!   update in place; the reports are read back and must hold every result.
//!
//! Every run's JSON must count exactly the seeded objects and verdicts. The
//! report is printed and written to `target/bench/audit.md`. The Makefile
//! builds this driver in release too: its listing floor parses pages with
//! the same optimised serde_json the audit uses.

mod cluster;
mod report;
mod runs;
mod seed;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use cluster::{Cluster, Listed};
use runs::{Audit, GNU_TIME, Measured, Variant};
use seed::{Creation, Seed};
use wasmhook_tests::kube::KubeApi;

/// Measure `wasmhook audit` over a seeded test cluster.
#[derive(Debug, Parser)]
#[command(name = "wasmhook-bench-audit")]
struct Args {
    /// Services to seed.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// StatefulSets to seed.
    #[arg(long, default_value_t = 1_000)]
    statefulsets: usize,
    /// Namespaces to spread them over.
    #[arg(long, default_value_t = 20)]
    namespaces: usize,
    /// Creations in flight at once while seeding.
    #[arg(long, default_value_t = 16)]
    seed_concurrency: usize,
    /// Warm rounds (each runs every variant once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also run with these `--page-size`s (comma-separated).
    #[arg(long, value_delimiter = ',')]
    page_sizes: Vec<u32>,
    /// Also run with these `--workers` (comma-separated).
    #[arg(long, value_delimiter = ',')]
    workers: Vec<u32>,
    /// Skip the `--report` runs.
    #[arg(long)]
    no_report: bool,
    /// The `wasmhook` binary [default: target/release/wasmhook].
    #[arg(long)]
    wasmhook: Option<PathBuf>,
    /// Keep the cluster up at the end, until standard input closes (for
    /// experiments by hand: the kubeconfig's path is printed).
    #[arg(long)]
    hold: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wasmhook-bench-audit: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let target = target_dir()?;
    let binary = args.wasmhook.clone().unwrap_or_else(|| target.join("release/wasmhook"));
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: cargo build --release --bin wasmhook",
            binary.display()
        ));
    }
    if !Path::new(GNU_TIME).is_file() {
        return Err(format!("{GNU_TIME} is missing: apt-get install -y time"));
    }
    let seed = seed::plan(args.services, args.statefulsets, args.namespaces)?;
    let work_dir = target.join("bench/audit");
    std::fs::create_dir_all(&work_dir).map_err(|error| format!("{}: {error}", work_dir.display()))?;

    // The default service CIDR of the harness is a /24; a later flag wins.
    let api = KubeApi::start(&["--service-cluster-ip-range=10.0.0.0/16"])?;
    let cluster = Cluster::new(&api)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|error| error.to_string())?;
    let mut text = String::new();
    let _ = writeln!(text, "# wasmhook audit benchmark\n\n{}", report::machine(&binary));

    // What is there before the seed: the `default/kubernetes` Service.
    let mut expected = seed.expected.clone();
    let before = runtime.block_on(preexisting(&cluster))?;
    expected.objects += before;
    for policy in ["headless-service", "headless-service-verify"] {
        if let Some(summary) = expected.policies.get_mut(policy) {
            summary.pass += before;
        }
    }
    let seeded = runtime.block_on(seed_cluster(&cluster, &seed, args.seed_concurrency))?;
    let _ = writeln!(
        text,
        "Seeded {} Services and {} StatefulSets in {} namespaces ({} objects already there) in {:.1} s: {:.0} \
         objects/s, {} at once.\n",
        seed.services,
        seed.statefulsets,
        seed.namespaces.len(),
        before,
        seeded.as_secs_f64(),
        seed.objects.len() as f64 / seeded.as_secs_f64(),
        args.seed_concurrency
    );
    api.install_policy_report_crds()?;

    let audit = Audit {
        binary,
        config: Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/policies.yaml"),
        kubeconfig: api.kubeconfig.clone(),
        cache_dir: work_dir.join("cache"),
        work_dir: work_dir.clone(),
        server_dir: api.dir().to_owned(),
    };
    let variants = variants(args, &expected, seed.services + before, seed.statefulsets);
    let mut measured: Vec<(String, Measured)> = Vec::new();
    let mut record = |label: String, run: Measured| {
        eprintln!(
            "{label:<8} {:<26} {:>6} objects {:>6} results {:>6.2} s (audit {:>5.2} s) {:>6.0} objects/s {:>5.2} s CPU \
             (server {:>5.2} s) {:>6.1} MiB",
            run.variant,
            run.objects,
            run.results,
            run.wall.as_secs_f64(),
            run.audit_phase.unwrap_or_default().as_secs_f64(),
            run.objects_per_second(),
            run.cpu.as_secs_f64(),
            run.server_cpu.as_secs_f64(),
            run.max_rss_mib()
        );
        measured.push((label, run));
    };

    let _ = std::fs::remove_dir_all(&audit.cache_dir);
    record("cold".to_owned(), audit.run(&variants[0])?);
    let mut floors: Vec<(Listed, Listed, Duration)> = Vec::new();
    let mut kubectl: Vec<Duration> = Vec::new();
    for round in 0..args.rounds {
        for index in 0..variants.len() {
            let variant = &variants[(index + round) % variants.len()];
            record(format!("warm {}", round + 1), audit.run(variant)?);
        }
        let server_before = runs::server_cpu(api.dir());
        let (services, statefulsets) = runtime.block_on(listing_floor(&cluster))?;
        floors.push((
            services,
            statefulsets,
            runs::server_cpu(api.dir()).saturating_sub(server_before),
        ));
        kubectl.push(kubectl_get(&api)?);
    }
    let mut reports = Vec::new();
    if !args.no_report {
        for label in ["report 1", "report 2"] {
            let variant = Variant {
                name: "--report".to_owned(),
                args: vec!["--report".to_owned()],
                expected: expected.clone(),
            };
            let run = audit.run(&variant)?;
            let stored = runtime.block_on(stored_reports(&cluster))?;
            if stored.1 != run.results {
                return Err(format!(
                    "the PolicyReports hold {} results, the audit reported {}",
                    stored.1, run.results
                ));
            }
            let said = run.stderr.trim().lines().collect::<Vec<_>>().join("; ");
            reports.push((label, said, stored));
            record(label.to_owned(), run);
        }
    }

    report::write_tables(&mut text, &measured, &variants);
    report::write_floor(&mut text, &floors, &kubectl);
    for (label, said, (parts, results)) in &reports {
        let _ = writeln!(
            text,
            "- {label}: \"{said}\"; read back: {parts} report parts holding {results} results"
        );
    }
    println!("{text}");
    let path = target.join("bench/audit.md");
    std::fs::write(&path, &text).map_err(|error| format!("{}: {error}", path.display()))?;
    eprintln!("report written to {}", path.display());
    if args.hold {
        eprintln!(
            "holding the cluster: KUBECONFIG={} (close standard input to stop)",
            api.kubeconfig.display()
        );
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    }
    Ok(())
}

/// The variants each round runs.
fn variants(args: &Args, expected: &seed::Expected, services: usize, statefulsets: usize) -> Vec<Variant> {
    let mut variants = vec![Variant {
        name: "default".to_owned(),
        args: Vec::new(),
        expected: expected.clone(),
    }];
    // One policy each: the Services with one evaluation each; the
    // StatefulSets with the snapshot of every Service (context) and without.
    for (policy, objects) in [
        ("headless-service", services),
        ("statefulset-service-name", statefulsets),
        ("statefulset-service-name-verify", statefulsets),
    ] {
        variants.push(Variant {
            name: format!("--policy {policy}"),
            args: vec!["--policy".to_owned(), policy.to_owned()],
            expected: expected.only(policy, objects),
        });
    }
    for (flag, values) in [("--page-size", &args.page_sizes), ("--workers", &args.workers)] {
        for value in values {
            variants.push(Variant {
                name: format!("{flag} {value}"),
                args: vec![flag.to_owned(), value.to_string()],
                expected: expected.clone(),
            });
        }
    }
    variants
}

/// Services the policy set selects before the seed (outside the excluded
/// namespaces); StatefulSets there would make the expected counts unknown.
async fn preexisting(cluster: &Cluster) -> Result<usize, String> {
    let mut services = 0;
    cluster
        .list("/api/v1/services", 500, |service| {
            let namespace = service.pointer("/metadata/namespace").and_then(|ns| ns.as_str());
            services += usize::from(!matches!(namespace, Some("kube-system" | "wasmhook-system")));
        })
        .await?;
    let statefulsets = cluster.list("/apis/apps/v1/statefulsets", 500, |_| {}).await?;
    if statefulsets.items > 0 {
        return Err("the fresh cluster already has StatefulSets".to_owned());
    }
    Ok(services)
}

/// Creates the namespaces, then every object, `concurrency` at a time;
/// returns how long the objects took.
async fn seed_cluster(cluster: &Cluster, seed: &Seed, concurrency: usize) -> Result<Duration, String> {
    for namespace in &seed.namespaces {
        cluster.create(&namespace.path, &namespace.object).await?;
    }
    let objects: Arc<Vec<Creation>> = Arc::new(
        seed.objects
            .iter()
            .map(|each| Creation {
                path: each.path.clone(),
                object: each.object.clone(),
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (cluster, objects, next) = (cluster.clone(), objects.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(creation) = objects.get(index) else {
                    return Ok::<(), String>(());
                };
                cluster.create(&creation.path, &creation.object).await?;
                if (index + 1) % 2_000 == 0 {
                    eprintln!("seeded {} of {}", index + 1, objects.len());
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|error| error.to_string())??;
    }
    Ok(started.elapsed())
}

/// Each resource the full audit lists, once, in pages of 500 parsed into
/// JSON, and nothing else. (The audit lists Services twice: the context
/// snapshot statefulset-service-name reads, then the objects to judge.)
async fn listing_floor(cluster: &Cluster) -> Result<(Listed, Listed), String> {
    let services = cluster.list("/api/v1/services", 500, |_| {}).await?;
    let statefulsets = cluster.list("/apis/apps/v1/statefulsets", 500, |_| {}).await?;
    Ok((services, statefulsets))
}

/// `kubectl get services,statefulsets.apps -A -o json > /dev/null`.
fn kubectl_get(api: &KubeApi) -> Result<Duration, String> {
    let started = Instant::now();
    let status = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&api.kubeconfig)
        .args(["get", "services,statefulsets.apps", "-A", "-o", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|error| format!("kubectl: {error}"))?;
    if !status.success() {
        return Err(format!("kubectl get exited with {status}"));
    }
    Ok(started.elapsed())
}

/// PolicyReport parts of wasmhook's audit in the cluster, and the results
/// they hold.
async fn stored_reports(cluster: &Cluster) -> Result<(usize, usize), String> {
    let mut results = 0;
    let mut count = |report: &serde_json::Value| results += report["results"].as_array().map_or(0, Vec::len);
    let namespaced = cluster
        .list("/apis/wgpolicyk8s.io/v1alpha2/policyreports", 100, &mut count)
        .await?;
    let cluster_wide = cluster
        .list("/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports", 100, &mut count)
        .await?;
    Ok((namespaced.items + cluster_wide.items, results))
}

/// The Cargo target directory: this binary's directory's parent.
fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|error| error.to_string())?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .ok_or_else(|| format!("{} is not in a Cargo target directory", exe.display()))
}
