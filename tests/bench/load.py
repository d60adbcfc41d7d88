#!/usr/bin/env python3
"""The end-to-end benchmark behind `make bench`.

It builds the `wasmhook` server and the benchmark-only `wasmhook-baseline`
(the same server answering `allowed: true` without running a policy), starts
each on loopback with TLS, and drives it with wrk over HTTP/1.1 keep-alive
connections, the way the API server calls webhooks. Scenarios:

- load: reviews/s, latency percentiles, server CPU per review and peak RSS,
  for wasmhook and the baseline in the same run, at 1, 16 and 64 connections;
- startup: time until /readyz answers, with the built-in policies and with
  100 copies of a policy, with an empty and with a warm compile cache;
- hostile neighbour: a healthy policy's throughput while another policy's
  endpoint is hammered with reviews that run into its timeout;
- languages: the same require-labels policy written in Rust, Python and
  JavaScript (policies/examples/, built by `make examples`): module size,
  time to ready with an empty and a warm compile cache, RSS, and reviews/s,
  p99 and CPU per review at 16 connections on the recorded Service review.

Every scenario is repeated (`--runs`, default 3) and the report gives medians;
ratios are taken within one run, then their median. Answers are checked, not
only counted: one review per workload is compared with the expectation table
(tests/fixtures/expected.json), and any non-2xx answer or socket error fails
the benchmark. `--smoke` runs every scenario once, briefly, on the debug build:
`make test` uses it so the benchmark cannot rot. Nothing is timed as a test.

Only the Python standard library is used; wrk is installed from Debian's
packages if it is missing.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
REVIEWS = FIXTURES / "admission-reviews"
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"

# The peer's figures and our targets (issue #6), restated in the report.
# The peer answers ~4,400 reviews/s on a small review the issue does not
# describe (service-small, a 1.6 KB Service review with only what the API
# server sets, is our stand-in for it) and ~2,550 on a recorded 2.7 KB Service
# review (service-recorded is one; service-mutate is one of the same kind and
# size that the policy patches). service-mutate is held to both: to the
# same-size figure, and to the small-review one, the stricter bar earlier
# reports used.


@dataclass(frozen=True)
class PeerFigure:
    reviews_per_s: int
    cpu_us: int
    review: str


PEER_SMALL = PeerFigure(4400, 300, "on its small review")
PEER_RECORDED = PeerFigure(2550, 520, "on a recorded 2.7 KB Service review")
PEER = {
    "service-small": [PEER_SMALL],
    "service-mutate": [PEER_RECORDED, PEER_SMALL],
    "service-recorded": [PEER_RECORDED],
}
TARGET_SPEEDUP_OVER_PEER = 5
TARGET_WASM_PATH_CPU_US = 50


@dataclass(frozen=True)
class Workload:
    name: str
    policy: str
    fixture: str
    what: str


WORKLOADS = [
    Workload(
        "service-mutate",
        "headless-service",
        "crafted-mutating-create-service-db-headless.json",
        "2.9 KB Service review that the policy patches (2 operations)",
    ),
    Workload(
        "service-small",
        "headless-service",
        "crafted-mutating-create-service-api-headless.json",
        "1.6 KB Service review with no managedFields or annotations, patched (2 operations)",
    ),
    Workload(
        "service-recorded",
        "headless-service",
        "mutating-create-service-dry-svc.json",
        "2.6 KB Service review recorded from kube-apiserver, allowed unchanged",
    ),
    Workload(
        "statefulset-mutate",
        "statefulset-service-name",
        "mutating-create-statefulset-mysql.json",
        "6.3 KB StatefulSet review recorded from kube-apiserver, patched (1 operation)",
    ),
]


# The require-labels examples, the same policy in three languages: (language, example).
LANGUAGES = [("Rust", "rust-require-labels"), ("Python", "python-require-labels"), ("JavaScript", "js-require-labels")]
# Their review: the recorded Service review, which carries the required label.
LANGUAGE_WORKLOAD_FIXTURE = "mutating-create-service-dry-svc.json"


class BenchError(Exception):
    """A benchmark that could not run, or whose server answered wrongly."""


# ---------------------------------------------------------------- set-up


def ensure_wrk() -> str:
    """wrk on PATH, installed from Debian's packages when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise BenchError(
            "wrk is not installed and cannot be installed here (needs apt-get as root): "
            "install Debian's package `wrk` and run again"
        )
    print("== installing wrk from Debian's packages", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [apt, "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run([apt, "update"], env=env, stdout=subprocess.DEVNULL, check=False)
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            raise BenchError("apt-get could not install wrk")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk was installed but is not on PATH")
    return found


@dataclass
class Build:
    wasmhook: Path
    baseline: Path
    misbehaving_policy: Path


def cargo_build(release: bool) -> Build:
    """Builds the two servers; finds them and the test policies from cargo's own output.

    The debug build is the one `cargo test --workspace` makes (so the smoke
    run in `make test` rebuilds nothing); the release build is the servers'.
    """
    if release:
        command = ["cargo", "build", "--workspace", "--bins", "--release"]
    else:
        command = ["cargo", "test", "--workspace", "--no-run"]
    command.append("--message-format=json-render-diagnostics")
    print(f"== {' '.join(command)}", flush=True)
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise BenchError("cargo build failed (its errors are above)")
    executables: dict[str, Path] = {}
    artifacts_out = None
    for line in done.stdout.splitlines():
        message = json.loads(line)
        is_bin = "bin" in message.get("target", {}).get("kind", [])
        if message.get("reason") == "compiler-artifact" and is_bin and not message["profile"]["test"] and message.get("executable"):
            executables[message["target"]["name"]] = Path(message["executable"])
        if message.get("reason") == "build-script-executed" and "wasmhook-policy-artifacts" in message["package_id"]:
            artifacts_out = Path(message["out_dir"])
    missing = [name for name in ("wasmhook", "wasmhook-baseline") if name not in executables]
    if missing or artifacts_out is None:
        raise BenchError(f"cargo did not report {missing or 'the policy artifacts'}")
    misbehaving = artifacts_out / "target" / "wasm32-wasip2" / "policy" / "misbehaving_policy.wasm"
    if not misbehaving.is_file():
        raise BenchError(f"the test policy is not where the artifacts build puts it: {misbehaving}")
    return Build(executables["wasmhook"], executables["wasmhook-baseline"], misbehaving)


def proc_kib(path: Path, field_name: str) -> int:
    """A `Name:   1234 kB` field of a /proc file such as status or meminfo."""
    for line in path.read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"{path} has no {field_name}")


def policy_set(path: Path, policies: list[str]) -> Path:
    path.write_text("apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n" + "".join(policies))
    return path


def builtin_entry(name: str, module: str) -> str:
    return f"  - name: {name}\n    module: builtin:{module}\n"


HOSTILE_ENTRY = """  - name: hostile
    module: {module}
    timeout: 100ms
    failurePolicy: Ignore
    settings: {{behaviour: loop}}
    rules:
      - operations: [CREATE]
        apiGroups: [""]
        apiVersions: [v1]
        resources: [services]
"""


LANGUAGE_ENTRY = """  - name: {name}
    module: {module}
    settings: {{labels: [app]}}
    rules:
      - operations: [CREATE, UPDATE]
        apiGroups: ["", apps]
        apiVersions: [v1]
        resources: [services, statefulsets]
"""


def example_module(example: str) -> Path:
    module = ROOT / "policies" / "examples" / example / "build" / "policy.wasm"
    if not module.is_file():
        raise BenchError(f"{module} is missing: build the example policies first (`make examples`)")
    return module


# ---------------------------------------------------------------- servers


class Server:
    """One `wasmhook serve` (or baseline) process on loopback ports."""

    # Servers started so far, to name each one's files.
    started = 0

    def __init__(self, label: str, binary: Path, baseline: bool, work: Path, config: Path, cache: Path):
        Server.started += 1
        self.label = label
        # The OS picks both ports (port 0); the server names them in its ready
        # file. A port probed free here could be taken by another program
        # before the server binds it (wrk's connections take ports too).
        self.port = 0
        self.health_port = 0
        self.state = work / "state"
        self.log = work / f"{label}-{Server.started}.log"
        self.ready_file = work / f"{label}-{Server.started}.ready.json"
        command = [str(binary)] + ([] if baseline else ["serve"])
        command += [
            "--config", str(config),
            "--listen", "127.0.0.1:0",
            "--health-listen", "127.0.0.1:0",
            "--ready-file", str(self.ready_file),
            "--state-dir", str(self.state),
            "--cache-dir", str(cache),
            "--no-policy-watch",
        ]
        self.command = command
        self.process: subprocess.Popen | None = None
        self.ready_seconds = 0.0

    def start(self, timeout: float = 300.0) -> "Server":
        started = time.monotonic()
        self.ready_file.unlink(missing_ok=True)
        self.port = self.health_port = 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"{self.label} exited with {self.process.returncode} before it was ready; see {self.log}")
            if self.bound() and self.ready():
                self.ready_seconds = time.monotonic() - started
                return self
            if time.monotonic() - started > timeout:
                self.process.kill()
                raise BenchError(f"{self.label} was not ready after {timeout:.0f} s; see {self.log}")
            time.sleep(0.002)

    def bound(self) -> bool:
        """Reads the ports from the ready file, once the server has written it."""
        if self.health_port:
            return True
        try:
            bound = json.loads(self.ready_file.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as error:
            raise BenchError(f"{self.label}: unreadable ready file {self.ready_file}: {error}")
        self.port = int(bound["listen"].rsplit(":", 1)[1])
        self.health_port = int(bound["healthListen"].rsplit(":", 1)[1])
        return True

    def ready(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=1)
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise BenchError(f"{self.label} did not exit within 60 s of SIGTERM; see {self.log}")
        if code != 0:
            raise BenchError(f"{self.label} exited with {code} after SIGTERM; see {self.log}")

    def cpu_seconds(self) -> float:
        """User + system CPU of every thread so far, from /proc."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kib(self, field_name: str) -> int:
        assert self.process is not None
        return proc_kib(Path(f"/proc/{self.process.pid}/status"), field_name)

    def policy_cpu(self, policy: str) -> tuple[float, int]:
        """(seconds, reviews) of `wasmhook_policy_cpu_seconds` for `policy` so far."""
        connection = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=10)
        connection.request("GET", "/metrics")
        metrics = connection.getresponse().read().decode()
        found = {}
        for line in metrics.splitlines():
            for part in ("sum", "count"):
                prefix = f'wasmhook_policy_cpu_seconds_{part}{{policy="{policy}"}} '
                if line.startswith(prefix):
                    found[part] = float(line.removeprefix(prefix))
        return found.get("sum", 0.0), int(found.get("count", 0))

    def url(self, policy: str) -> str:
        return f"https://127.0.0.1:{self.port}/mutate/{policy}"

    def post(self, policy: str, body: bytes) -> dict:
        """One review over verified TLS (the development CA), answered as JSON."""
        context = ssl.create_default_context(cafile=str(self.state / "dev-tls" / "ca.pem"))
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=30)
        connection.request("POST", f"/mutate/{policy}", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise BenchError(f"{self.label}: POST /mutate/{policy} answered {response.status}: {payload[:300]!r}")
        return json.loads(payload)


# ---------------------------------------------------------------- checks


def expected_answer(workload: Workload) -> tuple[bool, list]:
    for case in json.loads((FIXTURES / "expected.json").read_text()):
        if case["fixture"] == workload.fixture and case["policy"] == workload.policy and case["settings"] is None:
            return case["allowed"], case["patch"]
    raise BenchError(f"expected.json has no case for {workload.fixture} with {workload.policy}")


def check_answer(server: Server, workload: Workload, baseline: bool) -> None:
    """The server's answer to the workload's review is the expected one."""
    body = (REVIEWS / workload.fixture).read_bytes()
    response = server.post(workload.policy, body)["response"]
    allowed, patch = (True, []) if baseline else expected_answer(workload)
    got_patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    uid = json.loads(body)["request"]["uid"]
    if response.get("uid") != uid or response.get("allowed") != allowed or got_patch != patch:
        raise BenchError(
            f"{server.label}: wrong answer for {workload.fixture}: allowed={response.get('allowed')} "
            f"patch={got_patch} (expected allowed={allowed} patch={patch})"
        )


# ---------------------------------------------------------------- wrk


@dataclass
class LoadResult:
    reviews_per_s: float
    latency_us: dict
    cpu_us_per_review: float
    # Mean CPU of a review in its policy, from the server's own
    # `wasmhook_policy_cpu_seconds` (sampled reviews); None for the baseline.
    policy_cpu_us: float | None
    requests: int
    errors: int


def start_wrk(url: str, body: Path, connections: int, seconds: float) -> subprocess.Popen:
    threads = 1 if connections == 1 else 2
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url]
    env = dict(os.environ, WASMHOOK_BENCH_BODY=str(body))
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_summary(process: subprocess.Popen, seconds: float) -> dict:
    output, _ = process.communicate(timeout=seconds + 60)
    for line in output.splitlines():
        if line.startswith("WRK_SUMMARY "):
            return json.loads(line.removeprefix("WRK_SUMMARY "))
    raise BenchError(f"wrk printed no summary:\n{output}")


def drive(server: Server, workload: Workload, connections: int, seconds: float) -> LoadResult:
    body = REVIEWS / workload.fixture
    policy_cpu_before = server.policy_cpu(workload.policy)
    cpu_before = server.cpu_seconds()
    summary = wrk_summary(start_wrk(server.url(workload.policy), body, connections, seconds), seconds)
    cpu = server.cpu_seconds() - cpu_before
    policy_cpu_after = server.policy_cpu(workload.policy)
    measured = policy_cpu_after[1] - policy_cpu_before[1]
    requests = summary["requests"]
    errors = sum(summary["errors"].values())
    if requests == 0:
        raise BenchError(f"{server.label}: no review was answered ({workload.name}, {connections} connections)")
    if errors:
        raise BenchError(f"{server.label}: {errors} failed reviews ({workload.name}, {connections} connections): {summary['errors']}")
    return LoadResult(
        reviews_per_s=requests / (summary["duration_us"] / 1e6),
        latency_us=summary["latency_us"],
        cpu_us_per_review=cpu * 1e6 / requests,
        policy_cpu_us=(policy_cpu_after[0] - policy_cpu_before[0]) * 1e6 / measured if measured else None,
        requests=requests,
        errors=errors,
    )


# ---------------------------------------------------------------- scenarios


@dataclass
class Options:
    runs: int
    seconds: float
    warmup_seconds: float
    connections: list[int]
    workloads: list[Workload]
    copies: int
    build: Build
    work: Path


def builtins_config(options: Options) -> Path:
    return policy_set(
        options.work / "builtins.yaml",
        [builtin_entry("headless-service", "headless-service"), builtin_entry("statefulset-service-name", "statefulset-service-name")],
    )


def load_scenario(options: Options) -> dict:
    """{(server, workload, connections): [LoadResult per run]} and peak RSS per server."""
    config = builtins_config(options)
    cache = options.work / "cache-load"
    # Compile once up front: start-up is its own scenario, and a compile's
    # memory would otherwise show as the first run's peak RSS.
    Server("warm-up", options.build.wasmhook, False, options.work, config, cache).start().stop()
    results: dict = {}
    peak_rss: dict = {"wasmhook": [], "baseline": []}
    for run in range(options.runs):
        for label, binary, baseline in (
            ("wasmhook", options.build.wasmhook, False),
            ("baseline", options.build.baseline, True),
        ):
            server = Server(label, binary, baseline, options.work, config, cache).start()
            try:
                for workload in options.workloads:
                    check_answer(server, workload, baseline)
                    drive(server, workload, 16, options.warmup_seconds)
                    for connections in options.connections:
                        result = drive(server, workload, connections, options.seconds)
                        results.setdefault((label, workload.name, connections), []).append(result)
                        print(
                            f"   run {run + 1} {label:8} {workload.name:18} c={connections:<3} "
                            f"{result.reviews_per_s:9.0f} reviews/s  p99 {result.latency_us['p99'] / 1000:6.2f} ms  "
                            f"{result.cpu_us_per_review:6.1f} µs CPU/review"
                            + (f", {result.policy_cpu_us:5.1f} in the policy" if result.policy_cpu_us is not None else ""),
                            flush=True,
                        )
                peak_rss[label].append(server.memory_kib("VmHWM"))
            finally:
                server.stop()
    return {"results": results, "peak_rss": peak_rss}


def startup_scenario(options: Options) -> dict:
    """Time to ready and RSS, cold and warm, for the built-ins and for N copies."""
    sets = {
        "built-in policies (2)": builtins_config(options),
        f"{options.copies} copies of headless-service": policy_set(
            options.work / "copies.yaml",
            [builtin_entry(f"copy-{index:03}", "headless-service") for index in range(options.copies)],
        ),
    }
    measured: dict = {}
    for run in range(options.runs):
        for index, (name, config) in enumerate(sets.items()):
            cache = options.work / f"cache-startup-{run}-{index}"
            for cache_state in ("cold", "warm"):
                server = Server("wasmhook", options.build.wasmhook, False, options.work, config, cache).start()
                rss = server.memory_kib("VmRSS")
                server.stop()
                measured.setdefault((name, cache_state), []).append((server.ready_seconds, rss))
                print(f"   run {run + 1} {name:30} {cache_state}: ready in {server.ready_seconds * 1000:7.0f} ms, RSS {rss / 1024:6.1f} MiB", flush=True)
    return measured


def hostile_scenario(options: Options) -> dict:
    """A healthy policy's throughput alone, then while `hostile` loops into its timeout."""
    config = policy_set(
        options.work / "hostile.yaml",
        [builtin_entry("headless-service", "headless-service"), HOSTILE_ENTRY.format(module=options.build.misbehaving_policy)],
    )
    workload = options.workloads[0]
    hostile_body = REVIEWS / workload.fixture
    measured: dict = {"alone": [], "neighbour": [], "hostile": []}
    for run in range(options.runs):
        server = Server("wasmhook", options.build.wasmhook, False, options.work, config, options.work / "cache-hostile").start()
        try:
            check_answer(server, workload, False)
            answer = server.post("hostile", hostile_body.read_bytes())["response"]
            if not answer.get("allowed") or not any("timed out" in warning for warning in answer.get("warnings", [])):
                raise BenchError(f"the hostile policy's review was not allowed with a timeout warning: {answer}")
            drive(server, workload, 16, options.warmup_seconds)
            alone = drive(server, workload, 16, options.seconds)
            hostile = start_wrk(server.url("hostile"), hostile_body, 16, options.seconds + 2)
            time.sleep(1)
            with_neighbour = drive(server, workload, 16, options.seconds)
            hostile_summary = wrk_summary(hostile, options.seconds + 2)
            if sum(hostile_summary["errors"].values()):
                raise BenchError(f"hostile reviews failed at the HTTP level: {hostile_summary['errors']}")
            measured["alone"].append(alone)
            measured["neighbour"].append(with_neighbour)
            measured["hostile"].append(hostile_summary)
            print(
                f"   run {run + 1} healthy alone {alone.reviews_per_s:8.0f} reviews/s, beside the hostile policy "
                f"{with_neighbour.reviews_per_s:8.0f} reviews/s; hostile answered {hostile_summary['requests']} "
                f"(p50 {hostile_summary['latency_us']['p50'] / 1000:.0f} ms)",
                flush=True,
            )
        finally:
            server.stop()
    return measured


def languages_scenario(options: Options) -> dict:
    """Per language: module size, start-up cold and warm, and load at 16 connections."""
    measured: dict = {}
    body = (REVIEWS / LANGUAGE_WORKLOAD_FIXTURE).read_bytes()
    uid = json.loads(body)["request"]["uid"]
    for run in range(options.runs):
        for language, example in LANGUAGES:
            module = example_module(example)
            config = policy_set(options.work / f"{example}.yaml", [LANGUAGE_ENTRY.format(name=example, module=module)])
            cache = options.work / f"cache-languages-{run}-{example}"
            samples = measured.setdefault(language, {"size": module.stat().st_size, "cold": [], "warm": [], "load": []})
            server = Server("wasmhook", options.build.wasmhook, False, options.work, config, cache).start()
            server.stop()
            samples["cold"].append((server.ready_seconds, 0))
            server = Server("wasmhook", options.build.wasmhook, False, options.work, config, cache).start()
            try:
                samples["warm"].append((server.ready_seconds, server.memory_kib("VmRSS")))
                answer = server.post(example, body)["response"]
                if answer.get("uid") != uid or answer.get("allowed") is not True or "patch" in answer:
                    raise BenchError(f"{language}: the labelled Service was not allowed unchanged: {answer}")
                workload = Workload(example, example, LANGUAGE_WORKLOAD_FIXTURE, "")
                drive(server, workload, 16, options.warmup_seconds)
                result = drive(server, workload, 16, options.seconds)
                samples["load"].append(result)
            finally:
                server.stop()
            print(
                f"   run {run + 1} {language:10} ready cold {samples['cold'][-1][0] * 1000:7.0f} ms, "
                f"warm {samples['warm'][-1][0] * 1000:5.0f} ms; {result.reviews_per_s:8.0f} reviews/s  "
                f"p99 {result.latency_us['p99'] / 1000:6.2f} ms  {result.cpu_us_per_review:7.1f} µs CPU/review",
                flush=True,
            )
    return measured


# ---------------------------------------------------------------- report


def machine() -> list[str]:
    """The machine, as /proc reports it: virtual machines often give a generic
    model name, so family, model, stepping and clock say which one it was."""
    cpu: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        cpu.setdefault(key.strip(), value.strip())
    memory = f"{proc_kib(Path('/proc/meminfo'), 'MemTotal') / (1 << 20):.0f} GiB"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return [
        f"- CPU: {os.cpu_count()} × {cpu.get('model name', 'unknown')} (family {cpu.get('cpu family', '?')}, "
        f"model {cpu.get('model', '?')}, stepping {cpu.get('stepping', '?')}, {cpu.get('cpu MHz', '?')} MHz); {memory}",
        f"- Kernel: {platform.release()}; {rustc}; {wrk_version}",
    ]


def med(values) -> float:
    return statistics.median(values)


def load_report(load: dict, options: Options) -> list[str]:
    results = load["results"]
    lines = []
    for workload in options.workloads:
        lines += [
            f"#### {workload.name}: {workload.what} → `/mutate/{workload.policy}`",
            "",
            "| connections | wasmhook reviews/s | baseline reviews/s | wasmhook / baseline | wasmhook p50 / p90 / p99 / p99.9 (ms) | baseline p99 (ms) | CPU µs/review wasmhook | baseline | difference | Wasm path, measured |",
            "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for connections in options.connections:
            ours = results[("wasmhook", workload.name, connections)]
            base = results[("baseline", workload.name, connections)]
            ratio = med(o.reviews_per_s / b.reviews_per_s for o, b in zip(ours, base))
            difference = med(o.cpu_us_per_review - b.cpu_us_per_review for o, b in zip(ours, base))
            percentiles = " / ".join(f"{med(o.latency_us[p] for o in ours) / 1000:.2f}" for p in ("p50", "p90", "p99", "p999"))
            lines.append(
                f"| {connections} | {med(o.reviews_per_s for o in ours):,.0f} | {med(b.reviews_per_s for b in base):,.0f} | "
                f"{ratio:.2f} | {percentiles} | {med(b.latency_us['p99'] for b in base) / 1000:.2f} | "
                f"{med(o.cpu_us_per_review for o in ours):.0f} | {med(b.cpu_us_per_review for b in base):.0f} | {difference:.0f} | "
                f"{measured_wasm_path(ours)} |"
            )
        if 16 in options.connections:
            ours16 = med(o.reviews_per_s for o in results[("wasmhook", workload.name, 16)])
            for peer in PEER.get(workload.name, []):
                target = TARGET_SPEEDUP_OVER_PEER * peer.reviews_per_s
                lines += [
                    "",
                    f"Target at 16 connections: ≥ {TARGET_SPEEDUP_OVER_PEER}× the peer's {peer.reviews_per_s:,} reviews/s "
                    f"{peer.review} = {target:,}; measured {ours16:,.0f} ({ours16 / peer.reviews_per_s:.1f}× the peer: "
                    f"{'met' if ours16 >= target else 'not met'}). The peer spends ~{peer.cpu_us} µs of CPU per review.",
                ]
        lines.append("")
    rss = load["peak_rss"]
    lines += [
        f"Peak RSS over a whole run: wasmhook {med(rss['wasmhook']) / 1024:.1f} MiB, baseline {med(rss['baseline']) / 1024:.1f} MiB.",
        f"Target for the Wasm path (instantiate + evaluate + patch): ≤ {TARGET_WASM_PATH_CPU_US} µs of CPU per review.",
        "\"Difference\" is wasmhook's CPU per review minus the baseline's; \"Wasm path, measured\" is the server's own "
        "`wasmhook_policy_cpu_seconds` (the worker's CPU clock around the evaluation's polls and the patch, one review "
        "in 16) over the same load.",
        "",
    ]
    return lines


def measured_wasm_path(results: list[LoadResult]) -> str:
    measured = [r.policy_cpu_us for r in results if r.policy_cpu_us is not None]
    return f"{med(measured):.0f}" if measured else "—"


def startup_report(startup: dict) -> list[str]:
    lines = [
        "| policy set | compile cache | time to ready (ms) | RSS when ready (MiB) |",
        "|---|---|---:|---:|",
    ]
    for (name, cache_state), samples in startup.items():
        lines.append(
            f"| {name} | {cache_state} | {med(s[0] for s in samples) * 1000:.0f} | {med(s[1] for s in samples) / 1024:.1f} |"
        )
    return lines + [""]


def hostile_report(hostile: dict) -> list[str]:
    alone = med(r.reviews_per_s for r in hostile["alone"])
    beside = med(r.reviews_per_s for r in hostile["neighbour"])
    drop = med(1 - n.reviews_per_s / a.reviews_per_s for a, n in zip(hostile["alone"], hostile["neighbour"]))
    hostile_rate = med(h["requests"] / (h["duration_us"] / 1e6) for h in hostile["hostile"])
    hostile_p50 = med(h["latency_us"]["p50"] for h in hostile["hostile"]) / 1000
    return [
        "| healthy policy | reviews/s | p99 (ms) |",
        "|---|---:|---:|",
        f"| alone | {alone:,.0f} | {med(r.latency_us['p99'] for r in hostile['alone']) / 1000:.2f} |",
        f"| beside the hostile policy | {beside:,.0f} | {med(r.latency_us['p99'] for r in hostile['neighbour']) / 1000:.2f} |",
        "",
        f"Throughput drop: {drop * 100:.0f} %. The hostile policy (an endless loop, timeout 100 ms, failurePolicy Ignore) "
        f"was answered {hostile_rate:,.0f} times/s at 16 connections, p50 {hostile_p50:.0f} ms, every answer an allowed review with a warning.",
        "",
    ]


def languages_report(languages: dict) -> list[str]:
    lines = [
        "| language | module size | ready, cold cache (ms) | ready, warm cache (ms) | RSS when ready (MiB) "
        "| reviews/s (16 conn.) | p99 (ms) | CPU µs/review |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for language, samples in languages.items():
        load = samples["load"]
        lines.append(
            f"| {language} | {samples['size'] / 1e6:.2f} MB | {med(s[0] for s in samples['cold']) * 1000:,.0f} "
            f"| {med(s[0] for s in samples['warm']) * 1000:,.0f} | {med(s[1] for s in samples['warm']) / 1024:.1f} "
            f"| {med(r.reviews_per_s for r in load):,.0f} | {med(r.latency_us['p99'] for r in load) / 1000:.2f} "
            f"| {med(r.cpu_us_per_review for r in load):,.0f} |"
        )
    return lines + [""]


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each scenario (default 3)")
    parser.add_argument("--seconds", type=float, default=10, help="length of each measured load (default 10)")
    parser.add_argument("--connections", default="1,16,64", help="keep-alive connections, comma-separated")
    parser.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS), help="which workloads")
    parser.add_argument("--copies", type=int, default=100, help="policies in the many-copies start-up case")
    parser.add_argument("--scenarios", default="load,startup,hostile,languages", help="which scenarios")
    parser.add_argument("--report", type=Path, default=ROOT / "target" / "bench" / "report.md")
    parser.add_argument("--smoke", action="store_true", help="everything once, briefly, on the debug build (make test)")
    parser.add_argument(
        "--wasmhook",
        type=Path,
        help="a wasmhook binary to measure instead of the build's (e.g. the image's static musl one, "
        "target/image/wasmhook); the baseline and the test policies still come from the build",
    )
    args = parser.parse_args()

    if args.smoke:
        args.runs, args.seconds, args.connections, args.copies = 1, 1, "1,16", 5
        args.workloads = WORKLOADS[0].name
    by_name = {w.name: w for w in WORKLOADS}
    try:
        workloads = [by_name[name] for name in args.workloads.split(",")]
    except KeyError as unknown:
        parser.error(f"unknown workload {unknown}; known: {', '.join(by_name)}")
    scenarios = args.scenarios.split(",")

    try:
        ensure_wrk()
        build = cargo_build(release=not args.smoke)
        if args.wasmhook is not None:
            build = Build(args.wasmhook.resolve(), build.baseline, build.misbehaving_policy)
        (ROOT / "target" / "bench").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="run-", dir=ROOT / "target" / "bench"))
        options = Options(
            runs=args.runs,
            seconds=args.seconds,
            warmup_seconds=max(1.0, args.seconds / 5),
            connections=[int(c) for c in args.connections.split(",")],
            workloads=workloads,
            copies=args.copies,
            build=build,
            work=work,
        )
        report = ["# wasmhook load benchmark", "", *machine(), f"- Build: {'debug (smoke run)' if args.smoke else 'release'}; runs: {args.runs}; {args.seconds:g} s per measurement", f"- wasmhook: {build.wasmhook}", ""]
        if "load" in scenarios:
            print("== load: wasmhook and the baseline, same load, same run", flush=True)
            report += ["### Load", "", *load_report(load_scenario(options), options)]
        if "startup" in scenarios:
            print("== startup", flush=True)
            report += ["### Startup", "", *startup_report(startup_scenario(options))]
        if "hostile" in scenarios:
            print("== hostile neighbour", flush=True)
            report += ["### Hostile neighbour (16 connections each)", "", *hostile_report(hostile_scenario(options))]
        if "languages" in scenarios:
            print("== languages: require-labels in Rust, Python and JavaScript", flush=True)
            report += ["### Policies in other languages", "", *languages_report(languages_scenario(options))]
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    text = "\n".join(report)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
