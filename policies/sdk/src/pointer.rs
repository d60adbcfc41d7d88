//! Finding one member of a JSON document by JSON pointer (RFC 6901) without
//! parsing the rest: serde skips every other member in place, allocating
//! nothing for it. This is what lets a policy read `/spec` or
//! `/metadata/labels` of a large object (managed fields, status, a pod
//! template) for a fraction of the cost of deserializing all of it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use wasmhook_rawjson::Key;

/// The raw JSON at `pointer` inside `document`: `Ok(None)` when a member or
/// index on the way is missing or a scalar is in the way; an error when
/// `pointer` is not a JSON pointer or `document` is not valid JSON.
pub fn find<'a>(document: &'a RawValue, pointer: &str) -> Result<Option<&'a RawValue>, serde_json::Error> {
    if pointer.is_empty() {
        return Ok(Some(document));
    }
    let Some(path) = pointer.strip_prefix('/') else {
        return Err(de::Error::custom(format!(
            "{pointer:?} is not a JSON pointer: it must be empty or start with '/'"
        )));
    };
    let mut current = document;
    for token in path.split('/') {
        let token = unescape(token);
        let mut deserializer = serde_json::Deserializer::from_str(current.get());
        let member = Member { token: &token };
        match member.deserialize(&mut deserializer)? {
            Some(member) => current = member,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// `~1` is `/` and `~0` is `~` inside a pointer's tokens.
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Looks for one member (of an object) or element (of an array).
struct Member<'t> {
    token: &'t str,
}

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if found.is_none() && key == self.token {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // RFC 6901: an index is `0` or digits without a leading zero.
        let index = Some(self.token)
            .filter(|token| *token == "0" || !token.starts_with('0'))
            .and_then(|token| token.parse::<usize>().ok());
        let mut found = None;
        let mut position = 0;
        loop {
            if Some(position) == index {
                match seq.next_element::<&'de RawValue>()? {
                    Some(element) => found = Some(element),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            position += 1;
        }
        Ok(found)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = r#"{"metadata":{"name":"web","labels":{"app":"web","a/b":"slash","t~x":"tilde"},
        "managedFields":[{"fieldsV1":{"f:spec":{}}}]},"spec":{"ports":[{"port":80},{"port":443}],"clusterIP":"None"},
        "esc\"aped":1,"n":null}"#;

    fn at(pointer: &str) -> Option<String> {
        let document: &RawValue = serde_json::from_str(DOCUMENT).unwrap();
        find(document, pointer).unwrap().map(|raw| raw.get().to_owned())
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
        assert_eq!(at("/spec/ports/x"), None);
        assert_eq!(at("/spec/clusterIP/deeper"), None, "a scalar is in the way");
    }

    #[test]
    fn a_pointer_without_its_leading_slash_is_an_error() {
        let document: &RawValue = serde_json::from_str(DOCUMENT).unwrap();
        let error = find(document, "spec/clusterIP").unwrap_err().to_string();
        assert!(error.contains(r#""spec/clusterIP" is not a JSON pointer"#), "{error}");
    }
}
