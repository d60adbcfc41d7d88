//! The scanner, the streaming deserializer and `compact` against serde_json, on many
//! damaged variants of recorded Kubernetes objects: on any input they return
//! (never panic, never loop), and on every input serde_json accepts they read
//! exactly what serde_json reads. The validating compaction accepts exactly
//! what serde_json accepts.

use std::collections::BTreeMap;

use serde_json::Value;
use wasmhook_rawjson::{
    ContainerIndex, compact, compact_indexed_checked, elements, from_valid_str, members, with_index,
};

const DOCUMENTS: [&str; 3] = [
    include_str!("../../../tests/fixtures/admission-reviews/mutating-create-statefulset-mysql.json"),
    include_str!("../../../tests/fixtures/admission-reviews/mutating-create-service-dry-svc.json"),
    r#"{"a":"\"}\\","b":[1,-2.5e3,true,false,null,{"c\u0041":[[]],"":{}}],"d\/":"\ud83d\ude00"}"#,
];

/// Bytes that change JSON's structure when they appear or disappear.
const INTERESTING: &[u8] = br#"{}[]",:\ 0aeE-+.tnul"#;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// `document` with one to three bytes replaced, inserted or removed.
fn damaged(document: &str, random: &mut Random) -> String {
    let mut bytes = document.as_bytes().to_vec();
    for _ in 0..=random.below(3) {
        let at = random.below(bytes.len() + 1);
        let byte = INTERESTING[random.below(INTERESTING.len())];
        match random.below(3) {
            0 if at < bytes.len() => bytes[at] = byte,
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, byte),
        }
    }
    // Only ASCII was written, but a removal can split a multi-byte character.
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn damaged_documents_never_panic_and_valid_ones_read_as_serde_json_reads_them() {
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let mut still_valid = 0;
    for round in 0..3000 {
        let document = DOCUMENTS[round % DOCUMENTS.len()];
        let text = damaged(document, &mut random);
        // Any input: an answer, not a panic.
        let _ = members(&text);
        let _ = elements(&text);
        let fast = from_valid_str::<Value>(&text);
        let compacted = compact(&text);
        assert_indexed_reads_are_the_scanned_ones(&text);
        assert_checked_as_serde_json_checks(&text);
        if let Ok(expected) = serde_json::from_str::<Value>(&text) {
            still_valid += 1;
            let found = fast.unwrap_or_else(|error| panic!("{error}: serde_json reads {text}"));
            assert_eq!(found, expected, "{text}");
            // Compacted, the same document (and no whitespace left between tokens).
            let reread: Value = serde_json::from_str(&compacted).unwrap_or_else(|error| panic!("{error}: {compacted}"));
            assert_eq!(reread, expected, "{text}");
            assert_eq!(compact(&compacted), compacted, "{text}");
            // Indexed in the same pass, the compacted text's own index.
            let indexed = wasmhook_rawjson::compact_indexed(&text);
            assert_eq!(indexed.text, compacted, "{text}");
            assert_eq!(Some(indexed.containers), ContainerIndex::of(&compacted), "{text}");
            if let Value::Object(map) = &expected {
                // The last of duplicate keys counts, as in serde_json's map.
                let last: BTreeMap<_, _> = members(&text).unwrap().into_iter().collect();
                assert_eq!(last.len(), map.len(), "{text}");
                for (key, raw) in last {
                    assert_eq!(
                        serde_json::from_str::<Value>(raw).unwrap(),
                        map[key.as_ref()],
                        "{key} in {text}"
                    );
                }
            }
        }
    }
    assert!(
        still_valid > 100,
        "too few damaged documents stayed valid ({still_valid}) to compare"
    );
}

/// `compact_indexed_checked` accepts exactly what serde_json accepts (these
/// documents are nowhere near its depth limit), and compacts and indexes it
/// as `compact_indexed` does.
fn assert_checked_as_serde_json_checks(text: &str) {
    let checked = compact_indexed_checked(text);
    let serde_json_accepts = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    assert_eq!(checked.is_some(), serde_json_accepts, "{text}");
    if let Some(checked) = checked {
        let compacted = wasmhook_rawjson::compact_indexed(text);
        assert_eq!(checked.text, compacted.text, "{text}");
        assert_eq!(checked.containers, compacted.containers, "{text}");
    }
}

#[test]
fn undamaged_documents_read_as_serde_json_reads_them() {
    for document in DOCUMENTS {
        assert_checked_as_serde_json_checks(document);
        let expected: Value = serde_json::from_str(document).unwrap();
        assert_eq!(from_valid_str::<Value>(document).unwrap(), expected);
        assert_indexed_reads_are_the_scanned_ones(document);
        let compacted = compact(document);
        assert_indexed_reads_are_the_scanned_ones(&compacted);
    }
}

/// With `text`'s index, every reader returns exactly what it returns without
/// one — the same values, the same errors — for any text an index can be
/// built of.
fn assert_indexed_reads_are_the_scanned_ones(text: &str) {
    let read = || {
        format!(
            "{:?} {:?} {:?}",
            members(text),
            elements(text),
            from_valid_str::<Value>(text)
        )
    };
    let scanned = read();
    if let Some(index) = ContainerIndex::of(text) {
        assert_eq!(with_index(text, index, read), scanned, "{text}");
    }
}
