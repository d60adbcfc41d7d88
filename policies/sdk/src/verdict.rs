//! What a policy answers: allow, deny, warn, annotate, mutate.
//!
//! Verdicts are built through constructors and `with_*` methods so that an
//! inconsistent answer (a denial carrying a mutation, say) cannot be built.

use crate::Object;

/// A policy's decision about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    allowed: bool,
    message: Option<String>,
    code: Option<u16>,
    mutated_object: Option<Object>,
    warnings: Vec<String>,
    audit_annotations: Vec<(String, String)>,
}

impl Verdict {
    /// Allows the request unchanged.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            message: None,
            code: None,
            mutated_object: None,
            warnings: Vec::new(),
            audit_annotations: Vec::new(),
        }
    }

    /// Allows the request with `object` as its new content.
    ///
    /// If no edit changed the object, this is the same as [`Verdict::allow`]
    /// and the server computes no patch.
    pub fn mutate(object: Object) -> Self {
        Self {
            mutated_object: object.is_changed().then_some(object),
            ..Self::allow()
        }
    }

    /// Denies the request with a message for the user; the server reports
    /// HTTP status 403.
    pub fn deny(message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            message: Some(message.into()),
            ..Self::allow()
        }
    }

    /// Denies the request with a message and a specific HTTP status code
    /// (400–599; for example 422 for an invalid object).
    pub fn deny_with_code(message: impl Into<String>, code: u16) -> Self {
        Self {
            code: Some(code),
            ..Self::deny(message)
        }
    }

    /// Adds an admission warning, shown to the user by kubectl.
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// Adds an audit annotation. The API server prefixes the key with the
    /// webhook's name, so `key` is a short name such as `reason` (at most 63
    /// characters: alphanumerics, `-`, `_` and `.`).
    pub fn with_audit_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.audit_annotations.push((key.into(), value.into()));
        self
    }

    /// Adds a message to an allowing verdict (it is logged by the server).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The message, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The HTTP status code of a denial, if one was chosen.
    pub fn code(&self) -> Option<u16> {
        self.code
    }

    /// The mutated object, if the verdict changes the object.
    pub fn mutated_object(&self) -> Option<&Object> {
        self.mutated_object.as_ref()
    }

    /// The warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The audit annotations.
    pub fn audit_annotations(&self) -> &[(String, String)] {
        &self.audit_annotations
    }

    /// Splits the verdict into its wire fields.
    pub(crate) fn into_parts(self) -> VerdictParts {
        VerdictParts {
            allowed: self.allowed,
            message: self.message,
            code: self.code,
            mutated_object: self.mutated_object,
            warnings: self.warnings,
            audit_annotations: self.audit_annotations,
        }
    }
}

/// A verdict's fields, for the component boundary.
pub(crate) struct VerdictParts {
    pub allowed: bool,
    pub message: Option<String>,
    pub code: Option<u16>,
    pub mutated_object: Option<Object>,
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unchanged_object_is_no_mutation() {
        let object = Object::from_value(json!({"a": 1})).unwrap();
        assert_eq!(Verdict::mutate(object), Verdict::allow());
    }

    #[test]
    fn a_changed_object_is_carried() {
        let mut object = Object::from_value(json!({"a": 1})).unwrap();
        object.set("/a", 2).unwrap();
        let verdict = Verdict::mutate(object);
        assert!(verdict.is_allowed());
        assert_eq!(verdict.mutated_object().unwrap().to_value(), json!({"a": 2}));
    }

    #[test]
    fn denials_carry_message_and_code() {
        let verdict = Verdict::deny_with_code("no", 422).with_warning("w");
        assert!(!verdict.is_allowed());
        assert_eq!(verdict.message(), Some("no"));
        assert_eq!(verdict.code(), Some(422));
        assert_eq!(verdict.warnings(), ["w".to_owned()]);
    }
}
