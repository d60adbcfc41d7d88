//! Delimiting the members of a JSON container without parsing them.
//!
//! serde_json validates every byte it skips, so reading one field of a 3 KB
//! object with it costs nearly as much as reading all of it — and a review
//! was read that way several times: the policy's request header, its typed
//! view, its edit, then the server's diff. But the server validates each
//! review once, as it arrives; after that its text only needs *delimiting*:
//! where each member starts and ends. This scanner finds that eight bytes at a
//! time inside strings and with a table lookup per byte elsewhere.
//!
//! What it checks: the structure of the one container it splits — its
//! brackets, its keys (valid JSON strings, unescaped), colons, commas, and
//! that nothing follows it. What it does not: the members' values, which it
//! returns as the exact slices a JSON reader would read *if they are valid*.
//! A caller either knows they are (a part of a validated document) or
//! validates each when it parses it. A value whose brackets do not balance is
//! still an error here, with its line and column.

use std::borrow::Cow;

use serde::de::Error as _;

use crate::Error;

/// One member of an object: its key (unescaped; borrowed unless the key has
/// escapes) and its value as raw text.
pub type Member<'a> = (Cow<'a, str>, &'a str);

/// The members of the JSON object `json`, in document order, each value as the
/// exact slice of `json` it was written as. Duplicate keys are all returned,
/// in order (a JSON reader keeps the last).
///
/// The object's own structure is checked; its values are not (see the module
/// documentation): validate them, or know that `json` is valid.
pub fn members(json: &str) -> Result<Vec<Member<'_>>, Error> {
    Members::new(json)?.collect()
}

/// The elements of the JSON array `json`, in order, each as the exact slice of
/// `json` it was written as. Checked as [`members`] is.
pub fn elements(json: &str) -> Result<Vec<&str>, Error> {
    Elements::new(json)?.collect()
}

/// The members of an object, one at a time (what [`members`] collects).
pub struct Members<'a> {
    parts: Parts<'a>,
}

impl<'a> Members<'a> {
    /// Starts reading the object `json`: an error if it does not start with `{`.
    pub fn new(json: &'a str) -> Result<Self, Error> {
        Self::start(Cursor::new(json), false)
    }

    /// Starts reading the object at `cursor` inside a larger document; when
    /// the members are read, [`Members::into_cursor`] is just past it.
    pub(crate) fn nested(cursor: Cursor<'a>) -> Result<Self, Error> {
        Self::start(cursor, true)
    }

    /// Resumes reading the object `json` after the member whose value ends at
    /// byte `value_end`, as if the members before were read (a caller that
    /// knows them from another copy of the same bytes skips them).
    pub(crate) fn after_member(json: &'a str, value_end: usize) -> Result<Self, Error> {
        let mut cursor = Cursor::new(json);
        cursor.position = value_end;
        let mut parts = Parts {
            cursor,
            brackets: OBJECT,
            done: false,
            nested: false,
        };
        if parts.cursor.end_of_part(OBJECT)? {
            parts.finish()?;
        }
        Ok(Self { parts })
    }

    /// Where reading stopped: after the object, once every member is read.
    pub(crate) fn into_cursor(self) -> Cursor<'a> {
        self.parts.cursor
    }

    fn start(cursor: Cursor<'a>, nested: bool) -> Result<Self, Error> {
        Ok(Self {
            parts: Parts::start(cursor, nested, OBJECT)?,
        })
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Result<Member<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.parts.next(|cursor| Ok((cursor.key()?, cursor.value()?)))
    }
}

/// The elements of an array, one at a time (what [`elements`] collects).
pub struct Elements<'a> {
    parts: Parts<'a>,
}

impl<'a> Elements<'a> {
    /// Starts reading the array `json`: an error if it does not start with `[`.
    pub fn new(json: &'a str) -> Result<Self, Error> {
        Ok(Self {
            parts: Parts::start(Cursor::new(json), false, ARRAY)?,
        })
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<&'a str, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.parts.next(Cursor::value)
    }
}

/// The punctuation of a container, and what its errors say.
#[derive(Clone, Copy)]
pub(crate) struct Brackets {
    open: u8,
    close: u8,
    /// The error when the container does not start with `open`.
    expected: &'static str,
    /// The error when a part is followed by neither `,` nor `close`.
    after_part: &'static str,
}

/// `{` … `}`.
pub(crate) const OBJECT: Brackets = Brackets {
    open: b'{',
    close: b'}',
    expected: "expected a JSON object",
    after_part: "expected ',' or '}' after a member",
};

