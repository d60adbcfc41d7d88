//! How a policy is applied: whether it may patch, whether it blocks, and what
//! happens when the policy itself fails. These are per-policy settings of the
//! policy set, chosen by the operator, independent of the policy's code.

use serde::{Deserialize, Serialize};

/// Whether a policy may change objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Patches the policy computes are sent to the API server.
    #[default]
    Mutate,
    /// A policy that would change the object denies the request instead,
    /// listing the changes it wanted: the same policy enforces rather than fixes.
    Validate,
}

impl Mode {
    /// The path segment of the endpoint serving this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }
}

/// Whether a policy's decisions take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Denials deny and patches patch.
    #[default]
    Enforce,
    /// Everything is allowed unchanged; what would have happened becomes a
    /// warning, an audit annotation and a log line. For rolling out a policy.
    Monitor,
}

impl Action {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Monitor => "monitor",
        }
    }
}

/// What a failure of the policy itself (timeout, trap, invalid output) means.
/// Named and spelt as in Kubernetes webhook configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Deny the request, naming the policy and the failure.
    #[default]
    #[value(name = "Fail")]
    Fail,
    /// Allow the request, with a warning naming the policy and the failure.
    #[value(name = "Ignore")]
    Ignore,
}

impl FailurePolicy {
    /// The name as in Kubernetes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

/// How one policy is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enforcement {
    /// Mutate or validate.
    pub mode: Mode,
    /// Enforce or monitor.
    pub action: Action,
    /// Fail or Ignore.
    pub failure_policy: FailurePolicy,
}
