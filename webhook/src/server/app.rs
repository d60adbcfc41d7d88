//! The HTTP surface: admission endpoints on the TLS port, health and metrics
//! on the plain one. Every malformed request gets a 4xx with a JSON body that
//! says what was wrong; nothing a client sends can take the server down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::context::watch::ContextWatches;
use crate::engine::Verdict;
use crate::policy::Mode;
use crate::response::decide;
use crate::review::{AdmissionInput, operation_name};
use crate::server::Evaluator;
use crate::server::cpu::CpuTimed;
use crate::server::metrics::{FailureLabels, Metrics, PolicyLabels, ReviewLabels};
use crate::server::registry::PolicyStore;

/// What the handlers share.
pub struct AppState {
    /// The policies being served.
    pub store: Arc<PolicyStore>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long reading a request body may take.
    pub body_timeout: Duration,
    /// Policies, or the benchmark baseline.
    pub evaluator: Evaluator,
    /// Set when shutdown has begun: `/readyz` answers 503 from then on, so
    /// the endpoints stop sending reviews while the server still answers them.
    pub shutting_down: AtomicBool,
    /// The context watches (none started unless a policy declares `context:`).
    pub context: Arc<ContextWatches>,
}

/// The admission router (served over TLS).
pub fn admission_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/{mode}/{policy}", post(review))
        .fallback(not_found)
        .layer(super::unread_body::DrainUnreadLayer)
        .with_state(state)
}

/// The health and metrics router (served over plain HTTP, for kubelet
/// probes and Prometheus scrapes).
pub fn health_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// A JSON error body.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: message.into() })).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint: admission reviews are POSTed to /mutate/<policy> or /validate/<policy>",
    )
}

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    /// The API server's deadline for this call, such as `10s`.
    timeout: Option<String>,
}

async fn review(
    State(state): State<Arc<AppState>>,
    Path((mode, policy_name)): Path<(String, String)>,
    Query(query): Query<ReviewQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;
    let mode = match mode.as_str() {
        "mutate" => Mode::Mutate,
        "validate" => Mode::Validate,
        _ => {
            metrics.reject("unknown_endpoint");
            return not_found().await;
        }
    };
    let snapshot = state.store.snapshot();
    let Some(policy) = snapshot.policies.get(&policy_name).cloned() else {
        metrics.reject("unknown_policy");
        let known: Vec<&str> = snapshot.policies.keys().map(String::as_str).collect();
        let reason = snapshot
            .load_failures
            .get(&policy_name)
            .map(|failure| format!(" (it failed to load: {failure})"))
            .unwrap_or_default();
        return error(
            StatusCode::NOT_FOUND,
            format!("no policy named {policy_name:?}{reason}; serving: {}", known.join(", ")),
        );
    };
    drop(snapshot);
    if policy.config.enforcement.mode != mode {
        metrics.reject("mode_mismatch");
        let actual = policy.config.enforcement.mode.as_str();
        return error(
            StatusCode::NOT_FOUND,
            format!("policy {policy_name:?} runs in {actual} mode: it is served at /{actual}/{policy_name}"),
        );
    }
    if !is_json(&headers) {
        metrics.reject("content_type");
        let found = headers
            .get(header::CONTENT_TYPE)
            .map_or_else(|| "none".to_owned(), |value| format!("{value:?}"));
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json (found {found})"),
        );
    }
    let caller_deadline = match query.timeout.as_deref().map(crate::duration::parse).transpose() {
        Ok(deadline) => deadline,
        Err(reason) => {
            metrics.reject("bad_timeout");
            return error(StatusCode::BAD_REQUEST, format!("query parameter timeout: {reason}"));
        }
    };
    let body = match read_body(body, state.max_body_bytes, state.body_timeout).await {
        Ok(body) => body,
        Err(response) => {
            metrics.reject(response.0);
            return response.1;
        }
    };
    let input = match AdmissionInput::from_review(&body) {
        Ok(input) => input,
        Err(reason) => {
            metrics.reject("malformed_review");
            return error(StatusCode::BAD_REQUEST, reason.to_string());
        }
    };
    drop(body);

    let budget = caller_deadline.map(|deadline| budget_within(deadline, started.elapsed()));
    metrics.in_flight.inc();
    let evaluate_and_decide = async {
        let evaluated = match state.evaluator {
            Evaluator::Policies => {
                let evaluation = policy.compiled.evaluate_observed(input.request_text(), budget).await;
                if evaluation.memory_grown {
                    metrics
                        .policy_memory_growths
                        .get_or_create(&PolicyLabels {
                            policy: policy_name.clone(),
                        })
                        .inc();
                }
                evaluation.result
            }
            Evaluator::AllowWithoutPolicy => Ok(Verdict::allow()),
        };
        // The patch is computed from the verdict: part of the policy's cost.
        decide(&policy.config.name, policy.config.enforcement, &input, evaluated)
    };
    let decision = if matches!(state.evaluator, Evaluator::Policies) && policy.cpu_sampler.sample() {
        let (decision, cpu) = CpuTimed::new(evaluate_and_decide).await;
        metrics
            .policy_cpu
            .get_or_create(&PolicyLabels {
                policy: policy_name.clone(),
            })
            .observe(cpu.as_secs_f64());
        decision
    } else {
        evaluate_and_decide.await
    };
    metrics.in_flight.dec();

    let elapsed = started.elapsed();
    let result = decision.outcome.label();
    metrics
        .reviews
        .get_or_create(&ReviewLabels {
            policy: policy_name.clone(),
            mode: mode.as_str(),
            result,
        })
        .inc();
    metrics
        .review_duration
        .get_or_create(&PolicyLabels {
            policy: policy_name.clone(),
        })
        .observe(elapsed.as_secs_f64());
    if let Some(failure) = &decision.failure {
        metrics
            .policy_failures
            .get_or_create(&FailureLabels {
                policy: policy_name.clone(),
                kind: failure.kind(),
            })
            .inc();
    }
    // Debug, not info: one line per review cost ~5 µs of CPU (a fifth of
    // the HTTP path); the metrics count every review, and failures and
    // monitor-mode findings are logged at warn/info where they are decided.
    tracing::debug!(
        uid = input.uid(),
        policy = %policy_name,
        mode = mode.as_str(),
        operation = operation_name(input.operation()),
        kind = %input.kind().kind,
        namespace = input.namespace().unwrap_or(""),
        name = input.name().unwrap_or(""),
        dry_run = input.dry_run(),
        result,
        latency_us = elapsed.as_micros() as u64,
        "review"
    );
    axum::Json(decision.response.into_review()).into_response()
}