/// `[` … `]`.
pub(crate) const ARRAY: Brackets = Brackets {
    open: b'[',
    close: b']',
    expected: "expected a JSON array",
    after_part: "expected ',' or ']' after an element",
};

/// What the two splitters share: reading a container's parts one at a time,
/// and its brackets and commas.
struct Parts<'a> {
    cursor: Cursor<'a>,
    brackets: Brackets,
    done: bool,
    /// Inside a larger document: text may follow the closing bracket.
    nested: bool,
}

impl<'a> Parts<'a> {
    fn start(mut cursor: Cursor<'a>, nested: bool, brackets: Brackets) -> Result<Self, Error> {
        cursor.skip_whitespace();
        let empty = cursor.open(brackets)?;
        let mut parts = Self {
            cursor,
            brackets,
            done: false,
            nested,
        };
        if empty {
            parts.finish()?;
        }
        Ok(parts)
    }

    /// The closing bracket has been stepped over.
    fn finish(&mut self) -> Result<(), Error> {
        self.done = true;
        if self.nested { Ok(()) } else { self.cursor.expect_end() }
    }

    /// The next part, read by `read`, and the comma or bracket after it.
    fn next<T>(&mut self, read: impl FnOnce(&mut Cursor<'a>) -> Result<T, Error>) -> Option<Result<T, Error>> {
        if self.done {
            return None;
        }
        let part = read(&mut self.cursor).and_then(|part| {
            if self.cursor.end_of_part(self.brackets)? {
                self.finish()?;
            }
            Ok(part)
        });
        // After an error there is nothing reliable left to read.
        self.done |= part.is_err();
        Some(part)
    }
}

/// A position in JSON text, and the reading of its structure: what the
/// splitters here and the streaming deserializer share.
#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            position: 0,
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    pub(crate) fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(is_whitespace) {
            self.position += 1;
        }
    }

    pub(crate) fn expect(&mut self, byte: u8, what: &str) -> Result<(), Error> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    pub(crate) fn expect_end(&mut self) -> Result<(), Error> {
        self.skip_whitespace();
        if self.position == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error("trailing characters"))
        }
    }

    /// The text from byte `start` to here.
    pub(crate) fn since(&self, start: usize) -> &'a str {
        &self.text[start..self.position]
    }

    /// The byte offset of the cursor.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// Steps past the end of the text (whose parts were read otherwise).
    pub(crate) fn skip_to_end(&mut self) {
        self.position = self.bytes.len();
    }

    /// A container's opening bracket and the whitespace after it; `true` if
    /// the container is empty (its closing bracket is stepped over too).
    pub(crate) fn open(&mut self, brackets: Brackets) -> Result<bool, Error> {
        self.expect(brackets.open, brackets.expected)?;
        self.skip_whitespace();
        let empty = self.peek() == Some(brackets.close);
        if empty {
            self.position += 1;
        }
        Ok(empty)
    }

    /// After a part of a container: steps over the comma and whitespace
    /// before the next part (`false`), or over the closing bracket (`true`).
    pub(crate) fn end_of_part(&mut self, brackets: Brackets) -> Result<bool, Error> {
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.position += 1;
                self.skip_whitespace();
                Ok(false)
            }
            Some(byte) if byte == brackets.close => {
                self.position += 1;
                Ok(true)
            }
            _ => Err(self.error(brackets.after_part)),
        }
    }

    /// Whether the text here starts with `literal`.
    pub(crate) fn at(&self, literal: &str) -> bool {
        self.bytes[self.position..].starts_with(literal.as_bytes())
    }

    /// An object's key and the colon after it, and the whitespace after that.
    pub(crate) fn key(&mut self) -> Result<Cow<'a, str>, Error> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key (a string)"));
        }
        let start = self.position;
        let content_end = skip_plain_key_bytes(self.bytes, start + 1);
        let key = if self.bytes.get(content_end) == Some(&b'"') {
            // No escape and no control character: the key is its content,
            // found in one pass.
            self.position = content_end + 1;
            Cow::Borrowed(&self.text[start + 1..content_end])
        } else {
            self.position = string_end(self.bytes, start).ok_or_else(|| self.error("unterminated key"))?;
            key_of(&self.text[start..self.position]).map_err(|error| self.error_at(start, &error))?
        };
        self.skip_whitespace();
        self.expect(b':', "expected ':' after the key")?;
        self.skip_whitespace();
        Ok(key)
    }

    /// The value starting here when it is a string without escapes: its
    /// content, borrowed, with the cursor past it. `None`, the cursor
    /// unmoved, for any other value.
    pub(crate) fn plain_string(&mut self) -> Option<&'a str> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let content_start = self.position + 1;
        let content_end = skip_plain_string_bytes(self.bytes, content_start);
        if self.bytes.get(content_end) != Some(&b'"') {
            return None;
        }
        self.position = content_end + 1;
        Some(&self.text[content_start..content_end])
    }

    /// The value starting here (whitespace already skipped), delimited.
    pub(crate) fn value(&mut self) -> Result<&'a str, Error> {
        let start = self.position;
        let end = match self.peek() {
            Some(b'"') => string_end(self.bytes, start).ok_or_else(|| self.error("unterminated string"))?,
            Some(b'{' | b'[') => {
                container_end(self.bytes, start).ok_or_else(|| self.error("unterminated object or array"))?
            }
            _ => scalar_end(self.bytes, start),
        };
        if end == start {
            return Err(self.error("expected a value"));
        }
        self.position = end;
        Ok(&self.text[start..end])
    }

    pub(crate) fn error(&self, what: &str) -> Error {
        self.error_at(self.position, what)
    }

    /// `what` at the line and column of byte `offset`, as serde_json says it.
    fn error_at(&self, offset: usize, what: &str) -> Error {
        let before = &self.bytes[..offset.min(self.bytes.len())];
        let line = 1 + before.iter().filter(|&&byte| byte == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |newline| newline + 1);
        Error::custom(format!("{what} at line {line} column {}", offset - line_start + 1))
    }
}

