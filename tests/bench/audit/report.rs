//! The benchmark's report: every run, the warm runs' medians, the listing
//! floor, and the machine it ran on (the head of `target/bench/audit.md`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::cluster::Listed;
use super::runs::{Measured, Variant};

/// Every run, then the warm runs' medians per variant.
pub fn write_tables(report: &mut String, measured: &[(String, Measured)], variants: &[Variant]) {
    let _ = writeln!(
        report,
        "| run | variant | objects | results | wall s | of which the audit s | objects/s | CPU s | API server + etcd CPU s | peak RSS MiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (label, run) in measured {
        let _ = writeln!(
            report,
            "| {label} | {} | {} | {} | {:.2} | {} | {:.0} | {:.2} | {:.2} | {:.1} |",
            run.variant,
            run.objects,
            run.results,
            run.wall.as_secs_f64(),
            run.audit_phase
                .map_or_else(|| "?".to_owned(), |each| format!("{:.2}", each.as_secs_f64())),
            run.objects_per_second(),
            run.cpu.as_secs_f64(),
            run.server_cpu.as_secs_f64(),
            run.max_rss_mib()
        );
    }
    let _ = writeln!(
        report,
        "\nWarm runs, medians (min–max):\n\n| variant | runs | wall s | objects/s | CPU s | API server + etcd CPU s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for variant in variants {
        let runs: Vec<&Measured> = measured
            .iter()
            .filter(|(label, run)| label.starts_with("warm") && run.variant == variant.name)
            .map(|(_, run)| run)
            .collect();
        if runs.is_empty() {
            continue;
        }
        let spread = |value: &dyn Fn(&Measured) -> f64, digits: usize| {
            let mut values: Vec<f64> = runs.iter().map(|run| value(run)).collect();
            values.sort_by(f64::total_cmp);
            format!(
                "{:.digits$} ({:.digits$}–{:.digits$})",
                values[values.len() / 2],
                values[0],
                values[values.len() - 1]
            )
        };
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} | {} |",
            variant.name,
            runs.len(),
            spread(&|run| run.wall.as_secs_f64(), 2),
            spread(&Measured::objects_per_second, 0),
            spread(&|run| run.cpu.as_secs_f64(), 2),
            spread(&|run| run.server_cpu.as_secs_f64(), 2),
            spread(&Measured::max_rss_mib, 1),
        );
    }
}

/// The listing floor's and kubectl's times.
pub fn write_floor(report: &mut String, floors: &[(Listed, Listed, Duration)], kubectl: &[Duration]) {
    let seconds = |each: Duration| format!("{:.2}", each.as_secs_f64());
    let join = |values: Vec<String>| values.join(", ");
    if let Some((services, statefulsets, _)) = floors.first() {
        let _ = writeln!(
            report,
            "\nListing floor (pages of 500 parsed into JSON, nothing else), each round: Services ({} items, {} pages, \
             {:.1} MB, {:.0} bytes each) {} s; StatefulSets ({} items, {:.1} MB, {:.0} bytes each) {} s; API server \
             + etcd CPU for both {} s.",
            services.items,
            services.pages,
            services.bytes as f64 / 1e6,
            services.bytes as f64 / services.items as f64,
            join(floors.iter().map(|(each, _, _)| seconds(each.elapsed)).collect()),
            statefulsets.items,
            statefulsets.bytes as f64 / 1e6,
            statefulsets.bytes as f64 / statefulsets.items as f64,
            join(floors.iter().map(|(_, each, _)| seconds(each.elapsed)).collect()),
            join(floors.iter().map(|(_, _, cpu)| seconds(*cpu)).collect()),
        );
    }
    let _ = writeln!(
        report,
        "`kubectl get services,statefulsets.apps -A -o json > /dev/null`, each round: {} s.\n",
        join(kubectl.iter().map(|each| seconds(*each)).collect())
    );
}

/// The machine, the binaries and the commit, for the report's head.
pub fn machine(binary: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "?".to_owned())
    };
    let cpus = cpuinfo.lines().filter(|line| line.starts_with("processor")).count();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0),
        );
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let apiserver = wasmhook_tests::kube::binaries()
        .map(|found| output(&found.kube_apiserver.display().to_string(), &["--version"]))
        .unwrap_or_default();
    format!(
        "{cpus} × {} (family {}, model {}, stepping {}, {} MHz), {memory}; Linux {}; {apiserver}; commit {}{}; {}",
        field("model name"),
        field("cpu family"),
        field("model"),
        field("stepping"),
        field("cpu MHz"),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        output("git", &["rev-parse", "--short", "HEAD"]),
        if output("git", &["status", "--porcelain", "--", "webhook"]).is_empty() {
            ""
        } else {
            " (webhook/ modified)"
        },
        binary.display()
    )
}
