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
//!   the values, found by a scanner that delimits them without parsing them.
//!   The SDK's `Object` expands only the containers on the path to an edit
//!   and writes everything else back byte for byte.
//! - [`from_valid_str`] deserializes a type from text already validated (the
//!   server validates each review once, as it arrives), reading only the
//!   members the type keeps; [`RawText`] passes a member on unread.
//! - [`ContainerIndex`] records where the long containers of a document end,
//!   natively, once; within [`with_index`] every reader here looks them up
//!   instead of scanning them (the server indexes the request it hands a
//!   policy).
//! - [`compact`] removes the whitespace between tokens of valid JSON, so a
//!   pretty-printed review is read, copied and diffed at half its size;
//!   [`compact_indexed_checked`] validates, compacts and indexes in one pass
//!   (the server's first read of a review).
//! - [`diff`] computes the JSON Patch between two documents, descending only
//!   into the parts whose bytes differ. Its patch is exactly the one
//!   `json_patch::diff` computes on the parsed documents (tested, and fuzzed).
//!
//! What is validated, and where, is part of each function's contract: the
//! splitters check the structure of the container they split, and leave its
//! values to whoever parses them; [`diff`] validates every part of the
//! mutated document that is not byte for byte the (valid) original's; scalars
//! are always parsed by serde_json. Invalid JSON is an error with its line and
//! column (or its JSON pointer), never a wrong answer.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Visitor};
use serde_json::value::RawValue;

mod checked;
mod compact;
mod diff;
mod index;
mod scan;
mod valid;

pub use checked::{MAX_DEPTH, compact_indexed_checked};
pub use compact::{Compacted, compact, compact_indexed};
pub use diff::diff;
pub use index::{ContainerIndex, MIN_INDEXED_LENGTH, with_index};
pub use scan::{Elements, Member, Members, elements, members};
pub use valid::{RawText, SplitObject, from_split, from_valid_str};

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

/// Where `part`, a slice of `text`, lies in it (byte offsets). The readers
/// here return values as slices of their input; this turns one back into the
/// range it was read from.
///
/// # Panics
///
/// If `part` is not a slice of `text`.
pub fn span_in(text: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize)
        .checked_sub(text.as_ptr() as usize)
        .filter(|start| start + part.len() <= text.len())
        .expect("`part` is a slice of `text`");
    start..start + part.len()
}

/// Checks that `json` is one valid JSON value and returns it without the
/// whitespace around it.
pub fn validate(json: &str) -> Result<&str, Error> {
    let raw: &RawValue = serde_json::from_str(json)?;
    Ok(raw.get())
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

/// The project's recorded and crafted reviews, for this crate's tests.
#[cfg(test)]
mod recorded {
    use std::path::PathBuf;

    /// Every review in `tests/fixtures/admission-reviews`, with its path;
    /// panics if the directory holds fewer than 20 (it was not found whole).
    pub(crate) fn reviews() -> Vec<(PathBuf, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/admission-reviews");
        let mut reviews = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display())) {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|extension| extension == "json") {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
                reviews.push((path, text));
            }
        }
        assert!(
            reviews.len() >= 20,
            "only {} recorded reviews in {}",
            reviews.len(),
            dir.display()
        );
        reviews
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_validation() {
        assert_eq!(validate("  {\"a\": 1}\n").unwrap(), "{\"a\": 1}");
        assert_eq!(Kind::of(" {}"), Kind::Object);
        assert_eq!(Kind::of("[]"), Kind::Array);
        assert_eq!(Kind::of("\"{\""), Kind::Scalar);
        assert_eq!(Kind::of("null"), Kind::Scalar);
    }

    #[test]
    fn a_slice_is_found_where_it_was_read() {
        let text = String::from(r#"{"a":[1,2]}"#);
        let value = &text[5..10];
        assert_eq!(span_in(&text, value), 5..10);
        assert_eq!(span_in(&text, &text[11..]), 11..11);
        let copy = text.clone();
        let elsewhere = std::panic::catch_unwind(|| span_in(&text, &copy[5..10]));
        assert!(elsewhere.is_err(), "a slice of another string is refused");
    }
}
