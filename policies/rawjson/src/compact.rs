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

use std::borrow::Cow;

use crate::scan::{is_whitespace, string_end};

/// `json` (valid JSON) without whitespace outside its strings; borrowed when
/// it has none.
///
/// For invalid JSON the result is unspecified (but the function returns):
/// validate first, so that errors point into the text as it was received.
pub fn compact(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    // Allocated at the first whitespace: compact input is only scanned.
    let mut compacted: Option<Vec<u8>> = None;
    let mut run_start = 0;
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'"' => position = string_end(bytes, position).unwrap_or(bytes.len()),
            _ if is_whitespace(byte) => {
                compacted
                    .get_or_insert_with(|| Vec::with_capacity(bytes.len()))
                    .extend_from_slice(&bytes[run_start..position]);
                position += 1;
                while bytes.get(position).copied().is_some_and(is_whitespace) {
                    position += 1;
                }
                run_start = position;
            }
            _ => position += 1,
        }
    }
    match compacted {
        None => Cow::Borrowed(json),
        Some(mut compacted) => {
            compacted.extend_from_slice(&bytes[run_start..]);
            // Only ASCII bytes between tokens were left out.
            Cow::Owned(String::from_utf8(compacted).expect("removing ASCII whitespace between tokens keeps UTF-8"))
        }
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
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/admission-reviews");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            let pretty = std::fs::read_to_string(&path).unwrap();
            let compacted = compact(&pretty);
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
