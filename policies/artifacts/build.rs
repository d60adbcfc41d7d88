//! Builds the workspace's policy crates as `wasm32-wasip2` components.
//!
//! This is the wasmtime way of testing with real guest programs: a nested
//! `cargo build` with its own target directory under `OUT_DIR` (so it never
//! waits on the outer build's lock), after which `src/lib.rs` includes the
//! generated list of artifacts. A plain `cargo build` or `cargo test` on a
//! fresh clone therefore produces every component with no manual step.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A policy crate to build: its package, and whether the server embeds it.
struct Policy {
    /// The cargo package (its directory under the workspace).
    package: &'static str,
    /// The directory, relative to the workspace root, whose changes trigger a rebuild.
    dir: &'static str,
    /// Built-in policies are embedded in the `wasmhook` binary; the others are
    /// test programs whose path is exposed.
    builtin: bool,
}

const POLICIES: &[Policy] = &[
    Policy {
        package: "headless-service",
        dir: "policies/headless-service",
        builtin: true,
    },
    Policy {
        package: "statefulset-service-name",
        dir: "policies/statefulset-service-name",
        builtin: true,
    },
    Policy {
        package: "misbehaving-policy",
        dir: "tests/policies/misbehaving",
        builtin: false,
    },
];

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "policy";

/// The guest's stack (Rust's shadow stack, first in linear memory), instead
/// of the linker's 1 MiB. Rust keeps only the locals whose address is taken
/// there (the others are Wasm locals, on the host's stack); what matters is
/// the memory's size: after each review the server resets the pooled memory
/// by scanning its pages for the ones written (`PAGEMAP_SCAN`), so a memory
/// of 1.1 MiB costs a scan of ~280 pages per review and one of 192 KiB 48.
/// Measured end to end (BENCHMARKS.md, optimisation 12): ~2 µs of CPU less
/// per review, within the noise of three alternated runs. Deeply nested input does not need it: the policies skip what
/// they do not read without recursing, and serde_json stops at 128 levels.
const GUEST_STACK_BYTES: usize = 128 << 10;
/// The guest's initial memory, instead of the linker's smallest (stack and
/// data rounded up to 64 KiB: 192 KiB, with a few KiB left for the heap).
/// A policy whose heap outgrows its initial memory calls `memory.grow` in
/// every review, and the pool pays for it twice: `mprotect` to open the new
/// pages, and at the slot's next instantiation `mprotect` to close them
/// again, which flushes the TLB of every thread of the server. Measured in
/// process on the recorded StatefulSet, 2 KiB more of heap crossed the line:
/// the evaluation went from 13.3 to 15.2–16.1 µs (BENCHMARKS.md). 512 KiB
/// leaves ~330 KiB of heap, enough for a 25 KB review (tested); pages the
/// guest never touches cost nothing to reset.
const GUEST_INITIAL_MEMORY_BYTES: usize = 512 << 10;
/// Builds the policies with another rustup toolchain than the outer build's:
/// cargo-fuzz builds the host with nightly, whose Wasm target may not be
/// installable, while the policies only need the project's stable one.
const TOOLCHAIN_VARIABLE: &str = "WASMHOOK_POLICY_TOOLCHAIN";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = out_dir.join("target");

    for input in [
        "policies/wit",
        "policies/sdk",
        "policies/rawjson",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    for policy in POLICIES {
        println!("cargo:rerun-if-changed={}", workspace.join(policy.dir).display());
    }
    println!("cargo:rerun-if-env-changed={TOOLCHAIN_VARIABLE}");

    ensure_target_installed();
    // The built-ins without their cluster-context checks first, kept under
    // another name; then every policy with its default features.
    build(&workspace, &target_dir, Features::WithoutContext);
    let artifacts = target_dir.join(TARGET).join(PROFILE);
    for policy in POLICIES.iter().filter(|policy| policy.builtin) {
        let built = artifacts.join(wasm_name(policy.package));
        std::fs::copy(&built, artifacts.join(without_context_name(policy.package)))
            .unwrap_or_else(|error| panic!("cannot copy {}: {error}", built.display()));
    }
    build(&workspace, &target_dir, Features::Default);
    write_index(&out_dir, &target_dir);
}

