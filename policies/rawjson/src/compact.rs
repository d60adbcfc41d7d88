//! Valid JSON without its insignificant whitespace.
//!
//! A review may arrive pretty-printed: the recorded ones are, and half of
//! their bytes are indentation. The server hands the policy a compact copy,
//! made once, natively, so that every later pass over the request — the
//! policy's reads (in Wasm, about three times slower per byte), the copy into
//! its memory, the object it returns, the diff — covers only the bytes that
//! mean something. Nothing but whitespace between tokens is removed: strings,
//! numbers and key order are kept byte for byte, so the JSON Patch computed
//! from the compact original is the one computed from the pretty one.
//!
//! The same pass records where the compacted text's long containers are
//! ([`compact_indexed`]), the index the server hands a policy with its
//! request (see [`crate::index`]).

use std::borrow::Cow;

use crate::index::{ContainerIndex, MIN_INDEXED_LENGTH};
use crate::scan::{is_whitespace, string_end};

/// `json` (valid JSON) without whitespace outside its strings; borrowed when
/// it has none.
///
/// For invalid JSON the result is unspecified (but the function returns):
/// validate first, so that errors point into the text as it was received.
pub fn compact(json: &str) -> Cow<'_, str> {
    compact_indexed(json).text
}

/// What [`compact_indexed`] makes of a document in one pass.
#[derive(Debug)]
pub struct Compacted<'a> {
    /// The document without whitespace outside its strings (as [`compact`]).
    pub text: Cow<'a, str>,
    /// The index of `text`'s containers (as [`ContainerIndex::of`] of it);
    /// empty if `json` was not valid.
    pub containers: ContainerIndex,
}

/// [`compact`], and the index of the compacted text's containers, in the
/// same pass: what the server hands a policy, found for the cost of one.
pub fn compact_indexed(json: &str) -> Compacted<'_> {
    let (text, containers) = walk(json, true);
    Compacted {
        text,
        containers: containers.unwrap_or_default(),
    }
}

/// One pass over `json`: finds its containers of at least
/// [`MIN_INDEXED_LENGTH`] bytes (`None` if its strings or brackets do not
/// close, or it is too long for 32-bit offsets) and, if `remove_whitespace`,
/// copies it without whitespace outside strings (borrowed when it has none).
/// The containers' offsets are in the text returned.
pub(crate) fn walk(json: &str, remove_whitespace: bool) -> (Cow<'_, str>, Option<ContainerIndex>) {
    let bytes = json.as_bytes();
    let mut compactor = Compactor::new(json);
    // The open containers' offsets in the output: short ones cost a push and
    // a pop.
    let mut open: Vec<u32> = Vec::with_capacity(32);
    // Whether an index can be made: offsets fit in 32 bits, strings end and
    // brackets balance.
    let mut indexable = u32::try_from(bytes.len()).is_ok();
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'"' => match string_end(bytes, position) {
                Some(end) => position = end,
                None => {
                    indexable = false;
                    position = bytes.len();
                }
            },
            b'{' | b'[' => {
                open.push(compactor.output_offset(position));
                position += 1;
            }
            b'}' | b']' => {
                position += 1;
                match open.pop() {
                    Some(start) => compactor.closed(start, position),
                    None => indexable = false,
                }
            }
            _ if remove_whitespace && is_whitespace(byte) => position = compactor.remove_whitespace(position),
            _ => position += 1,
        }
    }
    let (text, containers) = compactor.finish();
    (text, (indexable && open.is_empty()).then_some(containers))
}

/// The bookkeeping both compaction passes share — [`walk`], which only
/// delimits the text, and the checked pass (`crate::checked`), which also
/// checks its grammar: the copy without whitespace, where each input offset
/// lands in it, and the long containers found.
pub(crate) struct Compactor<'a> {
    json: &'a str,
    /// The copy without whitespace, made from the first whitespace on:
    /// compact input is only scanned.
    copy: Option<Vec<u8>>,
    /// Where the input not yet copied starts.
    run_start: usize,
    /// Whitespace removed so far: input offset `position` (past it) is output
    /// offset `position - removed`.
    removed: usize,
    /// Containers of at least [`MIN_INDEXED_LENGTH`] bytes, as output
    /// offsets, recorded as they close (inner before outer).
    long: Vec<(u32, u32)>,
}

