//! Why a policy produced no usable verdict. Each failure has a kind that the
//! server reports (metrics, logs) and that the failure policy acts on.

use std::time::Duration;

/// A failure of a policy itself — as opposed to a denial, which is a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyFailure {
    /// The policy ran past its time budget and was interrupted.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The policy tried to grow its memory past its limit.
    #[error("exceeded its memory limit of {limit} bytes")]
    OutOfMemory {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The policy trapped: a panic, an abort, an out-of-bounds access…
    #[error("trapped: {message}")]
    Trap {
        /// The policy's panic message when it printed one, otherwise the trap.
        message: String,
    },
    /// The policy returned something the server refuses.
    #[error("returned an invalid verdict: {reason}")]
    InvalidOutput {
        /// What was wrong with it.
        reason: String,
    },
    /// The policy reported that it could not decide (`evaluate` returned `err`).
    #[error("reported an error: {message}")]
    PolicyError {
        /// The policy's message.
        message: String,
    },
    /// No evaluation slot became free within the time budget: all of the
    /// engine's, or all of this policy's share of them.
    #[error("not evaluated: all {slots} evaluation slots stayed busy for {waited:?}")]
    Overloaded {
        /// How many evaluations may run at once (in the gate that was full).
        slots: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// The engine could not instantiate the policy (pool exhausted, linking).
    #[error("could not be instantiated: {message}")]
    Instantiation {
        /// The engine's reason.
        message: String,
    },
}

impl PolicyFailure {
    /// A short, stable name for the kind of failure, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::OutOfMemory { .. } => "out_of_memory",
            Self::Trap { .. } => "trap",
            Self::InvalidOutput { .. } => "invalid_output",
            Self::PolicyError { .. } => "policy_error",
            Self::Overloaded { .. } => "overloaded",
            Self::Instantiation { .. } => "instantiation",
        }
    }

    pub(crate) fn invalid_output(reason: impl Into<String>) -> Self {
        Self::InvalidOutput { reason: reason.into() }
    }
}
