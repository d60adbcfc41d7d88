//! The hostile-policy suite: every misbehaviour of the test policy, under
//! every failure policy and action, through the real HTTPS server — while a
//! healthy policy on the same server is reviewed without pause.
//!
//! For each case: the HTTP status, the admission response (allowed or not,
//! status code, message, warning, audit annotation), the metrics' failure
//! kind, and the time it took — bounded by the policy's timeout plus a margin,
//! however the policy misbehaves. The healthy stream must see no error and
//! every one of its answers must be the expected patch.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{TestServer, fixture_body, misbehaving_wasm, post_review};

/// Every evaluation of a hostile policy ends within this — but the memory
/// bomb's, see [`ALLOCATE_TIMEOUT`].
const TIMEOUT: Duration = Duration::from_millis(300);
/// The memory bomb's timeout: it must be stopped by its memory limit, not
/// by the clock, however loaded the machine is. With 300 ms it was caught
/// by the timeout twice in a `make test` beside other loopback load.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack for the answer on top of the timeout: scheduling on a loaded
/// 2-core machine, a debug build, and the HTTP round trip.
const MARGIN: Duration = Duration::from_millis(1500);

/// One misbehaviour of the test policy and what the server must make of it.
struct Misbehaviour {
    behaviour: &'static str,
    /// The policy's timeout.
    timeout: Duration,
    /// `PolicyFailure::kind`, as the metrics and the logs name it.
    kind: &'static str,
    /// A part of the failure's description that names what went wrong.
    reason: &'static str,
}

const MISBEHAVIOURS: [Misbehaviour; 7] = [
    Misbehaviour {
        behaviour: "loop",
        timeout: TIMEOUT,
        kind: "timeout",
        reason: "timed out after 300ms",
    },
    Misbehaviour {
        behaviour: "allocate",
        timeout: ALLOCATE_TIMEOUT,
        kind: "out_of_memory",
        reason: "exceeded its memory limit of 16777216 bytes",
    },
    Misbehaviour {
        behaviour: "panic",
        timeout: TIMEOUT,
        kind: "trap",
        reason: "deliberate panic from the misbehaving policy",
    },
    Misbehaviour {
        behaviour: "error",
        timeout: TIMEOUT,
        kind: "policy_error",
        reason: "reported an error: deliberate policy error",
    },
    Misbehaviour {
        behaviour: "invalid-json",
        timeout: TIMEOUT,
        kind: "invalid_output",
        reason: "the mutated object is not valid JSON",
    },
    Misbehaviour {
        behaviour: "not-an-object",
        timeout: TIMEOUT,
        kind: "invalid_output",
        reason: "must be a JSON object, not an array",
    },
    Misbehaviour {
        behaviour: "identity-change",
        timeout: TIMEOUT,
        kind: "invalid_output",
        reason: "changes /metadata/name",
    },
];

const FAILURE_POLICIES: [&str; 2] = ["Fail", "Ignore"];
const ACTIONS: [&str; 2] = ["enforce", "monitor"];

/// `loop-fail-enforce`, …: one policy per case.
fn policy_name(behaviour: &str, failure_policy: &str, action: &str) -> String {
    format!("{behaviour}-{}-{action}", failure_policy.to_lowercase())
}

/// The policy set: the healthy built-in and one policy per case.
fn policy_set() -> String {
    let mut yaml = String::from(
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n  \
         - name: headless-service\n    module: builtin:headless-service\n",
    );
    for misbehaviour in &MISBEHAVIOURS {
        for failure_policy in FAILURE_POLICIES {
            for action in ACTIONS {
                write!(
                    yaml,
                    "  - name: {name}\n    module: ./misbehaving.wasm\n    action: {action}\n    \
                     failurePolicy: {failure_policy}\n    timeout: {timeout}ms\n    memoryLimit: 16Mi\n    \
                     settings: {{behaviour: {behaviour}}}\n    rules:\n      \
                     - {{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [services]}}\n",
                    name = policy_name(misbehaviour.behaviour, failure_policy, action),
                    timeout = misbehaviour.timeout.as_millis(),
                    behaviour = misbehaviour.behaviour,
                )
                .unwrap();
            }
        }
    }
    yaml
}

/// The fixture every case is reviewed with, and the healthy stream's.
const SERVICE_REVIEW: &str = "crafted-mutating-create-service-db-headless.json";