impl<'a> Compactor<'a> {
    pub(crate) fn new(json: &'a str) -> Self {
        Self {
            json,
            copy: None,
            run_start: 0,
            removed: 0,
            long: Vec::with_capacity(32),
        }
    }

    /// Where input offset `position` is in the output (offsets are 32-bit:
    /// the caller checks that the input fits before relying on them).
    #[inline(always)]
    pub(crate) fn output_offset(&self, position: usize) -> u32 {
        (position - self.removed) as u32
    }

    /// A container that starts at output offset `start` has closed just
    /// before input offset `end`: recorded if it is long.
    #[inline(always)]
    pub(crate) fn closed(&mut self, start: u32, end: usize) {
        let end = self.output_offset(end);
        if end - start >= MIN_INDEXED_LENGTH {
            self.long.push((start, end));
        }
    }

    /// Leaves the whitespace run at `position` (at least one byte) out of the
    /// copy and returns where it ends. Indentation is runs of spaces, passed
    /// eight at a time.
    pub(crate) fn remove_whitespace(&mut self, position: usize) -> usize {
        let bytes = self.json.as_bytes();
        self.copy
            .get_or_insert_with(|| Vec::with_capacity(bytes.len()))
            .extend_from_slice(&bytes[self.run_start..position]);
        let mut end = position + 1;
        while bytes.get(end..end + 8).is_some_and(|eight| eight == b"        ") {
            end += 8;
        }
        while bytes.get(end).copied().is_some_and(is_whitespace) {
            end += 1;
        }
        self.removed += end - position;
        self.run_start = end;
        end
    }

    /// The text without the whitespace left out (borrowed if none was) and
    /// the index of its long containers.
    pub(crate) fn finish(mut self) -> (Cow<'a, str>, ContainerIndex) {
        let text = match self.copy {
            None => Cow::Borrowed(self.json),
            Some(mut copy) => {
                copy.extend_from_slice(&self.json.as_bytes()[self.run_start..]);
                // Only ASCII bytes between tokens were left out.
                Cow::Owned(String::from_utf8(copy).expect("removing ASCII whitespace between tokens keeps UTF-8"))
            }
        };
        self.long.sort_unstable();
        let (starts, ends) = self.long.into_iter().unzip();
        (text, ContainerIndex::from_parts(starts, ends))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_between_tokens_goes_and_strings_stay_byte_for_byte() {
        let pretty = "{\n  \"a b\" : [ 1 ,\t2.50e1 ],\r\n  \"say \\\" {x} \" : \"  tab\\t \\\\\" ,\n  \"é\": { } }\n";
        let compacted = compact(pretty);
        assert_eq!(
            compacted,
            "{\"a b\":[1,2.50e1],\"say \\\" {x} \":\"  tab\\t \\\\\",\"é\":{}}"
        );
        assert!(matches!(compacted, Cow::Owned(_)));
        let reparsed: serde_json::Value = serde_json::from_str(&compacted).unwrap();
        assert_eq!(reparsed, serde_json::from_str::<serde_json::Value>(pretty).unwrap());
    }

    #[test]
    fn compact_json_is_borrowed_unchanged() {
        let json = r#"{"a":"x y","b":[true,null,{"c":"\" "}]}"#;
        assert!(matches!(compact(json), Cow::Borrowed(same) if same == json));
        assert!(matches!(compact("7"), Cow::Borrowed("7")));
        assert_eq!(compact("  7 "), "7");
    }

    #[test]
    fn recorded_reviews_read_the_same_compacted() {
        for (path, pretty) in crate::recorded::reviews() {
            let Compacted {
                text: compacted,
                containers,
            } = compact_indexed(&pretty);
            // The index is of the compacted text, as if built from it.
            assert_eq!(Some(containers), ContainerIndex::of(&compacted), "{}", path.display());
            assert!(compacted.len() < pretty.len(), "{}", path.display());
            assert!(!compacted.contains("\n"), "{}", path.display());
            let expected: serde_json::Value = serde_json::from_str(&pretty).unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&compacted).unwrap(),
                expected,
                "{}",
                path.display()
            );
        }
    }
}
