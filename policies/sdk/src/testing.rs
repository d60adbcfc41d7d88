//! Native test helpers: run a [`Policy`] exactly as the component glue does,
//! without compiling to Wasm.
//!
//! - Build an AdmissionRequest around the object under test with [`create`],
//!   [`update`] or [`delete`]. The [`TestRequest`] derives kind, resource,
//!   name and namespace from the object, as the API server would; evaluate
//!   it with [`TestRequest::evaluate`].
//! - Check the verdict with [`assert_unchanged`], [`denial_message`] and
//!   [`mutated_object`], which panic with the whole verdict when it is not
//!   what the test expects.
//! - Give the evaluation a cluster to read through [`crate::context`] with
//!   [`TestRequest::with_cluster`] (objects, or a [`ClusterObjects`] that
//!   declares kinds or makes reads fail); without one every read is
//!   `NotDeclared`, as on a server whose policy set declares no `context:`.
//! - Check settings with [`validate_settings`], replay a recorded
//!   AdmissionReview with [`evaluate_review`], or evaluate hand-written
//!   request JSON with [`evaluate`].
//!
//! # Example
//!
//! A policy and its unit tests. In a policy crate the tests go in
//! `src/tests.rs` (declared in `lib.rs` with `#[cfg(test)] mod tests;`) and
//! each test function is marked `#[test]`; a doctest cannot run `#[test]`
//! functions, so here `main` calls them.
//!
//! ```
//! use wasmhook_policy::serde_json::{Value, json};
//! use wasmhook_policy::testing::{assert_unchanged, create, delete, denial_message, mutated_object, update};
//! use wasmhook_policy::{Operation, Policy, PolicyError, Request, Verdict};
//!
//! #[derive(Default, serde::Deserialize)]
//! #[serde(default, deny_unknown_fields, rename_all = "camelCase")]
//! struct Settings {
//!     team_label: String,
//! }
//!
//! /// Objects need a non-empty team label; a missing one is set to "unowned".
//! struct RequireTeam;
//!
//! impl Policy for RequireTeam {
//!     type Settings = Settings;
//!
//!     fn evaluate(request: &Request<'_>, settings: &Settings) -> Result<Verdict, PolicyError> {
//!         if request.operation() == Operation::Delete {
//!             return Ok(Verdict::allow());
//!         }
//!         match request.object_labels()?.get(&settings.team_label).map(String::as_str) {
//!             Some("") => Ok(Verdict::deny(format!("label {} is empty", settings.team_label))),
//!             Some(_) => Ok(Verdict::allow()),
//!             None => {
//!                 let mut object = request.mutable_object()?;
//!                 object.set(&format!("/metadata/labels/{}", settings.team_label), "unowned")?;
//!                 Ok(Verdict::mutate(object))
//!             }
//!         }
//!     }
//! }
//!
//! wasmhook_policy::export_policy!(RequireTeam);
//!
//! // ----- tests (each one `#[test]` in a policy crate) -----
//!
//! fn service(labels: Value) -> Value {
//!     json!({
//!         "apiVersion": "v1",
//!         "kind": "Service",
//!         "metadata": {"name": "web", "namespace": "prod", "labels": labels},
//!         "spec": {"ports": [{"port": 80}], "futureField": true},
//!     })
//! }
//!
//! fn settings() -> Value {
//!     json!({"teamLabel": "team"})
//! }
//!
//! fn a_missing_label_is_set_and_nothing_else_changes() {
//!     let object = service(json!({"app": "web"}));
//!     let verdict = create(&object).evaluate::<RequireTeam>(settings()).unwrap();
//!
//!     let mut expected = object.clone();
//!     expected["metadata"]["labels"]["team"] = json!("unowned");
//!     assert_eq!(mutated_object(&verdict), expected);
//! }
//!
//! fn an_empty_label_is_denied() {
//!     let old = service(json!({"team": "db"}));
//!     let new = service(json!({"team": ""}));
//!     let verdict = update(&old, &new).evaluate::<RequireTeam>(settings()).unwrap();
//!     assert_eq!(denial_message(&verdict), "label team is empty");
//! }
//!
//! fn labelled_objects_and_deletes_are_allowed_unchanged() {
//!     let labelled = service(json!({"team": "db"}));
//!     assert_unchanged(&create(&labelled).evaluate::<RequireTeam>(settings()).unwrap());
//!
//!     let unlabelled = service(json!({}));
//!     assert_unchanged(&delete(&unlabelled).evaluate::<RequireTeam>(settings()).unwrap());
//! }
//! # fn main() {
//! #     a_missing_label_is_set_and_nothing_else_changes();
//! #     an_empty_label_is_denied();
//! #     labelled_objects_and_deletes_are_allowed_unchanged();
//! # }
//! ```