/// Checks one case's answer; returns what is wrong, if anything.
fn check(
    misbehaviour: &Misbehaviour,
    failure_policy: &str,
    action: &str,
    status: StatusCode,
    answer: &Value,
) -> Result<(), String> {
    let policy = policy_name(misbehaviour.behaviour, failure_policy, action);
    if status != StatusCode::OK {
        return Err(format!(
            "HTTP {status}, expected 200 (a failure is an admission answer, not an HTTP error)"
        ));
    }
    let response = &answer["response"];
    let blocks = failure_policy == "Fail" && action == "enforce";
    if response["allowed"] != Value::Bool(!blocks) {
        return Err(format!("allowed is {}, expected {}", response["allowed"], !blocks));
    }
    if response.get("patch").is_some() {
        return Err("a failed policy's answer carries a patch".into());
    }
    if blocks {
        let message = response["status"]["message"].as_str().unwrap_or_default();
        let expected_start = format!("policy {policy:?} failed: ");
        if response["status"]["code"] != 500
            || !message.starts_with(&expected_start)
            || !message.contains(misbehaviour.reason)
        {
            return Err(format!(
                "expected a 500 denial starting {expected_start:?} and naming {:?}, got {}",
                misbehaviour.reason, response["status"]
            ));
        }
    } else {
        let why = if action == "monitor" {
            "monitor".to_owned()
        } else {
            "failurePolicy: Ignore".to_owned()
        };
        let expected_start = format!("policy {policy} failed and was ignored ({why}): ");
        let warnings: Vec<&str> = response["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !warnings.iter().any(|warning| warning.starts_with(&expected_start)) {
            return Err(format!(
                "expected a warning starting {expected_start:?}, got {warnings:?}"
            ));
        }
        let audit = response["auditAnnotations"]["failure"].as_str().unwrap_or_default();
        if !audit.contains(misbehaviour.reason) {
            return Err(format!(
                "expected the audit annotation `failure` to name {:?}, got {audit:?}",
                misbehaviour.reason
            ));
        }
    }
    Ok(())
}

/// The healthy policy's answer to the stream's review must be the expected
/// patch, every time.
fn healthy_answer_is_right(status: StatusCode, answer: &Value, expected_patch: &str) -> bool {
    status == StatusCode::OK && answer["response"]["allowed"] == true && answer["response"]["patch"] == expected_patch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_under_every_failure_policy_and_action_is_contained() {
    let server = TestServer::start(&policy_set(), &[("misbehaving.wasm", &misbehaving_wasm())], |_| {}).await;
    let client = server.certs.http1_client();
    let body = fixture_body(SERVICE_REVIEW);

    // The healthy stream: two clients reviewing without pause until the table is done.
    let healthy_url = server.url("/mutate/headless-service");
    let (_, first) = post_review(&client, &healthy_url, body.clone()).await;
    let expected_patch = first["response"]["patch"]
        .as_str()
        .expect("the healthy review is patched")
        .to_owned();
    let done = Arc::new(AtomicBool::new(false));
    let (answered, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stream: Vec<_> = (0..2)
        .map(|_| {
            let (client, url, body, expected_patch) = (
                client.clone(),
                healthy_url.clone(),
                body.clone(),
                expected_patch.clone(),
            );
            let (done, answered, wrong) = (done.clone(), answered.clone(), wrong.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let (status, answer) = post_review(&client, &url, body.clone()).await;
                    let counter = if healthy_answer_is_right(status, &answer, &expected_patch) {
                        &answered
                    } else {
                        &wrong
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // The table: every case at once, as a busy cluster would send them.
    let mut cases = Vec::new();
    for (index, misbehaviour) in MISBEHAVIOURS.iter().enumerate() {
        for failure_policy in FAILURE_POLICIES {
            for action in ACTIONS {
                let url = server.url(&format!(
                    "/mutate/{}",
                    policy_name(misbehaviour.behaviour, failure_policy, action)
                ));
                let (client, body) = (client.clone(), body.clone());
                cases.push(tokio::spawn(async move {
                    let started = Instant::now();
                    let (status, answer) = post_review(&client, &url, body).await;
                    (index, failure_policy, action, status, answer, started.elapsed())
                }));
            }
        }
    }
    let mut failures = Vec::new();
    for case in cases {
        let (index, failure_policy, action, status, answer, took) = case.await.unwrap();
        let misbehaviour = &MISBEHAVIOURS[index];
        let name = policy_name(misbehaviour.behaviour, failure_policy, action);
        if let Err(problem) = check(misbehaviour, failure_policy, action, status, &answer) {
            failures.push(format!("{name}: {problem}"));
        }
        if took > misbehaviour.timeout + MARGIN {
            failures.push(format!(
                "{name}: answered after {took:?}, more than the {:?} timeout + {MARGIN:?}",
                misbehaviour.timeout
            ));
        }
    }
    done.store(true, Ordering::Relaxed);
    for task in stream {
        task.await.unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        MISBEHAVIOURS.len() * 4,
        failures.join("\n")
    );
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "the healthy policy answered wrongly while its neighbours misbehaved"
    );
    assert!(
        answered.load(Ordering::Relaxed) > 0,
        "the healthy stream got no answer at all"
    );

    // Every failure is counted under its kind, once per case.
    let metrics = reqwest::get(server.health_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for misbehaviour in &MISBEHAVIOURS {
        for failure_policy in FAILURE_POLICIES {
            for action in ACTIONS {
                let line = format!(
                    "wasmhook_policy_failures_total{{policy=\"{}\",kind=\"{}\"}} 1",
                    policy_name(misbehaviour.behaviour, failure_policy, action),
                    misbehaviour.kind
                );
                assert!(metrics.lines().any(|metric| metric == line), "metrics lack {line:?}");
            }
        }
    }
}
