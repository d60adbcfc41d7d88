//! Arbitrary text as a policy set: errors, never panics, and every error names the file.
//! The body is `wasmhook_tests::fuzz::policy_set`, which `cargo test` also runs on
//! every input kept in `tests/fuzz/regressions/policy_set/`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmhook_tests::fuzz::policy_set(data));
