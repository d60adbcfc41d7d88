//! Validation, compaction and indexing in one pass.
//!
//! Everything in this crate after validation only delimits text, so the
//! server validates each review before anything else reads it. serde_json's
//! validation was a pass of its own over the whole body — about as long as
//! the compaction pass that follows it ([`crate::compact_indexed`]), and the
//! two together cost ~5 µs of each Service review. [`compact_indexed_checked`]
//! checks JSON's grammar in the compaction pass itself.
//!
//! It is never more permissive than serde_json: whatever it accepts,
//! serde_json accepts, and then the compacted text and the index are the ones
//! [`crate::compact_indexed`] makes. It refuses what serde_json refuses, and
//! documents nested deeper than [`MAX_DEPTH`], which serde_json reads. It says
//! nothing about why: a caller that needs an error message (with line and
//! column) asks serde_json for it, and a caller that must accept whatever
//! serde_json accepts falls back to serde_json.

use crate::compact::{Compacted, Compactor};
use crate::scan::{is_whitespace, skip_plain_key_bytes};

/// The deepest nesting of objects and arrays accepted: serde_json's limit
/// for the values it builds (its `RawValue` has none).
pub const MAX_DEPTH: usize = 128;

/// `json` without whitespace between its tokens and the index of its long
/// containers, as [`crate::compact_indexed`] makes them, if `json` is one
/// valid JSON value (surrounded by whitespace or not) nested at most
/// [`MAX_DEPTH`] deep; `None` otherwise.
pub fn compact_indexed_checked(json: &str) -> Option<Compacted<'_>> {
    let mut pass = Pass::new(json)?;
    pass.document()?;
    Some(pass.finish())
}

/// The state of one pass over a document.
struct Pass<'a> {
    bytes: &'a [u8],
    position: usize,
    /// The copy without whitespace, offsets in it and the long containers.
    compactor: Compactor<'a>,
    /// The open containers: their offsets in the output, and the bracket
    /// that closes each.
    open: Vec<(u32, u8)>,
}