/// Whether `byte` is JSON whitespace (space, tab, line feed, carriage return).
pub(crate) fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The offset just past the string that starts (with its quote) at `start`;
/// `None` if it is not terminated.
pub(crate) fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut position = start + 1;
    loop {
        position = skip_plain_string_bytes(bytes, position);
        match bytes.get(position)? {
            b'"' => return Some(position + 1),
            // A backslash escapes the next byte (the rest of a \uXXXX escape is
            // plain text to a delimiter).
            _ => position += 2,
        }
    }
}

/// The first offset from `position` on that holds a quote or a backslash (or
/// the length, if none does).
///
/// Eight bytes at a time, in a `u64` (see [`skip_to_stop`]). Most of a
/// Kubernetes object is short strings, too short for a general-purpose search
/// to pay for its setup, and a byte-at-a-time loop mispredicts on every
/// character. (Measured natively on a recorded StatefulSet: 0.42 ns per byte,
/// against 0.70 for serde_json's validating skip. Sixteen at a time with Wasm
/// SIMD, the policies built with `+simd128`, was no faster in Wasm: see
/// BENCHMARKS.md.)
fn skip_plain_string_bytes(bytes: &[u8], position: usize) -> usize {
    skip_to_stop(
        bytes,
        position,
        |word| bytes_equal_to(word, b'"') | bytes_equal_to(word, b'\\'),
        |byte| matches!(byte, b'"' | b'\\'),
    )
}

/// The first offset from `position` on that holds a quote, a backslash or a
/// control character (below 0x20, which JSON forbids in strings), or the
/// length if none does: the end of a key that can be borrowed as it is, when
/// the byte there is its closing quote. Keys are read in every pass, and
/// checking them in a second, byte-at-a-time loop was a third of the time
/// spent on them.
pub(crate) fn skip_plain_key_bytes(bytes: &[u8], position: usize) -> usize {
    skip_to_stop(
        bytes,
        position,
        |word| bytes_equal_to(word, b'"') | bytes_equal_to(word, b'\\') | bytes_below(word, 0x20),
        |byte| matches!(byte, b'"' | b'\\' | 0..0x20),
    )
}

/// The first offset from `position` on whose byte is a stop (or the length,
/// if none is): eight bytes at a time while eight remain, with `word_stops`
/// giving the high bit of each stop byte of a little-endian word (exact for
/// the first stop), then byte by byte with `is_stop`. Inlined, so each caller
/// gets its own loop.
#[inline(always)]
fn skip_to_stop(
    bytes: &[u8],
    mut position: usize,
    word_stops: impl Fn(u64) -> u64,
    is_stop: impl Fn(u8) -> bool,
) -> usize {
    while let Some(chunk) = bytes.get(position..position + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = word_stops(word);
        if found != 0 {
            return position + (found.trailing_zeros() / 8) as usize;
        }
        position += 8;
    }
    while position < bytes.len() && !is_stop(bytes[position]) {
        position += 1;
    }
    position
}

