//! The JSON Patch between two documents, reading only the parts that differ.
//!
//! The mutated object a policy returns is, in the common case, the original
//! text with a few members changed: the SDK writes everything it did not
//! touch back byte for byte. Comparing raw text first, this diff skips every
//! identical member without parsing it, and parses only the containers on the
//! path to a change and the values that changed. When a container was
//! rewritten wholesale (a policy in another language re-serializes the object
//! with its own spacing and key order), the raw comparison cannot help, and
//! that container is parsed and diffed as a whole.
//!
//! Either way the result is exactly `json_patch::diff` of the parsed
//! documents: the same operations in the same order (keys in sorted order, as
//! `serde_json::Map` iterates them; arrays element by element).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

use crate::scan::Members;
use crate::scan::is_whitespace;
use crate::{Error, Kind, Member, elements, members, span_in, validate};

/// The JSON Patch (RFC 6902) that turns `original` into `mutated`.
///
/// `original` must be valid JSON (the server's copy of the object it
/// validated with the review). `mutated` — what a policy returned — is
/// checked: every part of it is either byte for byte a part of `original`,
/// and so valid, or validated here; invalid JSON is an error.
pub fn diff(original: &str, mutated: &str) -> Result<Patch, Error> {
    let mut patch = Patch::default();
    diff_raw(trim(original), trim(mutated), &mut PointerBuf::new(), &mut patch)?;
    Ok(patch)
}

/// Without JSON's whitespace (space, tab, line feed, carriage return) around it.
fn trim(json: &str) -> &str {
    json.trim_matches(|c: char| u8::try_from(c).is_ok_and(is_whitespace))
}

fn diff_raw(original: &str, mutated: &str, path: &mut PointerBuf, patch: &mut Patch) -> Result<(), Error> {
    if original == mutated {
        return Ok(());
    }
    match (Kind::of(original), Kind::of(mutated)) {
        (kind @ (Kind::Object | Kind::Array), mutated_kind) if kind == mutated_kind => {
            let shared = Shared::of(original, mutated);
            if shared.mostly_rewritten(original, mutated) {
                diff_parsed(original, mutated, path, patch)
            } else if kind == Kind::Object {
                diff_objects(original, mutated, shared, path, patch)
            } else {
                diff_arrays(original, mutated, path, patch)
            }
        }
        _ => {
            let original: Value = serde_json::from_str(original)?;
            let mutated: Value = serde_json::from_str(mutated)?;
            if original != mutated {
                patch.0.push(PatchOperation::Replace(ReplaceOperation {
                    path: path.clone(),
                    value: mutated,
                }));
            }
            Ok(())
        }
    }
}

/// What two texts share byte for byte: a prefix, and a suffix of what
/// follows the prefix (so the two never overlap).
#[derive(Clone, Copy)]
struct Shared {
    prefix: usize,
    suffix: usize,
}

impl Shared {
    fn of(original: &str, mutated: &str) -> Self {
        let (a, b) = (original.as_bytes(), mutated.as_bytes());
        let prefix = common_prefix(a, b);
        let suffix = common_suffix(&a[prefix..], &b[prefix..]);
        Self { prefix, suffix }
    }

    /// Whether less than half of the shorter text is shared at its start and
    /// end: then (nearly) every member differs in its bytes, and expanding
    /// members level by level would re-read the same bytes once per level.
    fn mostly_rewritten(self, original: &str, mutated: &str) -> bool {
        (self.prefix + self.suffix) * 2 < original.len().min(mutated.len())
    }
}

/// Bytes compared per step: a slice comparison (`memcmp`) per block, then
/// byte by byte inside the block that differs.
const BLOCK: usize = 64;

/// How many leading bytes `a` and `b` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let length = a.len().min(b.len());
    let mut shared = 0;
    while shared + BLOCK <= length && a[shared..shared + BLOCK] == b[shared..shared + BLOCK] {
        shared += BLOCK;
    }
    shared
        + a[shared..length]
            .iter()
            .zip(&b[shared..length])
            .take_while(|(x, y)| x == y)
            .count()
}

/// How many trailing bytes `a` and `b` share.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let length = a.len().min(b.len());
    let (a, b) = (&a[a.len() - length..], &b[b.len() - length..]);
    let mut shared = 0;
    while shared + BLOCK <= length
        && a[length - shared - BLOCK..length - shared] == b[length - shared - BLOCK..length - shared]
    {
        shared += BLOCK;
    }
    shared
        + a[..length - shared]
            .iter()
            .rev()
            .zip(b[..length - shared].iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
}

