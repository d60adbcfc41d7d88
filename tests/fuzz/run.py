#!/usr/bin/env python3
"""The fuzzing run behind `make fuzz`.

For each cargo-fuzz target in tests/fuzz/fuzz_targets/ it seeds a corpus
(recorded reviews, the policy sets of the fixtures and the deployment, and
every input kept in tests/fuzz/regressions/), runs libFuzzer for `--seconds`,
and reads libFuzzer's final statistics. A crash is copied into
tests/fuzz/regressions/<target>/, where `cargo test` replays it from then on
(tests/integration/fuzz_regressions.rs), and fails the run.

cargo-fuzz needs a nightly toolchain (for the sanitizer flags) and is
installed, pinned, into target/tools/ on first use. The policy components the
targets load are still built with the project's own toolchain
(WASMHOOK_POLICY_TOOLCHAIN), whose wasm32-wasip2 target `make` installs. The
report is written to target/fuzz/report.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUZZ_DIR = ROOT / "tests" / "fuzz"
REGRESSIONS = FUZZ_DIR / "regressions"
WORK = ROOT / "target" / "fuzz"
TOOLS = ROOT / "target" / "tools"
CARGO_FUZZ_VERSION = "0.13.1"
TARGETS = ["admission_review", "json_patch_roundtrip", "policy_set"]


def seeds(target: str) -> list[Path]:
    fixtures = ROOT / "tests" / "fixtures"
    found = sorted((REGRESSIONS / target).glob("*"))
    if target == "admission_review":
        found += sorted((fixtures / "admission-reviews").glob("*.json"))
    if target == "policy_set":
        found += sorted((fixtures / "policy-sets").glob("*.yaml"))
        found.append(ROOT / "deploy" / "base" / "policies.yaml")
    return found


def cargo_fuzz() -> Path:
    binary = TOOLS / "bin" / "cargo-fuzz"
    if not binary.is_file():
        print(f"== installing cargo-fuzz {CARGO_FUZZ_VERSION} into {TOOLS}", flush=True)
        subprocess.run(
            ["cargo", "install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION, "--root", str(TOOLS)],
            check=True,
        )
    return binary


def fuzz_environment() -> dict:
    """The environment for cargo-fuzz: the policies are built with the
    toolchain `cargo` uses in the project, not with nightly."""
    shown = subprocess.run(["rustup", "show", "active-toolchain"], cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(os.environ, WASMHOOK_POLICY_TOOLCHAIN=shown.stdout.split()[0])


def run(target: str, seconds: int, binary: Path) -> dict:
    corpus = WORK / "corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds(target):
        shutil.copy(seed, corpus / f"seed-{seed.name}")
    artifacts = WORK / "artifacts" / target
    if artifacts.exists():
        shutil.rmtree(artifacts)
    artifacts.mkdir(parents=True)
    command = [
        str(binary), "fuzz", "run", "--fuzz-dir", str(FUZZ_DIR), target, str(corpus), "--",
        f"-max_total_time={seconds}", "-print_final_stats=1", "-rss_limit_mb=4096",
        # An input that takes this long is a hang, reported like a crash.
        "-timeout=10",
        f"-artifact_prefix={artifacts}/",
    ]
    print(f"== {target}: {seconds} s", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        ["rustup", "run", "nightly", *command],
        cwd=ROOT,
        env=fuzz_environment(),
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    sys.stderr.write(done.stderr[-4000:])
    executions = re.search(r"stat::number_of_executed_units:\s*(\d+)", done.stderr)
    crashes = sorted(artifacts.glob("*"))
    for crash in crashes:
        kept = REGRESSIONS / target / crash.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(crash, kept)
        print(f"   crash kept as a regression input: {kept.relative_to(ROOT)}", flush=True)
    return {
        "target": target,
        "seconds": round(time.monotonic() - started),
        "executions": int(executions.group(1)) if executions else None,
        "corpus": len(list(corpus.glob("*"))),
        "crashes": len(crashes),
        "exit": done.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=300, help="fuzzing time per target (default 300)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="which targets, comma-separated")
    options = parser.parse_args()
    if subprocess.run(["rustup", "run", "nightly", "rustc", "--version"], capture_output=True).returncode != 0:
        print("make fuzz needs a nightly toolchain: rustup toolchain install nightly", file=sys.stderr)
        return 2
    binary = cargo_fuzz()
    print("== building the fuzz targets (nightly, coverage-instrumented)", flush=True)
    built = subprocess.run(
        ["rustup", "run", "nightly", str(binary), "fuzz", "build", "--fuzz-dir", str(FUZZ_DIR)],
        cwd=ROOT,
        env=fuzz_environment(),
    )
    if built.returncode != 0:
        print("building the fuzz targets failed (see above)", file=sys.stderr)
        return 1
    results = [run(target, options.seconds, binary) for target in options.targets.split(",")]

    lines = ["# wasmhook fuzzing", "", "| target | seconds | executions | corpus | crashes |", "|---|---:|---:|---:|---:|"]
    for result in results:
        executions = f"{result['executions']:,}" if result["executions"] is not None else "unknown"
        lines.append(
            f"| {result['target']} | {result['seconds']} | {executions} | {result['corpus']} | {result['crashes']} |"
        )
    report = "\n".join(lines) + "\n"
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "report.md").write_text(report)
    print(report)
    failed = [result["target"] for result in results if result["crashes"] or result["exit"] != 0]
    if failed:
        print(f"fuzzing found crashes in {', '.join(failed)}: see tests/fuzz/regressions/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
