//! Shared test support: the AdmissionReview fixtures and the expectation table.
//!
//! `fixtures/admission-reviews/` holds AdmissionReviews recorded from a real
//! kube-apiserver plus `crafted-*` ones derived from them by
//! `fixtures/craft.py`. `fixtures/expected.json` says, for each (fixture,
//! policy, settings) case, what the policy must answer in mutate mode: allowed
//! or not, message and warning substrings, and the exact JSON Patch. This crate
//! loads both so that every test — native policy tests, the server's engine,
//! end-to-end HTTP tests — checks the same expectations the same way.

pub mod certs;
pub mod fuzz;
pub mod kube;
pub mod process;
pub mod registry;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use wasmhook_policy::Verdict;

/// The headless-service built-in policy's name, as the table and the server spell it.
pub const HEADLESS_SERVICE: &str = "headless-service";
/// The statefulset-service-name built-in policy's name.
pub const STATEFULSET_SERVICE_NAME: &str = "statefulset-service-name";
/// Every policy the table may name.
pub const POLICIES: [&str; 2] = [HEADLESS_SERVICE, STATEFULSET_SERVICE_NAME];

/// `tests/fixtures/`, found from this crate's manifest directory so tests work
/// from any working directory.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `tests/fixtures/admission-reviews/`: the review files.
pub fn reviews_dir() -> PathBuf {
    fixtures_dir().join("admission-reviews")
}

/// The file names of every review fixture (recorded and crafted), sorted.
pub fn fixture_names() -> Vec<String> {
    let dir = reviews_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("cannot read a directory entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// A whole AdmissionReview fixture, parsed. Panics with the file name if it
/// cannot be read.
pub fn review(fixture: &str) -> Value {
    let path = reviews_dir().join(fixture);
    let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

/// The `request` member of a fixture, as the JSON string a policy receives.
pub fn request_json(fixture: &str) -> String {
    request(fixture).to_string()
}

/// The `request` member of a fixture.
pub fn request(fixture: &str) -> Value {
    let mut review = review(fixture);
    match review.get_mut("request") {
        Some(request) => request.take(),
        None => panic!("{fixture} has no `request` member"),
    }
}

/// The fixture's `request.object`: the object a mutation starts from
/// (`null` on DELETE).
pub fn original_object(fixture: &str) -> Value {
    request(fixture).get("object").cloned().unwrap_or(Value::Null)
}

/// One row of `fixtures/expected.json`: what `policy` with `settings` must
/// answer for `fixture` in mutate mode.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    /// The review's file name in `fixtures/admission-reviews/`.
    pub fixture: String,
    /// The policy's name (one of [`POLICIES`]).
    pub policy: String,
    /// The policy's settings; `null` for the defaults.
    #[serde(default)]
    pub settings: Value,
    /// Whether the request is allowed.
    pub allowed: bool,
    /// A substring of the denial message.
    #[serde(default)]
    pub message_contains: Option<String>,
    /// Substrings that must each appear in some warning. Empty (or absent)
    /// means the policy gives no warning at all.
    #[serde(default)]
    pub warnings_contain: Vec<String>,
    /// The exact JSON Patch from the original object to the mutated one, as
    /// `json_patch::diff` computes it; empty when nothing changes.
    pub patch: json_patch::Patch,
    /// Why this is the expected answer.
    pub note: String,
}

impl Case {
    /// The settings as the JSON text the server passes to the policy.
    pub fn settings_json(&self) -> String {
        self.settings.to_string()
    }

    /// The fixture's `request`, as JSON text.
    pub fn request_json(&self) -> String {
        request_json(&self.fixture)
    }

    /// The fixture's `request.object`.
    pub fn original_object(&self) -> Value {
        original_object(&self.fixture)
    }

    /// A one-line name for assertion messages.
    pub fn label(&self) -> String {
        format!("{} / {} / settings {}", self.fixture, self.policy, self.settings)
    }

    /// Checks an outcome's allowed flag, message and warnings against this
    /// case, panicking with the case's label and note on a mismatch.
    pub fn assert_outcome(&self, allowed: bool, message: Option<&str>, warnings: &[String]) {
        if let Err(problem) = self.check_outcome(allowed, message, warnings) {
            panic!("{problem}");
        }
    }

    /// Checks an outcome's allowed flag, message and warnings against this
    /// case; the error names the case and says what differs.
    pub fn check_outcome(&self, allowed: bool, message: Option<&str>, warnings: &[String]) -> Result<(), String> {
        let label = self.label();
        if allowed != self.allowed {
            return Err(format!(
                "{label}: allowed is {allowed}, expected {} ({}); message: {message:?}",
                self.allowed, self.note
            ));
        }
        if let Some(expected) = &self.message_contains {
            let Some(actual) = message else {
                return Err(format!("{label}: no message, expected one containing {expected:?}"));
            };
            if !actual.contains(expected.as_str()) {
                return Err(format!("{label}: message {actual:?} lacks {expected:?}"));
            }
        }
        if self.warnings_contain.is_empty() && !warnings.is_empty() {
            return Err(format!("{label}: unexpected warnings {warnings:?}"));
        }
        for expected in &self.warnings_contain {
            if !warnings.iter().any(|warning| warning.contains(expected.as_str())) {
                return Err(format!(
                    "{label}: no warning contains {expected:?}; warnings: {warnings:?}"
                ));
            }
        }
        Ok(())
    }

    /// Checks a whole AdmissionReview answer (`{"response": …}`) from a
    /// mutating endpoint against this case: the outcome, and the JSON Patch
    /// (base64 in `response.patch`) exactly.
    pub fn check_answer(&self, answer: &Value) -> Result<(), String> {
        let response = &answer["response"];
        let Some(allowed) = response["allowed"].as_bool() else {
            return Err(format!("{}: the answer has no `allowed`: {answer}", self.label()));
        };
        let message = response["status"]["message"].as_str();
        let warnings: Vec<String> = response["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|warning| warning.as_str().map(str::to_owned))
            .collect();
        self.check_outcome(allowed, message, &warnings)?;
        let patch = match response["patch"].as_str() {
            None => json_patch::Patch(Vec::new()),
            Some(encoded) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|error| format!("{}: the patch is not base64: {error}", self.label()))?;
                serde_json::from_slice(&bytes)
                    .map_err(|error| format!("{}: the patch is not a JSON Patch: {error}", self.label()))?
            }
        };
        if patch != self.patch {
            return Err(format!(
                "{}: the patch is {}, expected {}",
                self.label(),
                serde_json::to_string(&patch).unwrap_or_default(),
                serde_json::to_string(&self.patch).unwrap_or_default()
            ));
        }
        Ok(())
    }
}

/// `fixtures/expected.json`, parsed. Panics with the reason if it is malformed.
pub fn cases() -> Vec<Case> {
    let path = fixtures_dir().join("expected.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{} is malformed: {error}", path.display()))
}

