//! One existing object through one policy: the object as the CREATE request
//! the API server would have sent for it, evaluated by the real engine
//! with the policy's own limits, and the answer turned into a [`Finding`].
//!
//! - allowed unchanged: `pass`, or `warn` with the policy's warnings (a
//!   cluster-aware policy's findings, such as a StatefulSet's missing
//!   Service, are warnings by default);
//! - refused, or changed by a mutating policy: `fail`, saying what the
//!   policy would change and whether that can be done in place
//!   ([`super::advice`]);
//! - the policy failed (timeout, trap, invalid output): `error`, never a pass.
//!
//! The enforcement of the policy set is not applied: `action: monitor` and
//! `failurePolicy: Ignore` decide what admission lets through, while an
//! audit reports what the policy says.

use std::sync::Arc;

use serde_json::{Value, json};

use super::advice::{self, Subject};
use super::targets::ServedResource;
use super::{Finding, ObjectRef, Verdict};
use crate::engine::CompiledPolicy;
use crate::policy::{Action, Enforcement, FailurePolicy, Mode};
use crate::response::{Outcome, decide};
use crate::review::AdmissionInput;

/// The user an audit's requests name.
pub const AUDIT_USER: &str = "wasmhook-audit";

/// An existing object, as the request a policy evaluates.
pub struct Candidate {
    /// The request.
    pub input: AdmissionInput,
    /// The object.
    pub object: Value,
    /// Who it is.
    pub reference: ObjectRef,
}

impl Candidate {
    /// The CREATE request for `object`, a `resource` listed from the cluster.
    /// The error names the object, and says why.
    pub fn new(object: Value, resource: &ServedResource) -> Result<Self, Box<(ObjectRef, String)>> {
        let reference = ObjectRef {
            namespace: object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            kind: resource.kind.clone(),
            name: object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            api_version: resource.api_version(),
            uid: object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        // As the API server sends a CREATE: the resource as discovery names
        // it, the namespace as the object has it (none when cluster-scoped).
        // The object is serialized once, into the request's text.
        let gvk = json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
        let gvr = json!({"group": resource.group, "version": resource.version, "resource": resource.plural});
        let header = json!({
            "uid": reference.uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": reference.name,
            "namespace": reference.namespace,
            "operation": "CREATE",
            "userInfo": {"username": AUDIT_USER, "groups": ["system:authenticated"]},
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        });
        let mut request = header.to_string();
        request.pop(); // the closing brace
        request.push_str(",\"object\":");
        request.push_str(&object.to_string());
        request.push('}');
        let input = match AdmissionInput::from_request(request) {
            Ok(input) => input,
            Err(error) => return Err(Box::new((reference, error.to_string()))),
        };
        Ok(Self {
            input,
            object,
            reference,
        })
    }
}

/// Evaluates `candidate` with `policy` (in `mode`; `on_update`: its rules
/// also select the object's updates).
pub async fn judge(
    policy: &CompiledPolicy,
    name: &Arc<str>,
    mode: Mode,
    on_update: bool,
    candidate: &Candidate,
) -> Finding {
    let evaluated = policy.evaluate(candidate.input.request_text(), None).await;
    let enforcement = Enforcement {
        mode,
        action: Action::Enforce,
        failure_policy: FailurePolicy::Fail,
    };
    let decision = decide(name, enforcement, &candidate.input, evaluated);
    let warnings = &decision.response.warnings;
    let subject = Subject {
        api_version: &candidate.reference.api_version,
        kind: &candidate.reference.kind,
        name: &candidate.reference.name,
        object: &candidate.object,
    };
    let (result, message) = match (decision.outcome, &decision.mutation) {
        (Outcome::Failed { .. }, _) => (
            Verdict::Error,
            decision.failure.as_ref().map_or_else(
                || "the policy failed".to_owned(),
                |failure| format!("the policy failed: {failure}"),
            ),
        ),
        (Outcome::Mutated | Outcome::WouldMutate, Some(mutation)) => {
            (Verdict::Fail, advice::describe(subject, &mutation.patch, on_update))
        }
        (Outcome::Denied | Outcome::WouldDeny, Some(mutation)) if mode == Mode::Validate => (
            Verdict::Fail,
            format!(
                "refused: the policy {}",
                advice::describe(subject, &mutation.patch, on_update)
            ),
        ),
        (Outcome::Denied | Outcome::WouldDeny, _) => (
            Verdict::Fail,
            decision
                .response
                .status
                .as_ref()
                .map_or_else(|| "refused".to_owned(), |status| format!("refused: {}", status.message)),
        ),
        _ if !warnings.is_empty() => (Verdict::Warn, String::new()),
        _ => (Verdict::Pass, String::new()),
    };
    let message = match (message.is_empty(), warnings.is_empty()) {
        (_, true) => message,
        (true, false) => warnings.join("; "),
        (false, false) => format!("{message}; warnings: {}", warnings.join("; ")),
    };
    Finding {
        policy: name.clone(),
        object: candidate.reference.clone(),
        result,
        message,
        patch: decision.mutation.map(|mutation| mutation.patch),
    }
}
