//! Deserializing from JSON text that is known to be valid, reading only what
//! the target type keeps.
//!
//! `serde_json::from_str` validates every byte, including those of the
//! members the target type ignores: a view of a Service's name, labels and
//! spec type pays for its managed fields, status and annotations too. Over
//! text already validated (an admission review, after the server checked it),
//! [`from_valid_str`] reads in one pass, handing serde each object's members
//! and each array's elements as it reaches them: a member serde ignores costs
//! only its delimiting by the scanner. A string without escapes is handed to
//! serde borrowed from the text; other scalars are still parsed by serde_json
//! itself, so numbers, literals and escapes mean exactly what they mean to
//! serde_json.
//!
//! An error names the member it happened in as a JSON pointer
//! (`at /spec/ports/0/port: invalid type: …`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use crate::Error;
use crate::scan::{ARRAY, Cursor, Member, Members, OBJECT, members};
use crate::{Key, Kind};

/// Deserializes `T` from `json`, which must be valid JSON: the parts `T`
/// ignores are delimited, not validated (see the module documentation).
pub fn from_valid_str<'de, T: de::Deserialize<'de>>(json: &'de str) -> Result<T, Error> {
    read(json, None)
}

/// `T` from `json`; when `root_members` are given, `json` is an object
/// already split into them.
fn read<'de, T: de::Deserialize<'de>>(json: &'de str, root_members: Option<&[Member<'de>]>) -> Result<T, Error> {
    let mut stream = Stream::new(json, root_members);
    stream.cursor.skip_whitespace();
    let value = T::deserialize(&mut stream)?;
    stream.cursor.expect_end()?;
    Ok(value)
}

/// The raw text of a JSON value, borrowed from the input.
///
/// Deserialized by [`from_valid_str`], it is the exact slice, only delimited;
/// by serde_json, it is validated as a `RawValue` is. What a header struct
/// holds for members it passes on unparsed (an admission request's `object`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawText<'de>(pub &'de str);

/// The newtype name by which [`ValidJson`] recognizes a [`RawText`].
const RAW_TEXT: &str = "$wasmhook_rawjson::RawText";

impl<'de: 'a, 'a> de::Deserialize<'de> for RawText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawTextVisitor;

        impl<'de> Visitor<'de> for RawTextVisitor {
            type Value = RawText<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("any JSON value")
            }

            // From `ValidJson`: the slice itself.
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(RawText(text))
            }

            // From any other deserializer: read it as serde_json's `RawValue`.
            fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
                let raw: &'de serde_json::value::RawValue = de::Deserialize::deserialize(deserializer)?;
                Ok(RawText(raw.get()))
            }
        }

        deserializer.deserialize_newtype_struct(RAW_TEXT, RawTextVisitor)
    }
}

/// An object's text together with its members, split in the same pass that
/// delimits it: what an admission request's `object` is read into, so that a
/// typed view of it and an edit of it start from one split instead of
/// re-reading the whole object each.
///
/// Deserialized by [`from_valid_str`], the split happens as the reader steps
/// over the object; by serde_json, the object is validated as a `RawValue`
/// and then split. A value that is not an object has no members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitObject<'de> {
    /// The object's exact text.
    pub text: &'de str,
    /// Its members, in document order, each value an exact slice of `text`.
    pub members: Vec<Member<'de>>,
}

/// The newtype name by which the reader recognizes a [`SplitObject`].
const SPLIT_OBJECT: &str = "$wasmhook_rawjson::SplitObject";

