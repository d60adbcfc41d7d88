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
    let (compacted, containers) = walk(json, true);
    let text = match compacted {
        None => Cow::Borrowed(json),
        // Only ASCII bytes between tokens were left out.
        Some(compacted) => {
            Cow::Owned(String::from_utf8(compacted).expect("removing ASCII whitespace between tokens keeps UTF-8"))
        }
    };
    Compacted {
        text,
        containers: containers.unwrap_or_default(),
    }
}

/// One pass over `json`: finds its containers of at least
/// [`MIN_INDEXED_LENGTH`] bytes (`None` if its strings or brackets do not
/// close, or it is too long for 32-bit offsets) and, if `remove_whitespace`,
/// copies it without whitespace outside strings (`None` when it has none). The
/// containers' offsets are in the text returned: the copy, or `json`.
pub(crate) fn walk(json: &str, remove_whitespace: bool) -> (Option<Vec<u8>>, Option<ContainerIndex>) {
    let bytes = json.as_bytes();
    // Allocated at the first whitespace: compact input is only scanned.
    let mut compacted: Option<Vec<u8>> = None;
    let mut run_start = 0;
    // Whitespace removed before `position`: its offset in the output is
    // `position - removed`.
    let mut removed = 0;
    // Long containers, recorded as they close (inner before outer) and
    // sorted at the end; short ones cost a push and a pop on `open`.
    let mut long: Vec<(u32, u32)> = Vec::with_capacity(32);
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
                open.push((position - removed) as u32);
                position += 1;
            }
            b'}' | b']' => {
                position += 1;
                match open.pop() {
                    Some(start) => {
                        let end = (position - removed) as u32;
                        if end - start >= MIN_INDEXED_LENGTH {
                            long.push((start, end));
                        }
                    }
                    None => indexable = false,
                }
            }
            _ if remove_whitespace && is_whitespace(byte) => {
                compacted
                    .get_or_insert_with(|| Vec::with_capacity(bytes.len()))
                    .extend_from_slice(&bytes[run_start..position]);
                let run = position;
                position += 1;
                while bytes.get(position).copied().is_some_and(is_whitespace) {
                    position += 1;
                }
                removed += position - run;
                run_start = position;
            }
            _ => position += 1,
        }
    }
    if let Some(compacted) = &mut compacted {
        compacted.extend_from_slice(&bytes[run_start..]);
    }
    let containers = (indexable && open.is_empty()).then(|| {
        long.sort_unstable();
        let (starts, ends) = long.into_iter().unzip();
        ContainerIndex::from_parts(starts, ends)
    });
    (compacted, containers)
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
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/admission-reviews");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            let pretty = std::fs::read_to_string(&path).unwrap();
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
            checked += 1;
        }
        assert!(
            checked >= 20,
            "only {checked} recorded reviews found in {}",
            dir.display()
        );
    }
}
