//! The mapping table: every combination of verdict, mode, action and failure
//! policy, checked on the response the API server would read.

use base64::Engine as _;
use serde_json::{Value, json};

use super::*;

const REQUEST: &str = r#"{"uid":"uid-7","kind":{"group":"","version":"v1","kind":"Service"},
    "resource":{"group":"","version":"v1","resource":"services"},"name":"web","namespace":"ns",
    "operation":"CREATE","userInfo":{},
    "object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"ns"},"spec":{}},
    "oldObject":null}"#;

fn input() -> AdmissionInput {
    AdmissionInput::from_request(REQUEST.to_owned()).unwrap()
}

fn verdict() -> Verdict {
    Verdict::allow()
}

fn mutating() -> Verdict {
    Verdict {
        mutated_object: Some(
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"ns"},"spec":{"clusterIP":"None"}}"#.into(),
        ),
        ..verdict()
    }
}

fn denying() -> Verdict {
    Verdict {
        allowed: false,
        message: Some("no thanks".into()),
        ..verdict()
    }
}

fn enforcement(mode: Mode, action: Action, failure_policy: FailurePolicy) -> Enforcement {
    Enforcement {
        mode,
        action,
        failure_policy,
    }
}

fn decide_with(enforcement: Enforcement, evaluated: Result<Verdict, PolicyFailure>) -> Decision {
    decide("p", enforcement, &input(), evaluated)
}

fn wire(response: &AdmissionResponse) -> Value {
    serde_json::to_value(response).unwrap()
}

const ENFORCE: Enforcement = Enforcement {
    mode: Mode::Mutate,
    action: Action::Enforce,
    failure_policy: FailurePolicy::Fail,
};

#[test]
fn allow_echoes_uid_and_carries_nothing_else() {
    let decision = decide_with(ENFORCE, Ok(verdict()));
    assert_eq!(decision.outcome, Outcome::Allowed);
    assert_eq!(wire(&decision.response), json!({"uid": "uid-7", "allowed": true}));
}

#[test]
fn a_mutation_is_sent_as_a_base64_json_patch_string() {
    let decision = decide_with(ENFORCE, Ok(mutating()));
    assert_eq!(decision.outcome, Outcome::Mutated);
    let wire = wire(&decision.response);
    assert_eq!(wire["patchType"], "JSONPatch");
    let encoded = wire["patch"].as_str().expect("the patch is a string on the wire");
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&decoded).unwrap(),
        json!([{"op": "add", "path": "/spec/clusterIP", "value": "None"}])
    );
}

#[test]
fn a_denial_has_status_code_403_by_default_or_the_policys_code() {
    let decision = decide_with(ENFORCE, Ok(denying()));
    assert_eq!(decision.outcome, Outcome::Denied);
    let wire = wire(&decision.response);
    assert_eq!(wire["allowed"], false);
    assert_eq!(wire["status"]["code"], 403);
    assert_eq!(wire["status"]["message"], "no thanks");
    assert_eq!(wire["status"]["reason"], "Forbidden");

    let with_code = Verdict {
        code: Some(422),
        ..denying()
    };
    let wire = super::tests::wire(&decide_with(ENFORCE, Ok(with_code)).response);
    assert_eq!(wire["status"]["code"], 422);
    assert_eq!(wire["status"]["reason"], "Invalid");
}