impl<'de: 'a, 'a> de::Deserialize<'de> for SplitObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SplitVisitor;

        impl<'de> Visitor<'de> for SplitVisitor {
            type Value = SplitObject<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("any JSON value")
            }

            // From the reader: the text, then each member as its key and the
            // offsets of its value in the text.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let missing = || <A::Error as de::Error>::custom("a split object ended early");
                let text: &'de str = seq.next_element()?.ok_or_else(missing)?;
                let mut members = Vec::new();
                while let Some(Key(key)) = seq.next_element()? {
                    let start: usize = seq.next_element()?.ok_or_else(missing)?;
                    let end: usize = seq.next_element()?.ok_or_else(missing)?;
                    let value = text.get(start..end).ok_or_else(missing)?;
                    members.push((key, value));
                }
                Ok(SplitObject { text, members })
            }

            // From any other deserializer: validate it as a `RawValue`, then split.
            fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
                let raw: &'de serde_json::value::RawValue = de::Deserialize::deserialize(deserializer)?;
                let text = raw.get();
                let members = match Kind::of(text) {
                    Kind::Object => members(text).map_err(de::Error::custom)?,
                    _ => Vec::new(),
                };
                Ok(SplitObject { text, members })
            }
        }

        deserializer.deserialize_newtype_struct(SPLIT_OBJECT, SplitVisitor)
    }
}

/// What the reader hands a [`SplitObject`]'s visitor: the text, then for each
/// member its key and its value's start and end in the text.
struct SplitAccess<'de> {
    text: &'de str,
    members: std::vec::IntoIter<Member<'de>>,
    /// The offsets still to hand out for the current member.
    pending: [Option<usize>; 2],
    text_given: bool,
}

impl<'de> SeqAccess<'de> for SplitAccess<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if !self.text_given {
            self.text_given = true;
            return seed
                .deserialize(de::value::BorrowedStrDeserializer::new(self.text))
                .map(Some);
        }
        for offset in &mut self.pending {
            if let Some(offset) = offset.take() {
                return seed.deserialize(de::value::UsizeDeserializer::new(offset)).map(Some);
            }
        }
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        let span = crate::span_in(self.text, value);
        self.pending = [Some(span.start), Some(span.end)];
        seed.deserialize(KeyDeserializer { key }).map(Some)
    }
}

/// Deserializes `T` from an object already split (a [`SplitObject`]): its
/// members are handed to serde without reading the object again, and each
/// member serde wants is read as [`from_valid_str`] reads.
pub fn from_split<'de, T: de::Deserialize<'de>>(object: &SplitObject<'de>) -> Result<T, Error> {
    let root_members = (Kind::of(object.text) == Kind::Object).then_some(object.members.as_slice());
    read(object.text, root_members)
}

/// The members of a [`SplitObject`], handed to serde.
struct SplitMembers<'s, 'de> {
    members: std::slice::Iter<'s, Member<'de>>,
    value: Option<&'s Member<'de>>,
}

impl<'de> MapAccess<'de> for SplitMembers<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some(member) = self.members.next() else {
            return Ok(None);
        };
        self.value = Some(member);
        seed.deserialize(KeyDeserializer { key: member.0.clone() }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value was asked for before its key"))?;
        seed.deserialize(&mut Stream::new(value, None))
            .map_err(|error| within(&escape_token(key), &error))
    }
}

/// A serde `Deserializer` reading valid JSON text in one pass: containers are
/// read member by member as serde asks for them, and a member serde does not
/// want is stepped over by delimiting it. Strings without escapes are
/// borrowed from the text; other scalars are cut out and read by serde_json.
struct Stream<'s, 'de> {
    cursor: Cursor<'de>,
    /// The members of the object at the start of the text, when it was
    /// split already (see [`from_split`]).
    root_members: Option<&'s [Member<'de>]>,
}

impl<'s, 'de> Stream<'s, 'de> {
    fn new(text: &'de str, root_members: Option<&'s [Member<'de>]>) -> Self {
        Self {
            cursor: Cursor::new(text),
            root_members,
        }
    }

    /// The next value's text, stepped over.
    fn take_value(&mut self) -> Result<&'de str, Error> {
        self.cursor.value()
    }

    /// serde_json, over the next value alone.
    fn with_serde_json<T>(
        &mut self,
        read: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'de>>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut deserializer = serde_json::Deserializer::from_str(self.take_value()?);
        let value = read(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }

    /// The next value read as a string. One without escapes is handed to
    /// the visitor borrowed from the text: valid JSON has no control
    /// characters in a string, so serde_json would have nothing to check or
    /// unescape. Any other value goes to serde_json, as `read` says.
    fn visit_str<V: Visitor<'de>>(
        &mut self,
        visitor: V,
        read: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'de>>, V) -> Result<V::Value, Error>,
    ) -> Result<V::Value, Error> {
        match self.cursor.plain_string() {
            // serde_json places a visitor's error just past the string.
            Some(text) => visitor.visit_borrowed_str(text).map_err(|error: Error| {
                <Error as de::Error>::custom(format!("{error} at line 1 column {}", text.len() + 2))
            }),
            None => self.with_serde_json(|deserializer| read(deserializer, visitor)),
        }
    }

