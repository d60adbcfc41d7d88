//! Every input the fuzzers ever found, and their seeds, replayed through the
//! fuzz targets' own bodies (`wasmhook_tests::fuzz`): a crash found once
//! stays fixed. `tests/fuzz/regressions/<target>/` holds the inputs; `make
//! fuzz` copies any new crash there.

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("admission_review", wasmhook_tests::fuzz::admission_review),
    ("json_patch_roundtrip", wasmhook_tests::fuzz::json_patch_roundtrip),
    ("policy_set", wasmhook_tests::fuzz::policy_set),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on each file, naming the file if it panics.
fn replay(name: &str, target: Target, inputs: &[PathBuf]) {
    for input in inputs {
        let data = std::fs::read(input).unwrap_or_else(|error| panic!("{}: {error}", input.display()));
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            panic!("fuzz target {name} fails on {}", input.display());
        }
    }
}

#[test]
fn every_kept_fuzz_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("regressions");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let inputs = files(&root.join(name));
        replay(name, target, &inputs);
        replayed += inputs.len();
    }
    assert!(replayed > 0, "no regression input under {}", root.display());
}

#[test]
fn the_fuzz_targets_accept_their_seeds() {
    // The seeds `make fuzz` starts from: every recorded review, every policy
    // set in the fixtures and the deployment.
    let fixtures = wasmhook_tests::fixtures_dir();
    let reviews = files(&wasmhook_tests::reviews_dir());
    assert!(!reviews.is_empty());
    replay("admission_review", wasmhook_tests::fuzz::admission_review, &reviews);
    let mut policy_sets = files(&fixtures.join("policy-sets"));
    policy_sets.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/policies.yaml"));
    replay("policy_set", wasmhook_tests::fuzz::policy_set, &policy_sets);
}

#[test]
fn the_patch_roundtrip_target_checks_real_edits() {
    // Deterministic pseudo-random inputs: the generator must produce objects
    // that differ (so the target exercises patches, not only equality).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut patched = 0;
    for _ in 0..500 {
        let data: Vec<u8> = (0..256)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        wasmhook_tests::fuzz::json_patch_roundtrip(&data);
        patched += usize::from(wasmhook_tests::fuzz::related_objects_differ(&data));
    }
    assert!(patched > 100, "only {patched} of 500 inputs made a patch");
}