#[test]
fn validate_mode_turns_a_wanted_change_into_a_denial_listing_it() {
    let decision = decide_with(
        enforcement(Mode::Validate, Action::Enforce, FailurePolicy::Fail),
        Ok(mutating()),
    );
    assert_eq!(decision.outcome, Outcome::Denied);
    assert!(decision.mutation.is_some(), "the wanted mutation is reported");
    let wire = wire(&decision.response);
    assert!(wire.get("patch").is_none());
    let message = wire["status"]["message"].as_str().unwrap();
    assert!(message.contains(r#"add /spec/clusterIP = "None""#), "{message}");
}

#[test]
fn monitor_allows_and_reports_what_would_have_happened() {
    let monitor = enforcement(Mode::Mutate, Action::Monitor, FailurePolicy::Fail);
    let decision = decide_with(monitor, Ok(denying()));
    assert_eq!(decision.outcome, Outcome::WouldDeny);
    let wire = wire(&decision.response);
    assert_eq!(wire["allowed"], true);
    assert_eq!(wire["auditAnnotations"]["would-deny"], "no thanks");
    assert_eq!(wire["warnings"][0], "[monitor] p would deny: no thanks");

    let decision = decide_with(monitor, Ok(mutating()));
    assert_eq!(decision.outcome, Outcome::WouldMutate);
    let wire = super::tests::wire(&decision.response);
    assert!(wire.get("patch").is_none(), "monitor never patches");
    assert!(
        wire["warnings"][0]
            .as_str()
            .unwrap()
            .contains("would change: add /spec/clusterIP")
    );
}

#[test]
fn failures_follow_the_failure_policy_and_action() {
    let failure = || Err(PolicyFailure::Timeout(std::time::Duration::from_millis(5)));
    let decision = decide_with(ENFORCE, failure());
    assert_eq!(
        decision.outcome,
        Outcome::Failed {
            kind: "timeout",
            allowed: false
        }
    );
    let wire = wire(&decision.response);
    assert_eq!(wire["allowed"], false);
    assert_eq!(wire["status"]["code"], 500);
    let message = wire["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(r#"policy "p" failed: timed out"#) && message.contains("Fail"),
        "{message}"
    );

    for ignoring in [
        enforcement(Mode::Mutate, Action::Enforce, FailurePolicy::Ignore),
        enforcement(Mode::Validate, Action::Monitor, FailurePolicy::Fail),
    ] {
        let decision = decide_with(ignoring, failure());
        assert_eq!(
            decision.outcome,
            Outcome::Failed {
                kind: "timeout",
                allowed: true
            }
        );
        let wire = super::tests::wire(&decision.response);
        assert_eq!(wire["allowed"], true);
        assert!(
            wire["warnings"][0]
                .as_str()
                .unwrap()
                .starts_with("policy p failed and was ignored")
        );
    }
}

#[test]
fn invalid_outputs_are_failures() {
    let cases = [
        Verdict {
            mutated_object: Some("[]".into()),
            ..verdict()
        },
        Verdict {
            code: Some(200),
            ..denying()
        },
        Verdict {
            audit_annotations: vec![("not a key!".into(), "v".into())],
            ..verdict()
        },
    ];
    for case in cases {
        let decision = decide_with(ENFORCE, Ok(case));
        assert_eq!(
            decision.outcome,
            Outcome::Failed {
                kind: "invalid_output",
                allowed: false
            }
        );
    }
}

#[test]
fn delete_is_never_patched() {
    let delete = REQUEST
        .replace("CREATE", "DELETE")
        .replace(
            r#""object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"ns"},"spec":{}}"#,
            r#""object":null"#,
        )
        .replace(r#""oldObject":null"#, r#""oldObject":{"kind":"Service"}"#);
    let input = AdmissionInput::from_request(delete).unwrap();
    let decision = decide("p", ENFORCE, &input, Ok(mutating()));
    assert_eq!(
        decision.outcome,
        Outcome::Failed {
            kind: "invalid_output",
            allowed: false
        }
    );
    assert!(decision.response.patch.is_none());
}

#[test]
fn warnings_are_trimmed_not_dropped() {
    let long = "w".repeat(300);
    let decision = decide_with(
        ENFORCE,
        Ok(Verdict {
            warnings: vec![long, "line\nbreak".into()],
            ..verdict()
        }),
    );
    let warnings = &decision.response.warnings;
    assert_eq!(warnings.len(), 2);
    assert_eq!(warnings[0].chars().count(), MAX_WARNING_CHARS);
    assert!(warnings[0].ends_with('…'));
    assert_eq!(warnings[1], "line break");
}