/// The time a policy may take: the caller's deadline minus what has already
/// elapsed and a margin for writing the answer (10 %, between 50 and 500 ms).
pub fn budget_within(caller_deadline: Duration, elapsed: Duration) -> Duration {
    caller_deadline
        .saturating_sub(elapsed)
        .saturating_sub(answer_margin(caller_deadline))
        .max(Duration::from_millis(1))
}

/// What the server keeps of a caller's deadline for reading the request and
/// writing the answer: 10 %, between 50 and 500 ms.
pub fn answer_margin(caller_deadline: Duration) -> Duration {
    (caller_deadline / 10).clamp(Duration::from_millis(50), Duration::from_millis(500))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads the body, refusing more than `limit` bytes and slow senders.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, (&'static str, Response)> {
    let read = axum::body::to_bytes(body, limit);
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(failure)) => {
            let too_large = std::error::Error::source(&failure)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
                || failure.to_string().contains("length limit");
            if too_large {
                Err((
                    "body_too_large",
                    error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the request body exceeds the limit of {limit} bytes"),
                    ),
                ))
            } else {
                Err((
                    "body_read",
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {failure}"),
                    ),
                ))
            }
        }
        Err(_) => Err((
            "body_timeout",
            error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {timeout:?}"),
            ),
        )),
    }
}

/// Readiness, with each policy's state and each context cache's. Not ready
/// once shutdown has begun, nor before every context cache has synced once
/// (a policy could not check what it should). Otherwise ready as soon as the
/// server serves — a broken watch after that is reported (`degraded`, with
/// the error), not made unready:
/// start-up loads every policy before binding, and a failed reload keeps the
/// previous version serving (turning every replica unready at once would take
/// admission down cluster-wide); such failures are listed here.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "ready": false,
                "reason": "shutting down: still answering reviews until the endpoints stop sending them",
            })),
        )
            .into_response();
    }
    let statuses = state.context.statuses();
    let context: serde_json::Map<String, serde_json::Value> = statuses
        .iter()
        .map(|(kind, status)| {
            let status = serde_json::to_value(status).expect("a status serializes");
            (kind.to_string(), status)
        })
        .collect();
    let unsynced: Vec<String> = statuses
        .iter()
        .filter(|(_, status)| !status.synced)
        .map(|(kind, _)| kind.to_string())
        .collect();
    if !unsynced.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "ready": false,
                "reason": format!("context caches not synced yet: {}", unsynced.join(", ")),
                "context": context,
            })),
        )
            .into_response();
    }
    let snapshot = state.store.snapshot();
    let policies: serde_json::Map<String, serde_json::Value> = snapshot
        .policies
        .iter()
        .map(|(name, policy)| {
            let state = match snapshot.load_failures.get(name) {
                Some(failure) => serde_json::json!({"state": "serving-previous-version", "sha256": policy.compiled.sha256(), "loadError": failure}),
                None => serde_json::json!({"state": "serving", "sha256": policy.compiled.sha256(), "mode": policy.config.enforcement.mode.as_str()}),
            };
            (name.clone(), state)
        })
        .chain(
            snapshot
                .load_failures
                .iter()
                .filter(|(name, _)| !snapshot.policies.contains_key(*name))
                .map(|(name, failure)| (name.clone(), serde_json::json!({"state": "not-loaded", "loadError": failure}))),
        )
        .collect();
    let watch_failing = statuses.iter().any(|(_, status)| status.failing);
    let degraded = !snapshot.load_failures.is_empty() || snapshot.config_failure.is_some() || watch_failing;
    let mut body = serde_json::json!({
        "ready": true,
        "degraded": degraded,
        "policySetError": snapshot.config_failure,
        "policies": policies,
    });
    if !context.is_empty() {
        body["context"] = serde_json::Value::Object(context);
    }
    axum::Json(body).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let statuses: Vec<_> = state.context.statuses().into_iter().map(|(_, status)| status).collect();
    state.metrics.context.observe(&statuses);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_a_margin_within_the_callers_deadline() {
        assert_eq!(
            budget_within(Duration::from_secs(10), Duration::ZERO),
            Duration::from_millis(9500)
        );
        assert_eq!(
            budget_within(Duration::from_secs(1), Duration::ZERO),
            Duration::from_millis(900)
        );
        assert_eq!(
            budget_within(Duration::from_secs(1), Duration::from_millis(200)),
            Duration::from_millis(700)
        );
        assert_eq!(
            budget_within(Duration::from_millis(30), Duration::ZERO),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn json_content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON"));
        assert!(!with("text/plain"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