fn diff_objects<'t>(
    original: &'t str,
    mutated: &'t str,
    shared: Shared,
    path: &mut PointerBuf,
    patch: &mut Patch,
) -> Result<(), Error> {
    let original_members = members(original)?;
    let mutated_members = mutated_members(original, &original_members, mutated, shared)?;
    let original = by_key(original_members);
    let mutated = by_key(mutated_members);
    for shadowed in &mutated.shadowed {
        // Read by nothing below, but part of the document: it must be valid.
        validate(shadowed)?;
    }
    // The operations in the order `json_patch::diff` gives them: the mutated
    // object's keys in order, each diffed or added; then the removed keys.
    let mut removed = Vec::new();
    let mut originals = original.members.iter().peekable();
    for (key, mutated_value) in &mutated.members {
        while let Some((original_key, _)) = originals.next_if(|(original_key, _)| original_key < key) {
            removed.push(original_key);
        }
        path.push_back(key.as_ref());
        match originals.next_if(|(original_key, _)| original_key == key) {
            Some((_, original_value)) => diff_raw(original_value, mutated_value, path, patch)?,
            None => patch.0.push(PatchOperation::Add(AddOperation {
                path: path.clone(),
                value: serde_json::from_str(mutated_value)?,
            })),
        }
        path.pop_back();
    }
    removed.extend(originals.map(|(original_key, _)| original_key));
    for key in removed {
        path.push_back(key.as_ref());
        patch
            .0
            .push(PatchOperation::Remove(RemoveOperation { path: path.clone() }));
        path.pop_back();
    }
    Ok(())
}

/// An object's members sorted by key, each key once: the last of duplicates,
/// as a JSON reader keeps it. The values it shadows are kept apart.
struct ByKey<'t> {
    members: Vec<Member<'t>>,
    shadowed: Vec<&'t str>,
}

fn by_key(mut members: Vec<Member<'_>>) -> ByKey<'_> {
    // Stable: duplicates stay in document order, the last one last.
    members.sort_by(|(a, _), (b, _)| a.cmp(b));
    let mut shadowed = Vec::new();
    let mut kept: Vec<Member<'_>> = Vec::with_capacity(members.len());
    for member in members {
        match kept.last_mut() {
            Some(last) if last.0 == member.0 => shadowed.push(std::mem::replace(last, member).1),
            _ => kept.push(member),
        }
    }
    ByKey {
        members: kept,
        shadowed,
    }
}

/// The members of the object `mutated`, scanning only where its bytes differ
/// from `original`'s (whose members are `original_members`).
///
/// The members whose values end inside the shared prefix (the comma or brace
/// after them shared too) read the same in both texts: they are `original`'s.
/// Past the change, once a member of `mutated` ends where what is left of
/// both texts is the same bytes — after a member of `original` too, so both
/// are read from the same state — the rest of the members are `original`'s
/// as well. A one-field edit of a large object scans the one member.
fn mutated_members<'t>(
    original: &'t str,
    original_members: &[Member<'t>],
    mutated: &'t str,
    shared: Shared,
) -> Result<Vec<Member<'t>>, Error> {
    let end_in = |text: &str, value: &str| span_in(text, value).end;
    let leading = original_members
        .iter()
        .take_while(|(_, value)| end_in(original, value) < shared.prefix)
        .count();
    let mut found = original_members[..leading].to_vec();
    let rest = match leading.checked_sub(1) {
        None => Members::new(mutated)?,
        Some(last) => Members::after_member(mutated, end_in(original, original_members[last].1))?,
    };
    let shared_tail_start = original.len() - shared.suffix;
    for member in rest {
        let member = member?;
        let end = end_in(mutated, member.1);
        found.push(member);
        // The same distance from the end, in `original`.
        let Some(original_end) = (end + original.len()).checked_sub(mutated.len()) else {
            continue;
        };
        if original_end >= shared_tail_start
            && let Ok(index) =
                original_members.binary_search_by_key(&original_end, |(_, value)| end_in(original, value))
        {
            found.extend_from_slice(&original_members[index + 1..]);
            break;
        }
    }
    Ok(found)
}

/// Element by element, as `json_patch::diff` does: a changed element is
/// diffed in place, extra elements are removed from the end or added.
fn diff_arrays(original: &str, mutated: &str, path: &mut PointerBuf, patch: &mut Patch) -> Result<(), Error> {
    let original = elements(original)?;
    let mutated = elements(mutated)?;
    let mut removed = 0;
    for index in 0..original.len().max(mutated.len()) {
        path.push_back(index - removed);
        match (original.get(index), mutated.get(index)) {
            (Some(original_element), Some(mutated_element)) => {
                diff_raw(original_element, mutated_element, path, patch)?;
            }
            (Some(_), None) => {
                removed += 1;
                patch
                    .0
                    .push(PatchOperation::Remove(RemoveOperation { path: path.clone() }));
            }
            (None, Some(mutated_element)) => patch.0.push(PatchOperation::Add(AddOperation {
                path: path.clone(),
                value: serde_json::from_str(mutated_element)?,
            })),
            (None, None) => unreachable!("index < the longer length"),
        }
        path.pop_back();
    }
    Ok(())
}

