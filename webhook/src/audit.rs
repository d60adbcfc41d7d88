//! `wasmhook audit`: the objects already in a cluster, judged by the same
//! policies that judge new ones.
//!
//! Admission only sees writes. A cluster that adopts wasmhook already holds
//! objects made before it, or admitted while the webhook was bypassed, or by
//! a policy since tightened. An audit lists them and evaluates each through
//! the real engine, as the CREATE request that made it:
//!
//! - [`targets`]: which resources each policy's `rules` select, from
//!   discovery — each listed once, in one version;
//! - [`selectors`]: `namespaceSelector` (with wasmhook's own exclusions, as
//!   registered) and `objectSelector`;
//! - [`lister`]: paginated lists, never one unbounded request, retried when
//!   the API server hiccups;
//! - [`judge`]: one object through one policy, to a [`Finding`];
//!   [`advice`]: what a mutating policy would change, and whether it can;
//! - [`run`]: the whole audit, listing and evaluating in parallel within
//!   bounds, with cluster-aware policies reading a snapshot of the cluster;
//! - [`output`]: a table, JSON or YAML; [`progress`]: a progress bar on a
//!   terminal; [`report`]: PolicyReports (`wgpolicyk8s.io/v1alpha2`) in the
//!   cluster, applied server-side and pruned.

pub mod advice;
pub mod judge;
pub mod lister;
pub mod output;
pub mod progress;
pub mod report;
pub mod run;
pub mod selectors;
pub mod targets;

use std::sync::Arc;

use json_patch::Patch;
use serde::{Deserialize, Serialize};

pub use run::{AuditOptions, AuditedPolicy, audit};

/// Why an audit could not run to the end. Every message names what failed
/// and what to do; none leaves a partial report behind.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// No client could be configured (kubeconfig, in-cluster environment).
    #[error("cannot configure a Kubernetes client: {0}")]
    Client(String),
    /// The API server did not answer discovery.
    #[error("cannot discover the cluster's resources: {0}")]
    Discovery(String),
    /// A resource could not be listed (the audit would be incomplete).
    #[error("cannot list {resource}: {reason}")]
    List {
        /// The resource (`statefulsets.apps`).
        resource: String,
        /// What the API server said, with advice for a refusal.
        reason: String,
    },
    /// A `--namespace` that does not exist.
    #[error("namespace {0:?} does not exist")]
    NoSuchNamespace(String),
    /// A kind a policy declares under `context:` cannot be read.
    #[error("cannot read {kind} for the context of {policies}: {reason}")]
    Context {
        /// The kind.
        kind: crate::context::ResourceKind,
        /// The policies that declare it.
        policies: String,
        /// Why.
        reason: String,
    },
    /// A policy's selector is invalid.
    #[error("{0}")]
    Selector(String),
    /// PolicyReports could not be written.
    #[error("cannot write PolicyReports: {0}")]
    Report(String),
}

/// What an audit says of one object under one policy, in the terms of a
/// PolicyReport result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The policy allows the object unchanged.
    Pass,
    /// Allowed, with warnings (a cluster finding the policy warns about).
    Warn,
    /// Refused, or a mutating policy would change it.
    Fail,
    /// The policy failed on the object (timeout, trap, invalid output).
    Error,
}

impl Verdict {
    /// The lowercase name, as in a PolicyReport.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Error => "error",
        }
    }
}

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Namespace; `None` for a cluster-scoped object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// `v1`, `apps/v1`.
    pub api_version: String,
    /// The object's uid.
    pub uid: String,
}

/// One object judged by one policy.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The policy's name.
    pub policy: Arc<str>,
    /// The object.
    pub object: ObjectRef,
    /// The verdict.
    pub result: Verdict,
    /// What is wrong and what to do; empty for a pass.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The JSON Patch a mutating policy would apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
}

/// Counts of verdicts (read back from the JSON output by the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Passes.
    pub pass: usize,
    /// Warnings.
    pub warn: usize,
    /// Failures.
    pub fail: usize,
    /// Errors.
    pub error: usize,
}

impl Summary {
    /// Counts `verdict`.
    pub fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Pass => self.pass += 1,
            Verdict::Warn => self.warn += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Error => self.error += 1,
        }
    }

    /// The counts of `findings`.
    pub fn of<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Self {
        let mut summary = Self::default();
        for finding in findings {
            summary.add(finding.result);
        }
        summary
    }

    /// How many verdicts in all.
    pub fn total(&self) -> usize {
        self.pass + self.warn + self.fail + self.error
    }
}

/// What the audit did with one policy.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAudit {
    /// The policy's name.
    pub name: Arc<str>,
    /// `mutate` or `validate`.
    pub mode: crate::policy::Mode,
    /// The resources whose objects it judged (`services`, `statefulsets.apps`).
    pub resources: Vec<String>,
    /// What was left out, one sentence each (rules without CREATE,
    /// subresources).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Whether it has `matchConditions`, which the audit does not evaluate:
    /// its results hold only for objects the conditions match.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub conditions_not_evaluated: bool,
    /// Its verdicts.
    pub summary: Summary,
}

/// The audit's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// Distinct objects judged by at least one policy.
    pub objects: usize,
    /// Every verdict.
    pub summary: Summary,
    /// Each policy, in policy-set order.
    pub policies: Vec<PolicyAudit>,
    /// Every finding (passes included), ordered by policy (set order),
    /// namespace, kind and name.
    pub results: Vec<Finding>,
}