/// Applies `patch` to `original` and asserts the result is `expected_result`:
/// a patch the server sends must rebuild exactly the object the policy returned.
pub fn assert_patch_reproduces(original: &Value, patch: &json_patch::Patch, expected_result: &Value) {
    let mut patched = original.clone();
    json_patch::patch(&mut patched, patch).unwrap_or_else(|error| panic!("the patch does not apply: {error}"));
    assert_eq!(
        &patched, expected_result,
        "applying {patch:?} does not give the mutated object"
    );
}

/// Evaluates a built-in policy natively (no Wasm), by name, exactly as its
/// component would: the request and settings as JSON text.
pub fn evaluate_native(policy: &str, request_json: &str, settings_json: &str) -> Result<Verdict, String> {
    use wasmhook_policy::testing::evaluate;
    match policy {
        HEADLESS_SERVICE => evaluate::<headless_service::HeadlessService>(request_json, settings_json),
        STATEFULSET_SERVICE_NAME => {
            evaluate::<statefulset_service_name::StatefulSetServiceName>(request_json, settings_json)
        }
        other => panic!("no native policy named {other:?}"),
    }
}

/// Runs a built-in policy's settings validation natively, by name.
pub fn validate_settings_native(policy: &str, settings_json: &str) -> Result<(), String> {
    use wasmhook_policy::testing::validate_settings;
    match policy {
        HEADLESS_SERVICE => validate_settings::<headless_service::HeadlessService>(settings_json),
        STATEFULSET_SERVICE_NAME => {
            validate_settings::<statefulset_service_name::StatefulSetServiceName>(settings_json)
        }
        other => panic!("no native policy named {other:?}"),
    }
}
