//! From a policy's verdict (or failure) to the AdmissionResponse the API
//! server receives. This module alone owns that mapping: uid echo, denial
//! status codes, patches, the validate mode, the monitor action, the failure
//! policy, warnings and audit annotations.

use std::collections::BTreeMap;

use kube::core::Status;
use kube::core::admission::Operation;
use serde::Serialize;

use crate::engine::{PolicyFailure, Verdict};
use crate::patch::{self, Mutation};
use crate::policy::{Action, Enforcement, FailurePolicy, Mode};
use crate::review::{API_VERSION, AdmissionInput, KIND};

/// Kubernetes recommends warnings of at most 120 characters; longer ones are
/// trimmed (never dropped).
pub const MAX_WARNING_CHARS: usize = 120;
/// Audit annotation keys become `<webhook>/<key>` and must be qualified names.
const MAX_AUDIT_KEY_CHARS: usize = 63;

/// The `response` member of an AdmissionReview, as the API server reads it.
///
/// wasmhook serializes its own type rather than kube's `AdmissionResponse`,
/// whose `patch` serializes as an array of numbers instead of a base64
/// string.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid, echoed.
    pub uid: String,
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why not, for denials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Standard base64 of a JSON Patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when there is a patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Audit annotations; the API server prefixes keys with the webhook name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    /// Warnings for the user.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl AdmissionResponse {
    /// An allowing response for `uid`.
    fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            status: None,
            patch: None,
            patch_type: None,
            audit_annotations: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Makes this a denial with `message` and HTTP status `code`.
    fn deny(mut self, message: &str, code: u16) -> Self {
        self.allowed = false;
        self.patch = None;
        self.patch_type = None;
        self.status = Some(Status::failure(message, reason_for(code)).with_code(code));
        self
    }

    /// Wraps the response in an AdmissionReview.
    pub fn into_review(self) -> ReviewResponse {
        ReviewResponse {
            api_version: API_VERSION,
            kind: KIND,
            response: self,
        }
    }
}

/// An AdmissionReview carrying a response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    /// Always `admission.k8s.io/v1`.
    pub api_version: &'static str,
    /// Always `AdmissionReview`.
    pub kind: &'static str,
    /// The response.
    pub response: AdmissionResponse,
}

/// What happened to a review, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed unchanged.
    Allowed,
    /// Allowed with a patch.
    Mutated,
    /// Denied by the policy (or, in validate mode, because it wanted changes).
    Denied,
    /// Monitor action: the policy would have denied.
    WouldDeny,
    /// Monitor action: the policy would have patched.
    WouldMutate,
    /// The policy failed; the failure policy decided.
    Failed {
        /// The kind of failure ([`PolicyFailure::kind`]).
        kind: &'static str,
        /// Whether the request was allowed anyway.
        allowed: bool,
    },
}

impl Outcome {
    /// A short, stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Mutated => "mutated",
            Self::Denied => "denied",
            Self::WouldDeny => "would_deny",
            Self::WouldMutate => "would_mutate",
            Self::Failed { allowed: true, .. } => "failed_allowed",
            Self::Failed { allowed: false, .. } => "failed_denied",
        }
    }
}

/// The response to send, what it means, and the mutation behind it (sent,
/// or only wanted in validate mode or monitor action).
#[derive(Debug, Clone)]
pub struct Decision {
    /// The response for the API server.
    pub response: AdmissionResponse,
    /// What happened.
    pub outcome: Outcome,
    /// The mutation the policy asked for, if any.
    pub mutation: Option<Mutation>,
    /// The policy failure, if the policy failed.
    pub failure: Option<PolicyFailure>,
}

/// Maps the result of evaluating `policy` on `input` to a response.
pub fn decide(
    policy: &str,
    enforcement: Enforcement,
    input: &AdmissionInput,
    evaluated: Result<Verdict, PolicyFailure>,
) -> Decision {
    match evaluated.and_then(|verdict| interpret(input, verdict)) {
        Ok(interpreted) => apply_enforcement(policy, enforcement, input.uid(), interpreted),
        Err(failure) => on_failure(policy, enforcement, input.uid(), failure),
    }
}

/// A verdict whose output has been checked and whose patch is computed.
struct Interpreted {
    allowed: bool,
    message: Option<String>,
    code: u16,
    mutation: Option<Mutation>,
    warnings: Vec<String>,
    audit_annotations: BTreeMap<String, String>,
}

