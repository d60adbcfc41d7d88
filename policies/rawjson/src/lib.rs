//! # wasmhook-rawjson: JSON containers as raw text
//!
//! A mutating policy usually changes a few fields of an object of kilobytes.
//! Parsing the whole object into a tree to change them, serializing it back,
//! and parsing both versions again to diff them costs far more than the
//! change. This crate gives the two sides of that exchange what they need to
//! touch only what changed:
//!
//! - [`members`] and [`elements`] split one JSON object or array into its
//!   members as *raw text* — exact slices of the input, nothing allocated for
//!   the values. The SDK's `Object` expands only the containers on the path
//!   to an edit and writes everything else back byte for byte.
//! - [`diff`] computes the JSON Patch between two documents, descending only
//!   into the parts whose bytes differ. Its patch is exactly the one
//!   `json_patch::diff` computes on the parsed documents (tested, and fuzzed).
//!
//! Every function validates what it reads with `serde_json`: invalid JSON is an
//! error with its line and column, never a wrong answer.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

mod diff;

pub use diff::diff;

/// The error of every function here: the JSON is invalid (with its line and
/// column) or is not the kind of value asked for.
pub type Error = serde_json::Error;

/// What kind of JSON value a (valid) raw text is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{…}`
    Object,
    /// `[…]`
    Array,
    /// A string, number, boolean or null.
    Scalar,
}

impl Kind {
    /// The kind of `raw`, which must be valid JSON (leading whitespace allowed).
    pub fn of(raw: &str) -> Self {
        match raw.trim_start().as_bytes().first() {
            Some(b'{') => Self::Object,
            Some(b'[') => Self::Array,
            _ => Self::Scalar,
        }
    }
}

/// Checks that `json` is one valid JSON value and returns it without the
/// whitespace around it.
pub fn validate(json: &str) -> Result<&str, Error> {
    let raw: &RawValue = serde_json::from_str(json)?;
    Ok(raw.get())
}

/// One member of an object: its key (unescaped; borrowed unless the key has
/// escapes) and its value as raw text.
pub type Member<'a> = (Cow<'a, str>, &'a str);

/// The members of the JSON object `json`, in document order, each value as the
/// exact slice of `json` it was written as. Duplicate keys are all returned,
/// in order (a JSON reader keeps the last).
pub fn members(json: &str) -> Result<Vec<Member<'_>>, Error> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let members = deserializer.deserialize_map(MembersVisitor)?;
    deserializer.end()?;
    Ok(members)
}

/// The elements of the JSON array `json`, in order, each as the exact slice of
/// `json` it was written as.
pub fn elements(json: &str) -> Result<Vec<&str>, Error> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let elements = deserializer.deserialize_seq(ElementsVisitor)?;
    deserializer.end()?;
    Ok(elements)
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<Member<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Key(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            members.push((key, value.get()));
        }
        Ok(members)
    }
}

struct ElementsVisitor;

impl<'de> Visitor<'de> for ElementsVisitor {
    type Value = Vec<&'de str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(8));
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            elements.push(element.get());
        }
        Ok(elements)
    }
}

/// An object key, borrowed from the input when it has no escapes: what to
/// deserialize a key into to compare it without copying it.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }

            fn visit_string<E: de::Error>(self, key: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_exact_slices_in_document_order() {
        let json = r#" { "b" : [1, 2] ,"a":{"x":"y"}, "esc\u0061ped": null, "b": 3 } "#;
        let members = members(json).unwrap();
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_ref()).collect();
        assert_eq!(keys, ["b", "a", "escaped", "b"]);
        let values: Vec<&str> = members.iter().map(|(_, value)| *value).collect();
        assert_eq!(values, ["[1, 2]", r#"{"x":"y"}"#, "null", "3"]);
        assert!(matches!(members[0].0, Cow::Borrowed(_)), "plain keys are not copied");
        assert!(matches!(members[2].0, Cow::Owned(_)));
    }

    #[test]
    fn elements_are_exact_slices() {
        assert_eq!(
            elements(r#"[ 1,"two" , {"three": 3}, [] ]"#).unwrap(),
            ["1", r#""two""#, r#"{"three": 3}"#, "[]"]
        );
        assert!(elements("[]").unwrap().is_empty());
    }

    #[test]
    fn invalid_json_and_wrong_kinds_are_errors_with_a_position() {
        let error = members(r#"{"a": [1, }"#).unwrap_err().to_string();
        assert!(error.contains("line 1 column"), "{error}");
        assert!(
            members("[1]")
                .unwrap_err()
                .to_string()
                .contains("expected a JSON object")
        );
        assert!(
            elements(r#"{"a": 1}"#)
                .unwrap_err()
                .to_string()
                .contains("expected a JSON array")
        );
        assert!(members(r#"{"a": 1} x"#).is_err(), "trailing characters");
        assert!(validate("{} {}").is_err());
    }

    #[test]
    fn kinds_and_validation() {
        assert_eq!(validate("  {\"a\": 1}\n").unwrap(), "{\"a\": 1}");
        assert_eq!(Kind::of(" {}"), Kind::Object);
        assert_eq!(Kind::of("[]"), Kind::Array);
        assert_eq!(Kind::of("\"{\""), Kind::Scalar);
        assert_eq!(Kind::of("null"), Kind::Scalar);
    }
}
