//! Finding one member of a JSON document by JSON pointer (RFC 6901) without
//! parsing the rest: the containers on the way are only delimited
//! ([`wasmhook_rawjson::Members`]), and nothing is allocated for the members
//! passed over. This is what lets a policy read `/spec` or
//! `/metadata/labels` of a large object (managed fields, status, a pod
//! template) for a fraction of the cost of deserializing all of it.
//!
//! One walk serves every reader of the SDK ([`crate::Request::object_at`] and
//! [`crate::Object::get`]), so both agree: of duplicate keys the last one
//! counts, as for a JSON reader, and an array index is written as RFC 6901
//! says (digits, no leading zero, no sign).

use std::borrow::Cow;

use serde::de::Error as _;
use wasmhook_rawjson::{Elements, Kind, Members, SplitObject};

/// The raw JSON at `pointer` inside `document` (valid JSON): `Ok(None)` when
/// a member or index on the way is missing or a scalar is in the way; an
/// error when `pointer` is not a JSON pointer or a container on the way is
/// malformed.
pub fn find<'a>(document: &'a str, pointer: &str) -> Result<Option<&'a str>, serde_json::Error> {
    if pointer.is_empty() {
        return Ok(Some(document));
    }
    let Some(path) = pointer.strip_prefix('/') else {
        return Err(serde_json::Error::custom(format!(
            "{pointer:?} is not a JSON pointer: it must be empty or start with '/'"
        )));
    };
    find_tokens(document, path.split('/').map(unescape))
}

/// [`find`] in an object split as the request was read: the first step
/// takes the member from the split instead of reading the object again.
pub fn find_in_split<'a>(object: &SplitObject<'a>, pointer: &str) -> Result<Option<&'a str>, serde_json::Error> {
    let Some(path) = pointer.strip_prefix('/') else {
        return find(object.text, pointer);
    };
    if Kind::of(object.text) != Kind::Object {
        return Ok(None);
    }
    let mut tokens = path.split('/').map(unescape);
    let first = tokens.next().unwrap_or_default();
    // The last of duplicate keys counts.
    match object.members.iter().rev().find(|(key, _)| *key == first) {
        Some((_, value)) => find_tokens(value, tokens),
        None => Ok(None),
    }
}

/// [`find`], by tokens already unescaped.
pub fn find_tokens<T: AsRef<str>>(
    document: &str,
    tokens: impl IntoIterator<Item = T>,
) -> Result<Option<&str>, serde_json::Error> {
    let mut current = document;
    for token in tokens {
        let token = token.as_ref();
        let found = match Kind::of(current) {
            Kind::Object => {
                let mut last = None;
                for member in Members::new(current)? {
                    let (key, value) = member?;
                    if key == token {
                        last = Some(value);
                    }
                }
                last
            }
            Kind::Array => match array_index(token) {
                Some(index) => Elements::new(current)?.nth(index).transpose()?,
                None => None,
            },
            Kind::Scalar => None,
        };
        match found {
            Some(part) => current = part,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// An array index as RFC 6901 writes it: digits, no leading zero.
pub fn array_index(token: &str) -> Option<usize> {
    let canonical = !token.is_empty()
        && token.bytes().all(|byte| byte.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    canonical.then(|| token.parse().ok()).flatten()
}

/// `~1` is `/` and `~0` is `~` inside a pointer's tokens.
pub fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = r#"{"metadata":{"name":"web","labels":{"app":"web","a/b":"slash","t~x":"tilde"},
        "managedFields":[{"fieldsV1":{"f:spec":{}}}]},"spec":{"ports":[{"port":80},{"port":443}],"clusterIP":"None"},
        "esc\"aped":1,"n":null}"#;

    fn at(pointer: &str) -> Option<String> {
        find(DOCUMENT, pointer).unwrap().map(str::to_owned)
    }

    #[test]
    fn members_and_elements_are_found_by_pointer() {
        assert_eq!(at("/spec/clusterIP").as_deref(), Some(r#""None""#));
        assert_eq!(at("/spec/ports/1/port").as_deref(), Some("443"));
        assert_eq!(at("/metadata/labels/app").as_deref(), Some(r#""web""#));
        assert_eq!(at("/metadata/labels/a~1b").as_deref(), Some(r#""slash""#));
        assert_eq!(at("/metadata/labels/t~0x").as_deref(), Some(r#""tilde""#));
        assert_eq!(at("/esc\"aped").as_deref(), Some("1"));
        assert_eq!(at("/n").as_deref(), Some("null"));
        assert_eq!(at("").map(|whole| whole.len()), Some(DOCUMENT.len()));
    }

    #[test]
    fn absent_parts_are_none() {
        assert_eq!(at("/status"), None);
        assert_eq!(at("/spec/ports/2"), None);
        assert_eq!(at("/spec/ports/01"), None, "a leading zero is not an index");
        assert_eq!(at("/spec/ports/+1"), None, "a sign is not an index");
        assert_eq!(at("/spec/ports/"), None, "an empty token is not an index");
        assert_eq!(at("/spec/ports/x"), None);
        assert_eq!(at("/spec/clusterIP/deeper"), None, "a scalar is in the way");
    }

    #[test]
    fn the_last_of_duplicate_keys_counts() {
        let document = r#"{"a": 1, "b": {"c": 2}, "a": {"d": 3}}"#;
        assert_eq!(find(document, "/a/d").unwrap(), Some("3"));
        assert_eq!(find(document, "/b/c").unwrap(), Some("2"));
    }

    #[test]
    fn a_pointer_without_its_leading_slash_is_an_error() {
        let error = find(DOCUMENT, "spec/clusterIP").unwrap_err().to_string();
        assert!(error.contains(r#""spec/clusterIP" is not a JSON pointer"#), "{error}");
    }
}
