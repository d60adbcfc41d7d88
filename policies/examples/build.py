#!/usr/bin/env python3
"""Builds the example policies — the same require-labels policy in Rust,
Python and JavaScript — into WebAssembly components:
`policies/examples/<example>/build/policy.wasm`.

- Rust: the workspace crate, built by cargo for wasm32-wasip2 with the
  `policy` profile (the built-in policies' settings) into
  `target/policy-examples/`; cargo decides what is up to date.

The tools are pinned (`toolchain/requirements.txt`, `toolchain/package.json`
with its lock file) and installed into `target/policy-tools/`, never globally:
componentize-py from PyPI into a virtual environment, jco and componentize-js
from the npm registry. A tool that cannot be installed stops the build with a
message that says which and why; nothing is skipped silently.

- Python (componentize-py): the sources are copied into a clean directory
  first, because componentize-py bundles everything on its search path. The
  component imports the WASI interfaces CPython uses (filesystem, sockets,
  clocks, random…); the server links them all and grants nothing, so they
  are denied at run time rather than stubbed out at build time
  (`--stub-wasi`): the same component then also runs in any WASI host.
- JavaScript (jco componentize): the QuickJS backend (a ~1.6 MB component and
  the cheapest calls), built synchronous (`--backend-qjs-disable-async`)
  because the component-model async ABI is not enabled in the server's engine.

A component is rebuilt only when its sources, the WIT contract or the tool
versions changed. Usage: build.py [example ...] (default: all).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "policies" / "examples"
WIT = ROOT / "policies" / "wit"
TOOLCHAIN = EXAMPLES / "toolchain"
TOOLS = ROOT / "target" / "policy-tools"

# example directory -> (language, entry point)
BUILDS = {
    "rust-require-labels": ("rust", "src/lib.rs"),
    "python-require-labels": ("python", "app.py"),
    "js-require-labels": ("js", "policy.js"),
}


class BuildError(Exception):
    pass


def run(command: list[str], what: str, **kwargs) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as error:
        raise BuildError(f"{what}: {command[0]} is not installed ({error})") from error
    if done.returncode != 0:
        raise BuildError(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def python_tools() -> Path:
    """A virtual environment with the pinned componentize-py; its executable."""
    requirements = TOOLCHAIN / "requirements.txt"
    env = TOOLS / "python"
    stamp = env / "installed.txt"
    executable = env / "bin" / "componentize-py"
    if stamp.is_file() and stamp.read_text() == requirements.read_text() and executable.is_file():
        return executable
    print(f"== installing {requirements.read_text().strip()} from PyPI into {env.relative_to(ROOT)}", flush=True)
    if env.exists():
        shutil.rmtree(env)
    venv.EnvBuilder(with_pip=True).create(env)
    run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        "installing componentize-py from PyPI",
    )
    stamp.write_text(requirements.read_text())
    return executable


def js_tools() -> Path:
    """node_modules with the pinned jco and componentize-js; jco's executable."""
    directory = TOOLS / "js"
    stamp = directory / "installed.json"
    pinned = (TOOLCHAIN / "package.json").read_text() + (TOOLCHAIN / "package-lock.json").read_text()
    executable = directory / "node_modules" / ".bin" / "jco"
    if stamp.is_file() and stamp.read_text() == pinned and executable.is_file():
        return executable
    print(f"== installing jco and componentize-js from the npm registry into {directory.relative_to(ROOT)}", flush=True)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(TOOLCHAIN / name, directory / name)
    # Installs the versions of the lock file. (`npm ci` would be stricter, but
    # npm 11 wrongly reports a lock file with `overrides` as out of sync.)
    run(["npm", "install", "--no-audit", "--no-fund"], "installing jco from the npm registry", cwd=directory)
    stamp.write_text(pinned)
    return executable


def fingerprint(example: Path, tool_pins: str) -> str:
    digest = hashlib.sha256(tool_pins.encode())
    for path in sorted([*example.glob("*.py"), *example.glob("*.js"), *WIT.glob("*.wit")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_rust(name: str, output: Path) -> None:
    """cargo build of the example crate; cargo skips it when nothing changed.

    Run from the example's directory, so that its `.cargo/config.toml` (the
    link flags `wasmhook new` gives a Rust policy) applies, as it would for an
    author building their policy.
    """
    target_dir = ROOT / "target" / "policy-examples"
    run(
        ["cargo", "build", "--quiet", "--package", name, "--target", "wasm32-wasip2", "--profile", "policy",
         "--target-dir", str(target_dir)],
        f"cargo build of {name}",
        cwd=EXAMPLES / name,
    )
    built = target_dir / "wasm32-wasip2" / "policy" / f"{name.replace('-', '_')}.wasm"
    output.parent.mkdir(parents=True, exist_ok=True)
    if not output.is_file() or output.read_bytes() != built.read_bytes():
        shutil.copy(built, output)
        print(f"== {name}: built {output.relative_to(ROOT)} ({output.stat().st_size / 1e6:.2f} MB)", flush=True)
    else:
        print(f"== {name}: up to date ({output.relative_to(ROOT)})", flush=True)


def build(name: str) -> Path:
    language, entry = BUILDS[name]
    example = EXAMPLES / name
    output = example / "build" / "policy.wasm"
    if language == "rust":
        build_rust(name, output)
        return output
    stamp = example / "build" / "inputs.sha256"
    pins = (TOOLCHAIN / ("requirements.txt" if language == "python" else "package-lock.json")).read_text()
    wanted = fingerprint(example, pins)
    if output.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        print(f"== {name}: up to date ({output.relative_to(ROOT)})", flush=True)
        return output
    tool = python_tools() if language == "python" else js_tools()
    output.parent.mkdir(parents=True, exist_ok=True)
    print(f"== {name}: building {output.relative_to(ROOT)}", flush=True)
    if language == "python":
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as clean:
            for source in example.glob("*.py"):
                shutil.copy(source, clean)
            run(
                [str(tool), "-d", str(WIT), "-w", "policy", "componentize", Path(entry).stem, "-p", clean, "-o", str(output)],
                f"componentize-py {name}",
                cwd=clean,
            )
    else:
        run(
            [
                str(tool), "componentize", str(example / entry), "--wit", str(WIT), "--world-name", "policy",
                "--backend", "quickjs", "--backend-qjs-disable-async", "-o", str(output),
            ],
            f"jco componentize {name}",
        )
    stamp.write_text(wanted)
    print(f"   {output.stat().st_size / 1e6:.1f} MB", flush=True)
    return output


def main() -> int:
    names = sys.argv[1:] or list(BUILDS)
    unknown = [name for name in names if name not in BUILDS]
    if unknown:
        print(f"unknown example(s): {', '.join(unknown)} (known: {', '.join(BUILDS)})", file=sys.stderr)
        return 2
    try:
        for name in names:
            build(name)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
