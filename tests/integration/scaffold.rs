//! `wasmhook new`: every language × kind scaffolds a directory whose own
//! build script produces a component that passes its own suite at once —
//! built with the real toolchains (cargo for wasm32-wasip2, componentize-py,
//! jco) and run through the real engine by `wasmhook test`.
//!
//! The Python and JavaScript tools are the pinned ones `make examples`
//! installs into `target/policy-tools/` (passed as `WASMHOOK_POLICY_TOOLS`,
//! so nothing is installed twice); the Rust builds share
//! `target/scaffold-policies/` so a second run compiles only the policy.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// Runs the `wasmhook` CLI in-process; exit status and everything it printed.
fn wasmhook(args: &[&str]) -> (u8, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = wasmhook::cli::run(
        std::iter::once("wasmhook").chain(args.iter().copied()),
        &mut out,
        &mut err,
    );
    let printed = String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap();
    (status, printed)
}

/// `wasmhook new <name> --lang <lang> --kind <kind>` in `dir`, then its `build.sh`.
fn scaffold_and_build(dir: &Path, name: &str, lang: &str, kind: &str) -> PathBuf {
    let (status, printed) = wasmhook(&[
        "new",
        name,
        "--lang",
        lang,
        "--kind",
        kind,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(status, 0, "wasmhook new: {printed}");
    let policy = dir.join(name);
    assert!(printed.contains("./build.sh"), "{printed}");
    for file in ["README.md", "build.sh", "tests/policy.test.yaml", "tests/service.yaml"] {
        assert!(policy.join(file).is_file(), "{lang}/{kind}: no {file}");
    }
    if lang == "rust" {
        // Linked as the built-ins are: the build below fails if the linker
        // refuses the flags.
        let config = std::fs::read_to_string(policy.join(".cargo/config.toml")).unwrap();
        assert!(config.contains("--initial-memory=524288"), "{config}");
    }

    let target = repository().join("target");
    let built = Command::new(policy.join("build.sh"))
        .env("WASMHOOK_POLICY_TOOLS", target.join("policy-tools"))
        .env("CARGO_TARGET_DIR", target.join("scaffold-policies"))
        // The nested cargo must not inherit this test's build configuration.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{lang}/{kind}: build.sh failed\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let module = policy.join("build/policy.wasm");
    let bytes = std::fs::read(&module).unwrap();
    assert_eq!(&bytes[..4], b"\0asm", "{lang}/{kind}: not a Wasm binary");
    policy
}

/// `wasmhook test <policy>/tests`: exit status and output. The compile
/// cache is shared, so a Python component is compiled once, not per run.
fn run_suite(policy: &Path) -> (u8, String) {
    let cache = repository().join("target/scaffold-policies/compile-cache");
    wasmhook(&[
        "test",
        "--cache-dir",
        cache.to_str().unwrap(),
        policy.join("tests").to_str().unwrap(),
    ])
}

fn both_kinds_build_and_pass_their_own_suites(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let validate = scaffold_and_build(dir.path(), "require-team", lang, "validate");
    let mutate = scaffold_and_build(dir.path(), "label-team", lang, "mutate");

    for policy in [&validate, &mutate] {
        let (status, printed) = run_suite(policy);
        assert_eq!(status, 0, "{lang}: {}: {printed}", policy.display());
        assert!(printed.contains("3 passed, 0 failed"), "{printed}");
    }

    // The suites test something: the validating suite fails against the
    // mutating policy (which allows what the other denies), naming the case.
    std::fs::copy(mutate.join("build/policy.wasm"), validate.join("build/policy.wasm")).unwrap();
    let (status, printed) = run_suite(&validate);
    assert_eq!(status, 1, "{printed}");
    assert!(printed.contains("an object without the label is denied"), "{printed}");
}

#[test]
fn a_scaffolded_rust_policy_builds_and_passes_its_suite() {
    both_kinds_build_and_pass_their_own_suites("rust");
}

#[test]
fn a_scaffolded_python_policy_builds_and_passes_its_suite() {
    both_kinds_build_and_pass_their_own_suites("python");
}

#[test]
fn a_scaffolded_javascript_policy_builds_and_passes_its_suite() {
    both_kinds_build_and_pass_their_own_suites("js");
}
