//! The expectation table (`fixtures/expected.json`) checked against the
//! built-in policies compiled natively, plus checks that keep the table and
//! the fixture directory in step. The server's tests check the same table
//! through Wasm; this one pins down what the policies themselves answer, so a
//! disagreement there points at the engine, not the policy.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use wasmhook_tests::{
    Case, POLICIES, assert_patch_reproduces, cases, evaluate_native, fixture_names, original_object, review,
    validate_settings_native,
};

/// The policy that judges objects of `kind`.
fn policy_for_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "Service" => Some(wasmhook_tests::HEADLESS_SERVICE),
        "StatefulSet" => Some(wasmhook_tests::STATEFULSET_SERVICE_NAME),
        _ => None,
    }
}

fn kind_of(fixture: &str) -> String {
    review(fixture)["request"]["kind"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn check(case: &Case) {
    let label = case.label();
    let verdict = evaluate_native(&case.policy, &case.request_json(), &case.settings_json())
        .unwrap_or_else(|error| panic!("{label}: the policy failed: {error}"));
    case.assert_outcome(verdict.is_allowed(), verdict.message(), verdict.warnings());

    let original = case.original_object();
    let mutated = verdict
        .mutated_object()
        .map_or_else(|| original.clone(), |object| object.to_value());
    let patch = json_patch::diff(&original, &mutated);
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        serde_json::to_value(&case.patch).unwrap(),
        "{label}: wrong patch ({})",
        case.note
    );
    assert_patch_reproduces(&original, &case.patch, &mutated);
}

#[test]
fn every_case_gives_the_expected_verdict_and_patch() {
    let cases = cases();
    assert!(cases.len() >= 40, "the table lost rows: {}", cases.len());
    // Check every case before failing, so one run lists every disagreement.
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            std::panic::catch_unwind(|| check(case))
                .err()
                .map(|payload| panic_text(payload.as_ref()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|text| (*text).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[test]
fn every_fixture_is_in_the_table() {
    let referenced: BTreeSet<String> = cases().into_iter().map(|case| case.fixture).collect();
    let unreferenced: Vec<String> = fixture_names()
        .into_iter()
        .filter(|fixture| !referenced.contains(fixture))
        .collect();
    assert!(
        unreferenced.is_empty(),
        "fixtures with no case in expected.json: {unreferenced:?}"
    );
}

#[test]
fn the_table_names_existing_fixtures_and_policies() {
    let fixtures: BTreeSet<String> = fixture_names().into_iter().collect();
    for case in cases() {
        assert!(fixtures.contains(&case.fixture), "{}: no such fixture", case.label());
        assert!(
            POLICIES.contains(&case.policy.as_str()),
            "{}: no such policy",
            case.label()
        );
        assert!(
            wasmhook_policy_artifacts::builtin(&case.policy).is_some(),
            "{}: the server has no built-in policy of that name",
            case.label()
        );
    }
}

#[test]
fn every_fixture_has_a_default_settings_case_for_its_kind() {
    let defaults: BTreeSet<(String, String)> = cases()
        .into_iter()
        .filter(|case| case.settings.is_null())
        .map(|case| (case.fixture, case.policy))
        .collect();
    for fixture in fixture_names() {
        let kind = kind_of(&fixture);
        let policy = policy_for_kind(&kind).unwrap_or_else(|| panic!("{fixture}: no policy judges kind {kind:?}"));
        assert!(
            defaults.contains(&(fixture.clone(), policy.to_owned())),
            "{fixture}: no case for {policy} with default settings"
        );
    }
}

#[test]
fn table_rows_are_consistent() {
    let mut seen = BTreeMap::new();
    for case in cases() {
        let label = case.label();
        if let Some(previous) = seen.insert(
            (case.fixture.clone(), case.policy.clone(), case.settings.to_string()),
            (),
        ) {
            panic!("{label}: duplicate row {previous:?}");
        }
        validate_settings_native(&case.policy, &case.settings_json())
            .unwrap_or_else(|error| panic!("{label}: invalid settings: {error}"));
        assert!(!case.note.trim().is_empty(), "{label}: every row says why");
        if case.allowed {
            assert!(
                case.message_contains.is_none(),
                "{label}: messageContains is for denials"
            );
        } else {
            assert!(case.message_contains.is_some(), "{label}: a denial names its message");
            assert!(case.patch.0.is_empty(), "{label}: a denial has no patch");
        }
        if original_object(&case.fixture).is_null() {
            assert!(case.patch.0.is_empty(), "{label}: nothing to patch on DELETE");
        }
    }
}

#[test]
fn fixtures_are_named_after_their_content_and_have_unique_uids() {
    let mut uids = BTreeMap::new();
    for fixture in fixture_names() {
        let review = review(&fixture);
        assert_eq!(review["kind"], "AdmissionReview", "{fixture}");
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{fixture}");
        let request = &review["request"];
        let text = |value: &Value| value.as_str().unwrap_or_default().to_lowercase();
        let stem = fixture.strip_prefix("crafted-").unwrap_or(&fixture);
        let expected_suffix = format!(
            "-{}-{}-{}.json",
            text(&request["operation"]),
            text(&request["kind"]["kind"]),
            request["name"].as_str().unwrap_or_default()
        );
        assert!(
            (stem.starts_with("mutating-") || stem.starts_with("validating-")) && stem.ends_with(&expected_suffix),
            "{fixture}: the name does not match <phase>{expected_suffix}"
        );
        let uid = request["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{fixture}: no uid"))
            .to_owned();
        if let Some(other) = uids.insert(uid.clone(), fixture.clone()) {
            panic!("{fixture} and {other} share uid {uid}");
        }
    }
}