    /// The next value's text and, for an object, its members, in one pass.
    fn split_object<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        let start = self.cursor.position();
        let (text, members) = if self.cursor.peek() == Some(b'{') {
            let mut members = Members::nested(self.cursor)?;
            let split = members.by_ref().collect::<Result<Vec<_>, Error>>()?;
            self.cursor = members.into_cursor();
            (self.cursor.since(start), split)
        } else {
            (self.take_value()?, Vec::new())
        };
        visitor.visit_seq(SplitAccess {
            text,
            members: members.into_iter(),
            pending: [None, None],
            text_given: false,
        })
    }

    fn visit_object<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        if let Some(members) = self.root_members.take() {
            // Split as it was read: its members, without reading it again.
            self.cursor.skip_to_end();
            return visitor.visit_map(SplitMembers {
                members: members.iter(),
                value: None,
            });
        }
        let done = self.cursor.open(OBJECT)?;
        let mut access = MemberAccess {
            stream: self,
            done,
            key: None,
        };
        let value = visitor.visit_map(&mut access)?;
        // A visitor may stop before the end; step over what it left.
        while !access.done {
            if access
                .next_key_seed(std::marker::PhantomData::<de::IgnoredAny>)?
                .is_some()
            {
                access.next_value_seed(std::marker::PhantomData::<de::IgnoredAny>)?;
            }
        }
        Ok(value)
    }

    fn visit_array<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        let done = self.cursor.open(ARRAY)?;
        let mut access = ElementAccess {
            stream: self,
            index: 0,
            done,
        };
        let value = visitor.visit_seq(&mut access)?;
        while access
            .next_element_seed(std::marker::PhantomData::<de::IgnoredAny>)?
            .is_some()
        {}
        Ok(value)
    }
}

/// Methods that parse a scalar (or an enum, or report a type error): serde_json
/// does them, on the next value's text alone.
macro_rules! by_serde_json {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.with_serde_json(|deserializer| deserializer.$method(visitor))
        }
    )*};
}

