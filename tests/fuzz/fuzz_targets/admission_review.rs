//! An AdmissionReview body, through the real headless-service component, to the response.
//! The body is `wasmhook_tests::fuzz::admission_review`, which `cargo test` also runs on
//! every input kept in `tests/fuzz/regressions/admission_review/`.

#![no_main]

libfuzzer_sys::fuzz_target!(
    // The policy is compiled before inputs are timed.
    init: wasmhook_tests::fuzz::admission_review_warm_up(),
    |data: &[u8]| wasmhook_tests::fuzz::admission_review(data)
);
