//! Two related JSON objects: the server's patch from one to the other must reproduce it.
//! The body is `wasmhook_tests::fuzz::json_patch_roundtrip`, which `cargo test` also runs on
//! every input kept in `tests/fuzz/regressions/json_patch_roundtrip/`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmhook_tests::fuzz::json_patch_roundtrip(data));