/// Parses both containers and diffs the trees, under `path`.
fn diff_parsed(original: &str, mutated: &str, path: &PointerBuf, patch: &mut Patch) -> Result<(), Error> {
    let original: Value = serde_json::from_str(original)?;
    let mutated: Value = serde_json::from_str(mutated)?;
    for mut operation in json_patch::diff(&original, &mutated).0 {
        let relative = match &mut operation {
            PatchOperation::Add(operation) => &mut operation.path,
            PatchOperation::Remove(operation) => &mut operation.path,
            PatchOperation::Replace(operation) => &mut operation.path,
            PatchOperation::Move(operation) => &mut operation.path,
            PatchOperation::Copy(operation) => &mut operation.path,
            PatchOperation::Test(operation) => &mut operation.path,
        };
        *relative = path.concat(relative);
        patch.0.push(operation);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The oracle: json_patch's diff of the parsed documents, which applied to
    /// the original must give the mutated document.
    fn check(original: &str, mutated: &str) -> Patch {
        let patch = diff(original, mutated).unwrap_or_else(|error| panic!("{error}: {original} -> {mutated}"));
        let parsed_original: Value = serde_json::from_str(original).unwrap();
        let parsed_mutated: Value = serde_json::from_str(mutated).unwrap();
        assert_eq!(
            patch,
            json_patch::diff(&parsed_original, &parsed_mutated),
            "{original} -> {mutated}"
        );
        let mut reproduced = parsed_original;
        json_patch::patch(&mut reproduced, &patch).unwrap();
        assert_eq!(reproduced, parsed_mutated);
        patch
    }

    const SERVICE: &str = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"db-headless","namespace":"data","labels":{"app":"db"},"managedFields":[{"manager":"kubectl","operation":"Update","fieldsV1":{"f:spec":{"f:ports":{}}}}]},"spec":{"ports":[{"name":"pg","port":5432,"targetPort":5432}],"selector":{"app":"db"},"type":"ClusterIP"},"status":{"loadBalancer":{}}}"#;

    #[test]
    fn a_spliced_change_is_found_without_parsing_the_rest() {
        let mutated = SERVICE.replace(
            r#""type":"ClusterIP""#,
            r#""type":"ClusterIP","clusterIP":"None","clusterIPs":["None"]"#,
        );
        let patch = check(SERVICE, &mutated);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([
                {"op": "add", "path": "/spec/clusterIP", "value": "None"},
                {"op": "add", "path": "/spec/clusterIPs", "value": ["None"]},
            ])
        );
    }

    #[test]
    fn identical_documents_give_an_empty_patch() {
        assert!(check(SERVICE, SERVICE).0.is_empty());
        assert!(check(SERVICE, &format!("  {SERVICE}\n")).0.is_empty());
    }

    #[test]
    fn a_reformatted_document_is_diffed_by_value() {
        let original: Value = serde_json::from_str(SERVICE).unwrap();
        let mut mutated = original.clone();
        mutated["spec"]["clusterIP"] = json!("None");
        mutated["metadata"]["labels"].as_object_mut().unwrap().remove("app");
        // Pretty-printed and with keys sorted: no member keeps its bytes.
        let patch = check(SERVICE, &serde_json::to_string_pretty(&mutated).unwrap());
        assert_eq!(patch.0.len(), 2);
    }

    #[test]
    fn the_same_values_written_differently_are_no_change() {
        check(r#"{"a":{"b":1,"c":[true,null]}}"#, r#"{"a":{"c":[true, null],"b":1}}"#);
        check(r#"{"a":"\u0041"}"#, r#"{"a":"A"}"#);
        assert!(diff(r#"{"a":"\u0041"}"#, r#"{"a":"A"}"#).unwrap().0.is_empty());
    }

    #[test]
    fn every_kind_of_change_matches_json_patch() {
        let cases = [
            (r#"{"a":1}"#, r#"{"a":2}"#),
            (r#"{"a":1,"b":2}"#, r#"{"b":2}"#),
            (r#"{"a":[1,2,3]}"#, r#"{"a":[1]}"#),
            (r#"{"a":[1]}"#, r#"{"a":[1,{"x":2},3]}"#),
            (r#"{"a":[{"x":1},{"x":2}]}"#, r#"{"a":[{"x":1},{"x":3,"y":[]}]}"#),
            (r#"{"a":{"b":{}}}"#, r#"{"a":[]}"#),
            (r#"{"a":null}"#, r#"{"a":{"b":null}}"#),
            (r#"{"a~b/c":1,"d":2}"#, r#"{"a~b/c":2,"e":3}"#),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
            (r#"{"a":1.5e3}"#, r#"{"a":1500.0}"#),
            (r#"[1,2]"#, r#"{"a":1}"#),
            (r#""x""#, r#""y""#),
            (
                r#"{"big":"................................","z":1}"#,
                r#"{"z":2,"big":"................................"}"#,
            ),
        ];
        for (original, mutated) in cases {
            check(original, mutated);
            check(mutated, original);
        }
    }

    #[test]
    fn shared_prefixes_and_suffixes_are_counted_exactly() {
        let text: Vec<u8> = (0..300_u32).map(|index| b'a' + (index % 26) as u8).collect();
        for change in [0, 1, 63, 64, 65, 150, 299] {
            let mut other = text.clone();
            other[change] = b'#';
            assert_eq!(common_prefix(&text, &other), change);
            assert_eq!(common_suffix(&text, &other), 299 - change);
        }
        assert_eq!(common_prefix(&text, &text[..100]), 100);
        assert_eq!(common_suffix(&text, &text[200..]), 100);
        assert_eq!(common_prefix(b"", b"abc"), 0);
        assert_eq!(common_suffix(b"xbc", b"abc"), 2);
    }

    /// Copies of `json` with one splice at a member of one of its objects: the
    /// value replaced (by a scalar, by a container), a member added after it
    /// (under a new key, or under its own key: a duplicate that wins).
    fn spliced(json: &str) -> Vec<String> {
        fn walk(document: &str, object: &str, variants: &mut Vec<String>) {
            for (key, value) in members(object).unwrap() {
                let span = span_in(document, value);
                let splice = |text: &str| format!("{}{text}{}", &document[..span.start], &document[span.end..]);
                variants.push(splice("0"));
                variants.push(splice(r#"{"new":[1,"x\"y"]}"#));
                variants.push(splice(&format!(r#"{value},"zz":true"#)));
                variants.push(splice(&format!(
                    "{value},{}:7",
                    serde_json::to_string(key.as_ref()).unwrap()
                )));
                if Kind::of(value) == Kind::Object {
                    walk(document, value, variants);
                }
            }
        }
        let mut variants = Vec::new();
        walk(json, json, &mut variants);
        variants
    }

    #[test]
    fn every_splice_of_every_object_matches_json_patch_both_ways() {
        let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(SERVICE).unwrap()).unwrap();
        let escaped = r#"{"k\u0041":{"a":"x","b\"":[1,{"c":{}}]},"k\u0041":{"a":"y"},"z":"\"}"}"#;
        for original in [SERVICE, pretty.as_str(), escaped] {
            let variants = spliced(original);
            assert!(variants.len() > 20);
            for variant in &variants {
                check(original, variant);
                check(variant, original);
            }
        }
    }

    #[test]
    fn a_shared_tail_is_reused_only_when_both_texts_read_it_the_same_way() {
        // The shared `"q"}` closes member "b" in one text and "a"'s string in
        // the other.
        check(r#"{"a":"p","b":"q"}"#, r#"{"a":"p\",\"b\":\"q"}"#);
        check(r#"{"a":"p\",\"b\":\"q"}"#, r#"{"a":"p","b":"q"}"#);
        // A duplicate before the change, or after it, decides the value.
        check(r#"{"a":1,"b":2,"c":3}"#, r#"{"a":1,"b":2,"a":5,"c":3}"#);
        assert!(
            check(r#"{"a":1,"b":2,"c":3}"#, r#"{"a":1,"c":9,"b":2,"c":3}"#)
                .0
                .is_empty()
        );
        check(r#"{"a":1,"a":2,"b":3}"#, r#"{"a":1,"a":2,"b":4}"#);
        // A number that the change lengthens ends where the other one did.
        check(r#"{"a":12,"b":1}"#, r#"{"a":123,"b":1}"#);
        check(r#"{"a":{"x":1},"b":12}"#, r#"{"a":{"x":1},"b":123}"#);
    }

    #[test]
    fn invalid_mutated_json_is_an_error() {
        assert!(diff(SERVICE, r#"{"apiVersion":"v1""#).is_err());
        assert!(diff(SERVICE, &SERVICE.replace(r#""app":"db"}"#, r#""app":db}"#)).is_err());
        assert!(diff(r#"{"a":1}"#, r#"{"a":1} trailing"#).is_err());
    }
}
