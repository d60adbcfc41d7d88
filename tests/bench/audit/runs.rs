//! One measured `wasmhook audit`: the release binary under GNU time
//! (`/usr/bin/time -v`, for the peak resident set and the CPU time), its
//! JSON checked against what was seeded, so that a run over an empty or
//! half-listed cluster fails instead of looking fast.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::seed::{Expected, Summary};

/// GNU time, which reports the peak resident set (`-v`).
pub const GNU_TIME: &str = "/usr/bin/time";

/// A variant of the audit's command line.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its name in the tables.
    pub name: String,
    /// Arguments after the common ones.
    pub args: Vec<String>,
    /// What it must report.
    pub expected: Expected,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The variant's name.
    pub variant: String,
    /// Objects judged.
    pub objects: usize,
    /// Results (object × policy).
    pub results: usize,
    /// Wall time of the process.
    pub wall: Duration,
    /// User + system CPU time of the process.
    pub cpu: Duration,
    /// CPU time kube-apiserver and etcd spent meanwhile (both share the
    /// machine's cores with the audit).
    pub server_cpu: Duration,
    /// Peak resident set.
    pub max_rss_kib: u64,
    /// The audit alone, as wasmhook reports it on stderr ("audited … in
    /// N s"): from connecting to the last finding, without loading the
    /// policies, writing the output or the PolicyReports.
    pub audit_phase: Option<Duration>,
    /// What it said on stderr (the PolicyReports line with `--report`).
    pub stderr: String,
}

impl Measured {
    /// Objects judged per second of wall time.
    pub fn objects_per_second(&self) -> f64 {
        self.objects as f64 / self.wall.as_secs_f64()
    }

    /// Peak resident set in MiB.
    pub fn max_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }
}

/// How every run calls the binary.
pub struct Audit {
    /// The release `wasmhook`.
    pub binary: PathBuf,
    /// The policy set.
    pub config: PathBuf,
    /// The test API server's kubeconfig.
    pub kubeconfig: PathBuf,
    /// The compile cache (emptied before the cold run).
    pub cache_dir: PathBuf,
    /// Where the JSON output and GNU time's report go.
    pub work_dir: PathBuf,
    /// The test API server's directory, which its and etcd's command lines
    /// name: how their processes are found.
    pub server_dir: PathBuf,
}

impl Audit {
    /// Runs `variant` once, measures it and checks its output.
    pub fn run(&self, variant: &Variant) -> Result<Measured, String> {
        let output = self.work_dir.join("audit.json");
        let time_report = self.work_dir.join("time.txt");
        let mut command = Command::new(GNU_TIME);
        command
            .arg("-v")
            .arg("-o")
            .arg(&time_report)
            .arg(&self.binary)
            .arg("audit")
            .arg("--config")
            .arg(&self.config)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(["--output", "json", "--progress", "never", "--fail-on", "never"])
            .args(&variant.args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&output).map_err(|error| format!("{}: {error}", output.display()))?)
            .stderr(Stdio::piped());
        let server_before = server_cpu(&self.server_dir);
        let started = Instant::now();
        let finished = command
            .output()
            .map_err(|error| format!("cannot run {GNU_TIME}: {error}"))?;
        let wall = started.elapsed();
        let server_cpu = server_cpu(&self.server_dir).saturating_sub(server_before);
        let stderr = String::from_utf8_lossy(&finished.stderr).into_owned();
        if !finished.status.success() {
            return Err(format!(
                "wasmhook audit {} exited with {}: {stderr}",
                variant.args.join(" "),
                finished.status
            ));
        }
        let (cpu, max_rss_kib) = time_report_of(&time_report)?;
        let (objects, results) = check(&output, &variant.expected)
            .map_err(|problem| format!("{}: {problem} (the output is in {})", variant.name, output.display()))?;
        let audit_phase = stderr.lines().find_map(|line| {
            let seconds = line
                .strip_prefix("audited ")?
                .split(" in ")
                .nth(1)?
                .split(" s")
                .next()?;
            seconds.parse::<f64>().ok().map(Duration::from_secs_f64)
        });
        Ok(Measured {
            audit_phase,
            variant: variant.name.clone(),
            objects,
            results,
            wall,
            cpu,
            server_cpu,
            max_rss_kib,
            stderr,
        })
    }
}

/// User + system CPU time of every process whose command line names `dir`
/// (kube-apiserver and etcd), from `/proc/<pid>/stat` in clock ticks of
/// 10 ms (`USER_HZ`, 100 on Linux).
pub fn server_cpu(dir: &Path) -> Duration {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let mut ticks = 0u64;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(command_line) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&command_line).contains(&needle) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // The fields after the command name, which may hold spaces: state is
        // the first, utime and stime the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        ticks += [11, 12]
            .iter()
            .filter_map(|&index| fields.get(index)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Duration::from_millis(ticks * 10)
}

/// CPU time and peak RSS from GNU time's `-v` report.
fn time_report_of(path: &Path) -> Result<(Duration, u64), String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let field = |label: &str| -> Result<&str, String> {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(str::trim)
            .ok_or_else(|| format!("GNU time's report has no {label:?}: {text}"))
    };
    let seconds = |label: &str| -> Result<f64, String> {
        field(label)?
            .parse::<f64>()
            .map_err(|error| format!("{label}: {error}"))
    };
    let cpu = seconds("User time (seconds):")? + seconds("System time (seconds):")?;
    let rss = field("Maximum resident set size (kbytes):")?
        .parse::<u64>()
        .map_err(|error| format!("the peak RSS: {error}"))?;
    Ok((Duration::from_secs_f64(cpu), rss))
}

/// Checks the audit's JSON against `expected`; returns (objects, results).
fn check(path: &Path, expected: &Expected) -> Result<(usize, usize), String> {
    let text = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let document: Value = serde_json::from_slice(&text).map_err(|error| format!("not JSON: {error}"))?;
    let number = |pointer: &str| document.pointer(pointer).and_then(Value::as_u64).map(|n| n as usize);
    let objects = number("/objects").ok_or("no `objects`")?;
    let summary: Summary = serde_json::from_value(document["summary"].clone()).map_err(|error| error.to_string())?;
    let results = document["results"].as_array().map_or(0, Vec::len);
    if objects != expected.objects {
        return Err(format!("{objects} objects judged, {} seeded", expected.objects));
    }
    if summary != expected.summary() || results != summary.total() {
        return Err(format!(
            "summary {summary:?} ({results} results), expected {:?}",
            expected.summary()
        ));
    }
    for policy in document["policies"].as_array().into_iter().flatten() {
        let name = policy["name"].as_str().unwrap_or_default();
        let found: Summary = serde_json::from_value(policy["summary"].clone()).map_err(|error| error.to_string())?;
        let wanted = expected.policies.get(name).copied().unwrap_or_default();
        if found != wanted {
            return Err(format!("{name}: {found:?}, expected {wanted:?}"));
        }
    }
    Ok((objects, results))
}