impl<'de> Deserializer<'de> for &mut Stream<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.cursor.peek() {
            Some(b'{') => self.visit_object(visitor),
            Some(b'[') => self.visit_array(visitor),
            _ => self.visit_str(visitor, |deserializer, visitor| deserializer.deserialize_any(visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_str(visitor, |deserializer, visitor| deserializer.deserialize_str(visitor))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_str(visitor, |deserializer, visitor| {
            deserializer.deserialize_string(visitor)
        })
    }

    by_serde_json!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_identifier,
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.cursor.at("null") {
            self.take_value()?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.with_serde_json(|deserializer| deserializer.deserialize_unit_struct(name, visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        if name == RAW_TEXT {
            visitor.visit_borrowed_str(self.take_value()?)
        } else if name == SPLIT_OBJECT {
            self.split_object(visitor)
        } else {
            // serde_json's own newtypes (`RawValue`) need its reader.
            self.with_serde_json(|deserializer| deserializer.deserialize_newtype_struct(name, visitor))
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.cursor.peek() {
            Some(b'[') => self.visit_array(visitor),
            _ => self.with_serde_json(|deserializer| deserializer.deserialize_seq(visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.cursor.peek() {
            Some(b'{') => self.visit_object(visitor),
            _ => self.with_serde_json(|deserializer| deserializer.deserialize_map(visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Like serde_json, a struct may be written as an object or an array.
        match self.cursor.peek() {
            Some(b'{') => self.visit_object(visitor),
            Some(b'[') => self.visit_array(visitor),
            _ => self.with_serde_json(|deserializer| deserializer.deserialize_struct(name, fields, visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.with_serde_json(|deserializer| deserializer.deserialize_enum(name, variants, visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Valid by contract, and not wanted: only delimited.
        self.take_value()?;
        visitor.visit_unit()
    }
}

/// An object's members, handed to serde as the stream reaches them.
struct MemberAccess<'a, 's, 'de> {
    stream: &'a mut Stream<'s, 'de>,
    /// The closing brace has been read.
    done: bool,
    /// The key whose value is next, for errors.
    key: Option<Cow<'de, str>>,
}

impl<'de> MapAccess<'de> for MemberAccess<'_, '_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        let key = self.stream.cursor.key()?;
        let deserialized = seed.deserialize(KeyDeserializer { key: key.clone() })?;
        self.key = Some(key);
        Ok(Some(deserialized))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let key = self.key.take().unwrap_or_default();
        let value = seed
            .deserialize(&mut *self.stream)
            .map_err(|error| within(&escape_token(&key), &error))?;
        self.done = self.stream.cursor.end_of_part(OBJECT)?;
        Ok(value)
    }
}

/// An array's elements, handed to serde as the stream reaches them.
struct ElementAccess<'a, 's, 'de> {
    stream: &'a mut Stream<'s, 'de>,
    index: usize,
    /// The closing bracket has been read.
    done: bool,
}

impl<'de> SeqAccess<'de> for ElementAccess<'_, '_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        let index = self.index;
        self.index += 1;
        let element = seed
            .deserialize(&mut *self.stream)
            .map_err(|error| within(&index.to_string(), &error))?;
        self.done = self.stream.cursor.end_of_part(ARRAY)?;
        Ok(Some(element))
    }
}

/// `error`, said to have happened in the member or element `token`: the
/// pointer grows by one token per level it passes through.
fn within(token: &str, error: &Error) -> Error {
    let message = error.to_string();
    let message = match message.strip_prefix("at /") {
        Some(rest) => format!("at /{token}/{rest}"),
        None => format!("at /{token}: {message}"),
    };
    <Error as de::Error>::custom(message)
}

/// A key as a JSON pointer token (RFC 6901: `~` is `~0`, `/` is `~1`).
fn escape_token(key: &str) -> Cow<'_, str> {
    if key.contains(['~', '/']) {
        Cow::Owned(key.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(key)
    }
}

/// An object key: a string, or — as serde_json allows — a number or boolean
/// written as a string (`{"1": …}` into a map keyed by integers).
struct KeyDeserializer<'de> {
    key: Cow<'de, str>,
}

impl KeyDeserializer<'_> {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, Error> {
        self.key
            .parse()
            .map_err(|_| <Error as de::Error>::custom(format!("invalid {what} key {:?}", self.key)))
    }
}

macro_rules! parsed_key {
    ($($method:ident => $visit:ident($type:ty)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit(self.parse::<$type>(stringify!($type))?)
        }
    )*};
}

impl<'de> Deserializer<'de> for KeyDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.key {
            Cow::Borrowed(key) => visitor.visit_borrowed_str(key),
            Cow::Owned(key) => visitor.visit_string(key),
        }
    }

    parsed_key!(
        deserialize_bool => visit_bool(bool),
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_i128 => visit_i128(i128),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_u128 => visit_u128(u128),
        deserialize_f32 => visit_f32(f32),
        deserialize_f64 => visit_f64(f64),
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let key: serde::de::value::CowStrDeserializer<'de, Error> = self.key.into_deserializer();
        key.deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Deserialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;

    /// The same result as serde_json, for a type and a document.
    fn same_as_serde_json<T: DeserializeOwned + PartialEq + fmt::Debug>(json: &str) -> T {
        let expected: T = serde_json::from_str(json).unwrap();
        let found: T = from_valid_str(json).unwrap();
        assert_eq!(found, expected, "{json}");
        found
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct View {
        name: String,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        ports: Vec<Port>,
        cluster_ip: Option<String>,
        kind: Kind,
        shape: Shape,
        #[serde(default)]
        pair: Option<(u8, String)>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Port {
        port: u16,
        #[serde(default)]
        name: Option<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Kind {
        Service,
        Other(String),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Shape {
        Number(f64),
        Words(Vec<String>),
        Nested { inner: BTreeMap<String, Value> },
    }

    #[test]
    fn typed_views_are_what_serde_json_gives() {
        let document = r#"{
            "name": "w\u00e9b \"x\"",
            "ignored": {"deep": [1, {"x": "}"}], "n": null},
            "labels": {"app": "web", "a/b": "c"},
            "ports": [{"port": 80}, {"port": 443, "name": "https", "extra": true}],
            "clusterIP": null,
            "kind": "Service",
            "shape": {"inner": {"a": [1, 2.5, -3], "b": {"c": "d"}}},
            "pair": [7, "seven"],
            "big": 12345678901234567890
        }"#;
        let view = same_as_serde_json::<View>(document);
        assert_eq!(view.name, "wéb \"x\"");
        same_as_serde_json::<View>(&document.replace(r#""Service""#, r#"{"Other": "thing"}"#));
        same_as_serde_json::<View>(&document.replace(r#"{"inner""#, r#"{"unused": 1, "inner""#));
        same_as_serde_json::<View>(&document.replace(
            r#""shape": {"inner": {"a": [1, 2.5, -3], "b": {"c": "d"}}}"#,
            r#""shape": 2.5e1"#,
        ));
        same_as_serde_json::<View>(&document.replace(
            r#""shape": {"inner": {"a": [1, 2.5, -3], "b": {"c": "d"}}}"#,
            r#""shape": ["x", "y"]"#,
        ));
        same_as_serde_json::<Value>(document);
        same_as_serde_json::<HashMap<String, Value>>(document);
    }

    #[test]
    fn keys_may_be_numbers_and_duplicates_keep_the_last() {
        same_as_serde_json::<BTreeMap<u32, bool>>(r#"{"1": true, "20": false}"#);
        same_as_serde_json::<BTreeMap<String, u8>>(r#"{"a": 1, "a": 2}"#);
        assert!(from_valid_str::<BTreeMap<u32, bool>>(r#"{"x": true}"#).is_err());
        // A struct's duplicate field is an error, as with serde_json.
        let error = from_valid_str::<Port>(r#"{"port": 1, "port": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("duplicate field `port`"), "{error}");
    }

    #[test]
    fn raw_text_is_the_exact_slice_either_way() {
        #[derive(Deserialize)]
        struct Header<'a> {
            #[serde(borrow)]
            object: RawText<'a>,
            #[serde(borrow, default)]
            old: Option<RawText<'a>>,
        }
        let document = r#"{"object": { "a" : [1,2] }, "old": null}"#;
        let fast: Header<'_> = from_valid_str(document).unwrap();
        assert_eq!(fast.object.0, r#"{ "a" : [1,2] }"#);
        assert_eq!(fast.old, None);
        let checked: Header<'_> = serde_json::from_str(document).unwrap();
        assert_eq!(checked.object, fast.object);
        // serde_json still validates it.
        assert!(serde_json::from_str::<Header<'_>>(r#"{"object": {"a": tru}}"#).is_err());
    }

    #[test]
    fn a_split_object_is_split_once_and_read_from_its_members() {
        #[derive(Deserialize)]
        struct Header<'a> {
            #[serde(borrow)]
            object: SplitObject<'a>,
            #[serde(borrow, default)]
            other: Option<SplitObject<'a>>,
            after: u8,
        }
        let object = r#"{"name": "web", "k\u0065y": {"a": [1]}, "ports": [{"port": 80}], "kind": "Service", "clusterIP": null, "shape": 1}"#;
        let document = format!(r#"{{"object": {object}, "other": "not an object", "after": 7}}"#);
        let fast: Header<'_> = from_valid_str(&document).unwrap();
        let checked: Header<'_> = serde_json::from_str(&document).unwrap();
        assert_eq!(fast.object, checked.object);
        assert_eq!(fast.object.text, object);
        assert_eq!(fast.object.members, members(object).unwrap());
        assert_eq!(fast.object.members[1].0, "key");
        assert_eq!(fast.after, 7);
        let other = fast.other.unwrap();
        assert_eq!((other.text, other.members.len()), (r#""not an object""#, 0));
        assert_eq!(checked.other.unwrap(), other);

        let view: View = from_split(&fast.object).unwrap();
        assert_eq!(view, serde_json::from_str::<View>(object).unwrap());
        assert_eq!(
            from_split::<Value>(&fast.object).unwrap(),
            serde_json::from_str::<Value>(object).unwrap()
        );
        let error = from_split::<View>(&SplitObject {
            text: r#"{"name": 1}"#,
            members: members(r#"{"name": 1}"#).unwrap(),
        })
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("at /name: invalid type: integer `1`"), "{error}");
        let error = from_split::<String>(&fast.object).unwrap_err().to_string();
        assert!(error.contains("invalid type: map, expected a string"), "{error}");
    }

    #[test]
    fn strings_are_borrowed_when_plain_and_unescaped_by_serde_json_otherwise() {
        let plain: &str = from_valid_str(r#""web-0 {[,:]}""#).unwrap();
        assert_eq!(plain, "web-0 {[,:]}");
        assert_eq!(same_as_serde_json::<String>(r#""caf\u00e9\n\"q\"""#), "café\n\"q\"");
        assert_eq!(
            same_as_serde_json::<Value>(r#"["a", "b\\c", "ü"]"#),
            json!(["a", "b\\c", "ü"])
        );
        // A borrowed string cannot hold an unescaped one: serde_json says so.
        let escaped = r#""a\tb""#;
        assert_eq!(
            from_valid_str::<&str>(escaped).unwrap_err().to_string(),
            serde_json::from_str::<&str>(escaped).unwrap_err().to_string()
        );
    }

    #[test]
    fn a_visitor_refusing_a_plain_string_fails_as_with_serde_json() {
        for text in [r#""not an address""#, r#""""#, r#""10.0.0.300""#] {
            let expected = serde_json::from_str::<std::net::IpAddr>(text).unwrap_err().to_string();
            let found = from_valid_str::<std::net::IpAddr>(text).unwrap_err().to_string();
            assert_eq!(found, expected);
            let member = format!(r#"{{"clusterIP": {text}}}"#);
            let found = from_valid_str::<BTreeMap<String, std::net::IpAddr>>(&member)
                .unwrap_err()
                .to_string();
            assert_eq!(found, format!("at /clusterIP: {expected}"));
        }
    }

    #[test]
    fn errors_name_the_member_as_a_pointer() {
        let error = from_valid_str::<View>(
            r#"{"name":"x","ports":[{"port":80},{"port":"https"}],"clusterIP":null,"kind":"Service","shape":1}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("at /ports/1/port: invalid type: string \"https\", expected u16"),
            "{error}"
        );
        let error = from_valid_str::<BTreeMap<String, BTreeMap<String, u8>>>(r#"{"a/b~": {"c": -1}}"#)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("at /a~1b~0/c: invalid value"), "{error}");
        let error = from_valid_str::<View>(r#"{"name": 1}"#).unwrap_err().to_string();
        assert!(error.starts_with("at /name: invalid type: integer `1`"), "{error}");
        let error = from_valid_str::<View>("[]").unwrap_err().to_string();
        assert!(
            error.contains("missing field `name`") || error.contains("invalid length 0"),
            "{error}"
        );
        let error = from_valid_str::<View>(r#"{"name": "x""#).unwrap_err().to_string();
        assert!(error.contains("expected ',' or '}'"), "{error}");
    }

    #[test]
    fn ignored_members_are_not_read() {
        // Invalid text inside a member the type ignores is not looked at:
        // the contract is valid input, and skipping is what makes it fast.
        #[derive(Debug, Deserialize, PartialEq)]
        struct Name {
            name: String,
        }
        let name: Name = from_valid_str(r#"{"skipped": [tru, 1e], "name": "n"}"#).unwrap();
        assert_eq!(name, Name { name: "n".into() });
        // What is read is checked.
        assert!(from_valid_str::<Name>(r#"{"name": "n\x"}"#).is_err());
        assert_eq!(
            from_valid_str::<Value>(r#" {"a": [1, {"b": null}]} "#).unwrap(),
            json!({"a": [1, {"b": null}]})
        );
    }
}