impl<'a> Pass<'a> {
    /// `None` if `json` is too long for the index's 32-bit offsets.
    fn new(json: &'a str) -> Option<Self> {
        u32::try_from(json.len()).ok()?;
        Some(Self {
            bytes: json.as_bytes(),
            position: 0,
            compactor: Compactor::new(json),
            open: Vec::with_capacity(32),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    /// Steps over whitespace, leaving it out of the copy. Called between
    /// every two tokens, so the common case — no whitespace — is inlined.
    #[inline(always)]
    fn skip_whitespace(&mut self) {
        if self.peek().is_some_and(is_whitespace) {
            self.position = self.compactor.remove_whitespace(self.position);
        }
    }

    /// One value and the whitespace around it, to the end of the text.
    /// Containers are followed with a stack, not by recursion.
    fn document(&mut self) -> Option<()> {
        'value: loop {
            self.skip_whitespace();
            match self.peek()? {
                b'{' => {
                    self.open(b'}')?;
                    self.skip_whitespace();
                    if self.peek()? == b'}' {
                        self.close();
                    } else {
                        self.key()?;
                        continue 'value;
                    }
                }
                b'[' => {
                    self.open(b']')?;
                    self.skip_whitespace();
                    if self.peek()? == b']' {
                        self.close();
                    } else {
                        continue 'value;
                    }
                }
                b'"' => self.string()?,
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return None,
            }
            // After a value: the next one in its container, or the
            // container's end (and so on outwards), or the end of the text.
            loop {
                self.skip_whitespace();
                let Some(&(_, closing)) = self.open.last() else {
                    return (self.position == self.bytes.len()).then_some(());
                };
                match self.peek()? {
                    b',' => {
                        self.position += 1;
                        if closing == b'}' {
                            self.skip_whitespace();
                            self.key()?;
                        }
                        continue 'value;
                    }
                    byte if byte == closing => self.close(),
                    _ => return None,
                }
            }
        }
    }

    /// A member's key and its colon.
    fn key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.skip_whitespace();
        if self.peek()? != b':' {
            return None;
        }
        self.position += 1;
        Some(())
    }

    fn open(&mut self, closing: u8) -> Option<()> {
        if self.open.len() == MAX_DEPTH {
            return None;
        }
        self.open.push((self.compactor.output_offset(self.position), closing));
        self.position += 1;
        Some(())
    }

    fn close(&mut self) {
        let (start, _) = self.open.pop().expect("called with a container open");
        self.position += 1;
        self.compactor.closed(start, self.position);
    }

    /// A string: no control character, only JSON's escapes.
    fn string(&mut self) -> Option<()> {
        let mut position = self.position + 1;
        loop {
            position = skip_plain_key_bytes(self.bytes, position);
            match self.bytes.get(position)? {
                b'"' => {
                    self.position = position + 1;
                    return Some(());
                }
                b'\\' => match self.bytes.get(position + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => position += 2,
                    b'u' => {
                        let digits = self.bytes.get(position + 2..position + 6)?;
                        if !digits.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        position += 6;
                    }
                    _ => return None,
                },
                // A control character.
                _ => return None,
            }
        }
    }

    /// A number: `-`, then `0` or digits not starting with `0`, then
    /// optionally a fraction and an exponent, each with at least one digit.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        match self.peek()? {
            b'0' => self.position += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.position += 1;
            self.at_least_one_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.position += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.position += 1;
            }
            self.at_least_one_digit()?;
        }
        Some(())
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        if !self.peek()?.is_ascii_digit() {
            return None;
        }
        self.digits();
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.position += 1;
        }
    }

    fn literal(&mut self, literal: &[u8]) -> Option<()> {
        if !self.bytes[self.position..].starts_with(literal) {
            return None;
        }
        self.position += literal.len();
        Some(())
    }

    fn finish(self) -> Compacted<'a> {
        let (text, containers) = self.compactor.finish();
        Compacted { text, containers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `json` is accepted, and read as serde_json and `compact_indexed` read it.
    fn accepted(json: &str) {
        let checked = compact_indexed_checked(json).unwrap_or_else(|| panic!("refused: {json:?}"));
        serde_json::from_str::<serde::de::IgnoredAny>(json).unwrap_or_else(|error| panic!("{error}: {json:?}"));
        let compacted = crate::compact_indexed(json);
        assert_eq!(checked.text, compacted.text, "{json:?}");
        assert_eq!(checked.containers, compacted.containers, "{json:?}");
    }

    /// `json` is refused, as serde_json refuses it.
    fn refused(json: &str) {
        assert!(compact_indexed_checked(json).is_none(), "accepted: {json:?}");
        assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(json).is_err(),
            "serde_json accepts {json:?}"
        );
    }

    #[test]
    fn every_kind_of_value_is_accepted_and_compacted() {
        for json in [
            "0",
            "-0",
            "-12.5e-3",
            "1E+2",
            "3.25",
            "true",
            "false",
            "null",
            r#""""#,
            r#""a\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00 ""#,
            r#""\ud800""#,
            "\"\u{7f} é 😀\"",
            "[]",
            "{}",
            " [ 1 , [ ] , { } , \"x\" ] ",
            "{\n  \"a\" : { \"b\" : [ true , null ] } ,\r\n\t\"\" : -1 }",
        ] {
            accepted(json);
        }
    }

    #[test]
    fn what_serde_json_refuses_is_refused() {
        for json in [
            "",
            " ",
            "01",
            "-",
            "-a",
            "1.",
            "1.e5",
            ".5",
            "1e",
            "1e+",
            "+1",
            "0x10",
            "tru",
            "truex",
            "nul",
            "True",
            r#""unterminated"#,
            "\"a\u{1}b\"",
            "\"tab\there\"",
            r#""\x""#,
            r#""\u12G4""#,
            r#""\u12""#,
            "[1,]",
            "[,1]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":}",
            "{1:2}",
            "{\"a\":1",
            "[1]]",
            "[}",
            "{]",
            "1 2",
            "{} x",
            "\u{feff}{}",
        ] {
            refused(json);
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        accepted(&nested(MAX_DEPTH));
        assert!(compact_indexed_checked(&nested(MAX_DEPTH + 1)).is_none());
        // serde_json's RawValue reads it: a caller falls back to serde_json.
        assert!(serde_json::from_str::<&serde_json::value::RawValue>(&nested(MAX_DEPTH + 1)).is_ok());
    }

    #[test]
    fn recorded_reviews_are_accepted_and_compacted_as_compact_indexed_compacts_them() {
        for (_, review) in crate::recorded::reviews() {
            accepted(&review);
        }
    }
}
