//! Native test helpers: run a [`Policy`] exactly as the component glue does,
//! without compiling to Wasm, and read recorded AdmissionReviews.

use serde_json::Value;

use crate::{Policy, Verdict, guest};

/// Parses `settings_json` as the server's load step does and runs the
/// policy's own validation. The error is the text the operator would see.
pub fn validate_settings<P: Policy>(settings_json: &str) -> Result<(), String> {
    guest::run_validate_settings::<P>(settings_json).map(drop)
}

/// Evaluates `request_json` (the `request` member of an AdmissionReview) with
/// `settings_json`, as the component export does.
pub fn evaluate<P: Policy>(request_json: &str, settings_json: &str) -> Result<Verdict, String> {
    guest::run_evaluate::<P>(request_json, settings_json)
}

/// Evaluates a whole AdmissionReview (as recorded from an API server).
///
/// Panics with a clear message if the review has no `request`: this is for tests.
pub fn evaluate_review<P: Policy>(review_json: &str, settings_json: &str) -> Result<Verdict, String> {
    let request = request_of(review_json);
    evaluate::<P>(&request, settings_json)
}

/// The `request` member of an AdmissionReview, as JSON.
pub fn request_of(review_json: &str) -> String {
    let review: Value = serde_json::from_str(review_json).expect("the review is not JSON");
    let request = review.get("request").expect("the review has no `request` member");
    request.to_string()
}