fn interpret(input: &AdmissionInput, verdict: Verdict) -> Result<Interpreted, PolicyFailure> {
    let mut audit_annotations = BTreeMap::new();
    for (key, value) in verdict.audit_annotations {
        if !is_qualified_name(&key) {
            return Err(PolicyFailure::invalid_output(format!(
                "audit annotation key {key:?} is not a valid name (at most {MAX_AUDIT_KEY_CHARS} \
                 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)"
            )));
        }
        audit_annotations.insert(key, value);
    }
    let code = match verdict.code {
        None => 403,
        Some(code @ 400..=599) => code,
        Some(code) => {
            return Err(PolicyFailure::invalid_output(format!(
                "denial code {code} is not an HTTP error status (400-599)"
            )));
        }
    };
    let mutation = match (verdict.allowed, verdict.mutated_object) {
        (true, Some(mutated)) => {
            let original = match (input.operation(), input.object_json()) {
                (Operation::Delete, _) | (_, None) => {
                    return Err(PolicyFailure::invalid_output(format!(
                        "a mutated object was returned for a {} request, which has no object to mutate",
                        crate::review::operation_name(input.operation())
                    )));
                }
                (_, Some(original)) => original,
            };
            // The original is part of the request: its containers are
            // looked up, not scanned, where the diff skips them.
            input.with_request_index(|| patch::compute(original, mutated))?
        }
        // A denial's mutation is moot.
        _ => None,
    };
    Ok(Interpreted {
        allowed: verdict.allowed,
        message: verdict.message,
        code,
        mutation,
        warnings: verdict.warnings,
        audit_annotations,
    })
}

fn apply_enforcement(policy: &str, enforcement: Enforcement, uid: &str, verdict: Interpreted) -> Decision {
    let mut response = AdmissionResponse::allow(uid);
    response.warnings = verdict.warnings.iter().map(|warning| trim_warning(warning)).collect();
    response.audit_annotations = verdict.audit_annotations;

    // In validate mode, a wanted change is a denial that lists the changes.
    let denial = match (&verdict.mutation, enforcement.mode) {
        _ if !verdict.allowed => Some((
            verdict
                .message
                .clone()
                .unwrap_or_else(|| format!("denied by policy {policy:?}")),
            verdict.code,
        )),
        (Some(mutation), Mode::Validate) => Some((
            format!(
                "the object does not satisfy policy {policy:?}, which would change it: {}",
                patch::describe(&mutation.patch).join("; ")
            ),
            403,
        )),
        _ => None,
    };

    let outcome = match (denial, enforcement.action) {
        (Some((message, code)), Action::Enforce) => {
            response = response.deny(&message, code);
            Outcome::Denied
        }
        (Some((message, _)), Action::Monitor) => {
            tracing::info!(policy, uid, would = "deny", %message, "monitor: request allowed");
            response
                .warnings
                .push(trim_warning(&format!("[monitor] {policy} would deny: {message}")));
            response.audit_annotations.insert("would-deny".into(), message);
            Outcome::WouldDeny
        }
        (None, action) => match (&verdict.mutation, action) {
            (None, _) => Outcome::Allowed,
            (Some(mutation), Action::Enforce) => {
                response.patch = Some(mutation.encoded());
                response.patch_type = Some("JSONPatch");
                Outcome::Mutated
            }
            (Some(mutation), Action::Monitor) => {
                let changes = patch::describe(&mutation.patch).join("; ");
                tracing::info!(policy, uid, would = "mutate", %changes, "monitor: request allowed unchanged");
                response
                    .warnings
                    .push(trim_warning(&format!("[monitor] {policy} would change: {changes}")));
                response.audit_annotations.insert("would-mutate".into(), changes);
                Outcome::WouldMutate
            }
        },
    };
    Decision {
        response,
        outcome,
        mutation: verdict.mutation,
        failure: None,
    }
}

fn on_failure(policy: &str, enforcement: Enforcement, uid: &str, failure: PolicyFailure) -> Decision {
    let kind = failure.kind();
    let response = AdmissionResponse::allow(uid);
    let blocks = enforcement.action == Action::Enforce && enforcement.failure_policy == FailurePolicy::Fail;
    tracing::warn!(policy, uid, failure = kind, %failure, failure_policy = enforcement.failure_policy.as_str(), action = enforcement.action.as_str(), "policy failed");
    let response = if blocks {
        let message = format!("policy {policy:?} failed: {failure} (failurePolicy: Fail)");
        response.deny(&message, 500)
    } else {
        let mut response = response;
        let why = match enforcement.action {
            Action::Monitor => "monitor".to_owned(),
            Action::Enforce => format!("failurePolicy: {}", enforcement.failure_policy.as_str()),
        };
        response.warnings.push(trim_warning(&format!(
            "policy {policy} failed and was ignored ({why}): {failure}"
        )));
        response.audit_annotations.insert("failure".into(), failure.to_string());
        response
    };
    Decision {
        response,
        outcome: Outcome::Failed { kind, allowed: !blocks },
        mutation: None,
        failure: Some(failure),
    }
}

/// Control characters become spaces; past [`MAX_WARNING_CHARS`] the warning
/// is cut with an ellipsis.
pub fn trim_warning(warning: &str) -> String {
    let clean = warning.replace(|c: char| c.is_control(), " ");
    if clean.chars().count() <= MAX_WARNING_CHARS {
        return clean;
    }
    let mut trimmed: String = clean.chars().take(MAX_WARNING_CHARS - 1).collect();
    trimmed.push('…');
    trimmed
}

fn is_qualified_name(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_AUDIT_KEY_CHARS
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