/// `0x01` in every byte of a word.
const EVERY_BYTE_ONE: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
const EVERY_HIGH_BIT: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` below `limit` (at most 0x80), and
/// possibly of bytes after the first such byte, which no caller looks at.
fn bytes_below(word: u64, limit: u8) -> u64 {
    word.wrapping_sub(EVERY_BYTE_ONE * u64::from(limit)) & !word & EVERY_HIGH_BIT
}

/// The high bit of each byte of `word` that equals `byte` (and possibly of
/// bytes after the first match, which no caller looks at).
fn bytes_equal_to(word: u64, byte: u8) -> u64 {
    let zero_where_equal = word ^ (EVERY_BYTE_ONE * u64::from(byte));
    zero_where_equal.wrapping_sub(EVERY_BYTE_ONE) & !zero_where_equal & EVERY_HIGH_BIT
}

/// What a byte means while counting brackets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Plain,
    Quote,
    Open,
    Close,
}

const CLASSES: [Class; 256] = {
    let mut table = [Class::Plain; 256];
    table[b'"' as usize] = Class::Quote;
    table[b'{' as usize] = Class::Open;
    table[b'[' as usize] = Class::Open;
    table[b'}' as usize] = Class::Close;
    table[b']' as usize] = Class::Close;
    table
};

/// The offset just past the object or array that starts at `start`: looked
/// up when the request's index records it (see [`crate::index`]), else
/// scanned; `None` if its brackets do not balance.
fn container_end(bytes: &[u8], start: usize) -> Option<usize> {
    crate::index::indexed_container_end(bytes, start).or_else(|| scanned_container_end(bytes, start))
}

/// [`container_end`] by counting brackets outside strings.
pub(crate) fn scanned_container_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0_usize;
    let mut position = start;
    while let Some(&byte) = bytes.get(position) {
        match CLASSES[usize::from(byte)] {
            Class::Plain => position += 1,
            Class::Quote => position = string_end(bytes, position)?,
            Class::Open => {
                depth += 1;
                position += 1;
            }
            Class::Close => {
                depth -= 1;
                position += 1;
                if depth == 0 {
                    return Some(position);
                }
            }
        }
    }
    None
}

/// The offset just past a number or literal: up to the next delimiter.
fn scalar_end(bytes: &[u8], start: usize) -> usize {
    let length = bytes[start..]
        .iter()
        .position(|byte| matches!(byte, b',' | b'}' | b']' | b':' | b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len() - start);
    start + length
}

/// The unescaped key of a quoted JSON string: borrowed when it has no escapes
/// (after checking it has no control characters, which JSON forbids), else
/// parsed by serde_json.
fn key_of(quoted: &str) -> Result<Cow<'_, str>, String> {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.bytes().any(|byte| byte == b'\\' || byte < 0x20) {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(quoted)
        .map(Cow::Owned)
        .map_err(|error| format!("invalid key: {error}"))
}

#[cfg(test)]
mod tests {
    use serde::de::IgnoredAny;

    use super::*;

    #[test]
    fn keys_read_as_serde_json_reads_them_whatever_the_position_of_an_escape_or_control_character() {
        for length in 0..20 {
            let plain: String = (0..length).map(|index| char::from(b'a' + index % 26)).collect();
            let mut keys = vec![plain.clone(), format!("{plain}é")];
            for position in 0..=length as usize {
                for inserted in ["\\n", "\\u0041", "\u{1}", "\u{1f}", "\t", "é", "\u{7f}"] {
                    let mut key = plain.clone();
                    key.insert_str(position, inserted);
                    keys.push(key);
                }
            }
            for key in keys {
                // Whitespace after the key, so a control character past
                // its closing quote shares the key's eight-byte words.
                let json = format!("{{\"{key}\"\n:\t1}}");
                let expected = serde_json::from_str::<String>(&format!("\"{key}\""));
                let first = members(&json).map(|members| members[0].0.clone().into_owned());
                match (expected, first) {
                    (Ok(expected), Ok(read)) => assert_eq!(read, expected, "{json:?}"),
                    (Err(_), Err(error)) => assert!(error.to_string().contains("invalid key"), "{json:?}: {error}"),
                    (expected, read) => panic!("{json:?}: serde_json {expected:?}, scanner {read:?}"),
                }
            }
        }
    }

    #[test]
    fn members_are_exact_slices_in_document_order() {
        let json = r#" { "b" : [1, 2] ,"a":{"x":"y}"}, "esc\u0061ped": null, "b": 3 } "#;
        let members = members(json).unwrap();
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_ref()).collect();
        assert_eq!(keys, ["b", "a", "escaped", "b"]);
        let values: Vec<&str> = members.iter().map(|(_, value)| *value).collect();
        assert_eq!(values, ["[1, 2]", r#"{"x":"y}"}"#, "null", "3"]);
        assert!(matches!(members[0].0, Cow::Borrowed(_)), "plain keys are not copied");
        assert!(matches!(members[2].0, Cow::Owned(_)));
        assert!(super::members("{}").unwrap().is_empty());
        assert!(super::members(" {\n} ").unwrap().is_empty());
    }

    #[test]
    fn elements_are_exact_slices() {
        assert_eq!(
            elements(r#"[ 1,"two" , {"three": "]"}, [], -1.5e3,true ]"#).unwrap(),
            ["1", r#""two""#, r#"{"three": "]"}"#, "[]", "-1.5e3", "true"]
        );
        assert!(elements("[]").unwrap().is_empty());
        assert!(elements("[ ]").unwrap().is_empty());
    }

    #[test]
    fn strings_with_escaped_quotes_and_brackets_are_delimited() {
        let json = r#"{"a":"say \"}\" \\","b":["\\\"[",{"c\"":"\u005d"}]}"#;
        let members = members(json).unwrap();
        assert_eq!(members[0].1, r#""say \"}\" \\""#);
        assert_eq!(members[1].1, r#"["\\\"[",{"c\"":"\u005d"}]"#);
        assert_eq!(members.len(), 2);
    }

    #[test]
    fn structural_errors_say_what_and_where() {
        let cases = [
            ("[1]", "expected a JSON object at line 1 column 1"),
            (
                r#"{"a": [1, }"#,
                "expected ',' or '}' after a member at line 1 column 12",
            ),
            (r#"{"a": [1, {}"#, "unterminated object or array at line 1 column 7"),
            (r#"{"a" 1}"#, "expected ':' after the key at line 1 column 6"),
            (
                r#"{"a": 1 "b": 2}"#,
                "expected ',' or '}' after a member at line 1 column 9",
            ),
            ("{\n  a: 1}", "expected a key (a string) at line 2 column 3"),
            (r#"{"a": }"#, "expected a value at line 1 column 7"),
            (r#"{"a": "x}"#, "unterminated string at line 1 column 7"),
            (r#"{"a": 1} x"#, "trailing characters at line 1 column 10"),
            (r#"{"a": 1,}"#, "expected a key (a string) at line 1 column 9"),
            ("{\"a\u{1}\": 1}", "invalid key: control character"),
            (r#"{"\x": 1}"#, "invalid key: invalid escape"),
            ("", "expected a JSON object at line 1 column 1"),
        ];
        for (json, expected) in cases {
            let error = members(json).unwrap_err().to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
        let error = elements(r#"{"a": 1}"#).unwrap_err().to_string();
        assert!(error.contains("expected a JSON array"), "{error}");
        let error = elements("[1 2]").unwrap_err().to_string();
        assert!(
            error.contains("expected ',' or ']' after an element at line 1 column 4"),
            "{error}"
        );
        assert!(elements("[1,]").is_err());
    }

    #[test]
    fn the_iterator_stops_after_an_error() {
        let mut iterator = Members::new(r#"{"a": 1 "b": 2, "c": 3}"#).unwrap();
        assert!(iterator.next().unwrap().is_err());
        assert!(iterator.next().is_none());
    }

    /// On valid JSON the scanner finds exactly what serde_json's reader finds.
    #[test]
    fn agrees_with_serde_json_on_valid_documents() {
        let documents = [
            include_str!("../../../tests/fixtures/admission-reviews/mutating-create-statefulset-mysql.json"),
            include_str!("../../../tests/fixtures/admission-reviews/mutating-create-service-dry-svc.json"),
        ];
        for document in documents {
            check_against_serde(document);
        }
    }

    fn check_against_serde(json: &str) {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        match value {
            serde_json::Value::Object(map) => {
                let members = members(json).unwrap();
                assert_eq!(members.len(), map.len(), "no duplicates in the fixtures");
                for (key, raw) in members {
                    let parsed: serde_json::Value = serde_json::from_str(raw).unwrap();
                    assert_eq!(map[key.as_ref()], parsed, "{key}");
                    check_against_serde(raw);
                }
            }
            serde_json::Value::Array(items) => {
                let elements = elements(json).unwrap();
                assert_eq!(elements.len(), items.len());
                for (item, raw) in items.iter().zip(elements) {
                    assert_eq!(*item, serde_json::from_str::<serde_json::Value>(raw).unwrap());
                    check_against_serde(raw);
                }
            }
            _ => {
                serde_json::from_str::<IgnoredAny>(json).unwrap();
            }
        }
    }
}