use serde_json::Value;

use crate::{Policy, Verdict, guest};

pub(crate) mod cluster;
mod request;

pub use cluster::ClusterObjects;
pub use request::{TestRequest, create, delete, update};

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

/// Asserts that `verdict` allows the request and leaves the object unchanged.
/// Messages, warnings and audit annotations are not checked.
///
/// # Panics
///
/// With the verdict, if it denies or mutates.
#[track_caller]
pub fn assert_unchanged(verdict: &Verdict) {
    assert!(verdict.is_allowed(), "expected an allow, got a denial: {verdict:?}");
    assert!(
        verdict.mutated_object().is_none(),
        "expected no mutation, got one: {verdict:?}"
    );
}

/// The message of a denial, for the test to check.
///
/// Owned, like [`mutated_object`]'s result, so that it can be taken straight
/// from a verdict the test does not keep:
/// `let message = denial_message(&create(&object).evaluate::<P>(settings).unwrap());`
///
/// # Panics
///
/// With the verdict, if it allows the request.
#[track_caller]
pub fn denial_message(verdict: &Verdict) -> String {
    assert!(!verdict.is_allowed(), "expected a denial: {verdict:?}");
    assert!(
        verdict.mutated_object().is_none(),
        "a denial carries no mutation: {verdict:?}"
    );
    match verdict.message() {
        Some(message) => message.to_owned(),
        None => panic!("a denial has a message: {verdict:?}"),
    }
}

/// The object a mutating verdict allows the request with (a copy), for the
/// test to compare with the expected object.
///
/// # Panics
///
/// With the verdict, if it denies or does not change the object.
#[track_caller]
pub fn mutated_object(verdict: &Verdict) -> Value {
    assert!(verdict.is_allowed(), "a mutation must allow: {verdict:?}");
    match verdict.mutated_object() {
        Some(object) => object.to_value(),
        None => panic!("expected a mutation: {verdict:?}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Object;

    fn mutation() -> Verdict {
        let mut object = Object::from_value(json!({"a": 1})).unwrap();
        object.set("/a", 2).unwrap();
        Verdict::mutate(object)
    }

    #[test]
    fn an_allow_is_unchanged_whatever_it_says() {
        assert_unchanged(&Verdict::allow());
        assert_unchanged(&Verdict::allow().with_message("m").with_warning("w"));
    }

    #[test]
    #[should_panic(expected = "expected no mutation")]
    fn a_mutation_is_not_unchanged() {
        assert_unchanged(&mutation());
    }

    #[test]
    #[should_panic(expected = "expected an allow, got a denial")]
    fn a_denial_is_not_unchanged() {
        assert_unchanged(&Verdict::deny("no"));
    }

    #[test]
    fn a_denial_has_its_message() {
        assert_eq!(denial_message(&Verdict::deny_with_code("no", 422)), "no");
    }

    #[test]
    #[should_panic(expected = "expected a denial: Verdict { allowed: true")]
    fn an_allow_has_no_denial_message() {
        denial_message(&Verdict::allow());
    }

    #[test]
    fn a_mutation_has_its_object() {
        assert_eq!(mutated_object(&mutation()), json!({"a": 2}));
    }

    #[test]
    #[should_panic(expected = "expected a mutation")]
    fn an_allow_has_no_mutated_object() {
        mutated_object(&Verdict::allow());
    }

    #[test]
    #[should_panic(expected = "a mutation must allow")]
    fn a_denial_has_no_mutated_object() {
        mutated_object(&Verdict::deny("no"));
    }
}