/// Which build of the policies.
#[derive(Clone, Copy, PartialEq)]
enum Features {
    /// Every policy, with its default features.
    Default,
    /// The built-ins alone, without the `cluster-context` feature: what the
    /// server runs for a built-in whose policy-set entry declares no
    /// `context:`, so that it does not import (and instantiate) the
    /// interface.
    WithoutContext,
}

/// The component file cargo writes for `package`.
fn wasm_name(package: &str) -> String {
    format!("{}.wasm", package.replace('-', "_"))
}

/// Where the build without cluster context is kept.
fn without_context_name(package: &str) -> String {
    format!("{}.without-context.wasm", package.replace('-', "_"))
}

/// `tool` (`rustc`, `cargo`) of the toolchain the policies are built with.
fn tool(name: &str, outer: &str) -> Command {
    match env::var(TOOLCHAIN_VARIABLE) {
        Ok(toolchain) if !toolchain.is_empty() => {
            let mut command = Command::new("rustup");
            command.args(["run", &toolchain, name]);
            // The outer build's tools belong to the outer toolchain.
            for variable in ["RUSTUP_TOOLCHAIN", "RUSTC", "CARGO", "RUSTDOC"] {
                command.env_remove(variable);
            }
            command
        }
        _ => Command::new(env::var_os(outer).unwrap_or_else(|| name.into())),
    }
}

fn ensure_target_installed() {
    let libdir = tool("rustc", "RUSTC")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .expect("cannot run rustc");
    let libdir = String::from_utf8_lossy(&libdir.stdout);
    if !has_std(libdir.trim()) {
        panic!(
            "the Rust target {TARGET} is not installed, and wasmhook's policies are built for it.\n\
             Run `rustup target add {TARGET}` (`make` does this for you)."
        );
    }
}

fn has_std(libdir: &str) -> bool {
    std::fs::read_dir(libdir)
        .map(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false)
}

fn build(workspace: &Path, target_dir: &Path, features: Features) {
    let mut command = tool("cargo", "CARGO");
    command
        .current_dir(workspace)
        .args(["build", "--target", TARGET, "--profile", PROFILE, "--target-dir"])
        .arg(target_dir);
    for policy in POLICIES {
        if features == Features::WithoutContext && !policy.builtin {
            continue;
        }
        command.args(["--package", policy.package]);
    }
    if features == Features::WithoutContext {
        command.arg("--no-default-features");
    }
    // The outer build's settings are for the host, not for Wasm guests.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        command.env_remove(variable);
    }
    command.env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!(
            "-Clink-arg=-zstack-size={GUEST_STACK_BYTES}\x1f-Clink-arg=--initial-memory={GUEST_INITIAL_MEMORY_BYTES}"
        ),
    );
    let status = command.status().expect("cannot run cargo to build the policies");
    assert!(
        status.success(),
        "building the policy components for {TARGET} failed (see the output above)"
    );
}

fn write_index(out_dir: &Path, target_dir: &Path) {
    let artifacts = target_dir.join(TARGET).join(PROFILE);
    let mut index = String::new();
    let mut builtins = String::new();
    for policy in POLICIES {
        let file = artifacts.join(wasm_name(policy.package));
        assert!(file.exists(), "the build did not produce {}", file.display());
        let constant = policy.package.replace('-', "_").to_uppercase();
        writeln!(
            index,
            "/// Path of the `{}` component.\npub const {constant}_PATH: &str = {:?};",
            policy.package,
            file.display().to_string()
        )
        .unwrap();
        if policy.builtin {
            let without_context = artifacts.join(without_context_name(policy.package));
            writeln!(
                builtins,
                "    Builtin {{ name: {:?}, wasm: include_bytes!({:?}), wasm_without_context: include_bytes!({:?}) }},",
                policy.package,
                file.display().to_string(),
                without_context.display().to_string()
            )
            .unwrap();
        }
    }
    writeln!(
        index,
        "/// The policies compiled into the server, by name.\npub static BUILTINS: &[Builtin] = &[\n{builtins}];"
    )
    .unwrap();
    std::fs::write(out_dir.join("artifacts.rs"), index).expect("cannot write artifacts.rs");
}
