//! The SDK's error type: why a policy could not reach a verdict. (Reads of
//! cluster objects have their own, [`ContextError`], which converts into it.)

use crate::context::ContextError;

/// A failure of the policy itself, as opposed to a denial.
///
/// The server reports it under the policy's failure policy (`Fail` denies the
/// request naming the policy and this message, `Ignore` allows it with a
/// warning).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The request JSON could not be read.
    #[error("cannot read the admission request: {0}")]
    InvalidRequest(#[source] serde_json::Error),
    /// The request's object (or old object) does not have the expected shape.
    #[error("cannot read {what} as {target}: {source}")]
    InvalidObject {
        /// Which part of the request: `object` or `oldObject`, and the
        /// pointer within it when only a part was read (`object at /spec`).
        what: String,
        /// The type it was read as.
        target: &'static str,
        /// The deserializer's message, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The settings could not be parsed.
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
    /// An edit of the object could not be applied.
    #[error("cannot edit the object at {pointer}: {reason}")]
    Edit {
        /// The JSON pointer that was being edited.
        pointer: String,
        /// What went wrong.
        reason: String,
    },
    /// A read of cluster objects failed (see [`crate::context`]). `?` on a
    /// [`ContextError`] in [`Policy::evaluate`](crate::Policy::evaluate)
    /// makes it this.
    #[error("cluster context: {0}")]
    Context(#[from] ContextError),
    /// Any other reason the policy could not decide.
    #[error("{0}")]
    Other(String),
}

impl PolicyError {
    /// A failure with a free-form message.
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other(message.into())
    }
}
