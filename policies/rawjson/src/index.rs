//! Where the long containers of a document end, found once, natively.
//!
//! A policy reads its request in several passes over raw text: the SDK
//! delimits the request to read its header and split the object, a typed
//! view delimits the members it skips (`managedFields`, a pod template), an
//! edit splits the containers on its path. Each pass finds where a skipped
//! object or array ends by counting its brackets — in Wasm, about three times
//! slower per byte than natively, and the largest part of a policy's work.
//!
//! The server knows the request's text before the policy runs. It builds a
//! [`ContainerIndex`] of it natively ([`ContainerIndex::of`]) and hands it to
//! the policy; while [`with_index`]'s closure runs, delimiting a container
//! that the index records is a binary search instead of a scan. The index is
//! keyed by address: only text that *is* part of the indexed document — the
//! document or a slice of it, such as a member's value — finds its containers
//! there; any other text is scanned as before.
//!
//! An index changes how fast text is delimited, never what is delimited: it is
//! built by the scan's own rules, [`with_index`] checks that it describes the
//! document (each recorded container opens and closes with matching brackets
//! and the containers nest) and ignores it otherwise, and a container that
//! does not end inside the slice being read is scanned, and reported, as
//! before.

use std::cell::RefCell;

/// The containers of one document worth looking up: for each, in document
/// order, the offset of its opening bracket and the offset just past its
/// closing one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerIndex {
    starts: Vec<u32>,
    ends: Vec<u32>,
}

/// Containers shorter than this many bytes are not recorded: scanning them
/// costs no more than a lookup, and most containers of a Kubernetes object are
/// short (`managedFields` is hundreds of `{"f:name":{}}`), so the index stays
/// small: quick to copy into the policy and to search.
pub const MIN_INDEXED_LENGTH: u32 = 64;

thread_local! {
    /// The document indexed by the innermost running [`with_index`]: its
    /// first byte's address, its length, and its index.
    static CURRENT: RefCell<Option<(usize, usize, ContainerIndex)>> = const { RefCell::new(None) };
}

impl ContainerIndex {
    /// Indexes the containers of `json` of at least [`MIN_INDEXED_LENGTH`]
    /// bytes. `None` if its strings or brackets do not close, or it is too
    /// long for 32-bit offsets (then nothing is looked up: readers scan, and
    /// report errors, as they do without an index).
    pub fn of(json: &str) -> Option<Self> {
        crate::compact::walk(json, false).1
    }

    /// An index as it crossed the boundary between the server and a policy:
    /// the starts and ends of [`ContainerIndex::into_parts`].
    pub fn from_parts(starts: Vec<u32>, ends: Vec<u32>) -> Self {
        Self { starts, ends }
    }

    /// The starts and the ends, each in document order.
    pub fn into_parts(self) -> (Vec<u32>, Vec<u32>) {
        (self.starts, self.ends)
    }

    /// The index of the part `span` of the indexed text: the containers
    /// that start inside it, with offsets from its start. For a `span` that
    /// is a whole value of the text (a member's value, say), that is the
    /// index [`ContainerIndex::of`] makes of the value on its own.
    pub fn within(&self, span: std::ops::Range<usize>) -> Self {
        let offset = |at: usize| u32::try_from(at).unwrap_or(u32::MAX);
        let (from, to) = (offset(span.start), offset(span.end));
        let first = self.starts.partition_point(|&start| start < from);
        let last = first + self.starts[first..].partition_point(|&start| start < to);
        Self {
            starts: self.starts[first..last].iter().map(|start| start - from).collect(),
            ends: self.ends[first..last].iter().map(|end| end - from).collect(),
        }
    }

    /// How many containers are recorded.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether no container is recorded.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Whether this index can describe `json`: as many ends as starts, in
    /// document order, each container inside `json`, opening and closing with
    /// matching brackets, and any two either nested or apart. (An index built
    /// by [`ContainerIndex::of`] from `json` always does.)
    pub fn describes(&self, json: &str) -> bool {
        let bytes = json.as_bytes();
        if self.starts.len() != self.ends.len() || !self.starts.is_sorted_by(|a, b| a < b) {
            return false;
        }
        let mut enclosing: Vec<usize> = Vec::with_capacity(16);
        self.starts.iter().zip(&self.ends).all(|(&start, &end)| {
            let (start, end) = (start as usize, end as usize);
            let brackets = (start < end && end <= bytes.len()).then(|| (bytes[start], bytes[end - 1]));
            if !matches!(brackets, Some((b'{', b'}') | (b'[', b']'))) {
                return false;
            }
            while enclosing.last().is_some_and(|&outer_end| outer_end <= start) {
                enclosing.pop();
            }
            let nested = enclosing.last().is_none_or(|&outer_end| end <= outer_end);
            enclosing.push(end);
            nested
        })
    }

    /// The offset in `bytes` just past the container that opens at `start`,
    /// if the document this index describes starts at address `base`, is
    /// `length` bytes long, contains `bytes`, and records that container, and
    /// the container ends inside `bytes`.
    fn container_end(&self, base: usize, length: usize, bytes: &[u8], start: usize) -> Option<usize> {
        // `bytes` is a slice of the document exactly when its addresses are
        // inside the document's.
        let slice_offset = (bytes.as_ptr() as usize).checked_sub(base)?;
        if slice_offset + bytes.len() > length {
            return None;
        }
        let offset = u32::try_from(slice_offset + start).ok()?;
        let found = self.starts.binary_search(&offset).ok()?;
        let end = (self.ends[found] as usize).checked_sub(slice_offset)?;
        (end <= bytes.len()).then_some(end)
    }
}

/// Runs `read` with `index` as the index of `json`: every container of at
/// least [`MIN_INDEXED_LENGTH`] bytes that a reader of this crate delimits
/// while `read` runs — in `json` itself or in any slice of it — is found by a
/// lookup instead of a scan. An index that does not describe `json`
/// ([`ContainerIndex::describes`]) is not used. Indexes nest: an inner call's
/// document replaces the outer one's until it returns.
pub fn with_index<R>(json: &str, index: ContainerIndex, read: impl FnOnce() -> R) -> R {
    let current = index
        .describes(json)
        .then_some((json.as_ptr() as usize, json.len(), index));
    let previous = CURRENT.with(|slot| slot.replace(current));
    // Restores the enclosing index even if `read` unwinds.
    struct Restore(Option<(usize, usize, ContainerIndex)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|slot| slot.replace(previous));
        }
    }
    let _restore = Restore(previous);
    read()
}

/// The offset in `bytes` just past the container that opens at `start`, if
/// `bytes` is part of the document indexed by the running [`with_index`], the
/// index records the container, and it ends inside `bytes`; `None` otherwise
/// (the caller scans).
pub(crate) fn indexed_container_end(bytes: &[u8], start: usize) -> Option<usize> {
    CURRENT.with_borrow(|current| {
        let (base, length, index) = current.as_ref()?;
        index.container_end(*base, *length, bytes, start)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::scanned_container_end;

    /// A string of `length` bytes: makes a container long enough to record.
    fn filler(length: usize) -> String {
        format!("\"{}\"", "x".repeat(length))
    }

    /// Every container end the index finds, in any slice of `json` that
    /// starts at or before the container, is the one a scan finds; and every
    /// recorded container is found in the whole document.
    fn assert_index_agrees_with_scan(json: &str) {
        let bytes = json.as_bytes();
        let index = ContainerIndex::of(json).expect("balanced");
        assert!(index.describes(json));
        let (base, length) = (json.as_ptr() as usize, json.len());
        for start in 0..bytes.len() {
            for slice_start in [0, start] {
                for slice_end in [start + 1, (start + 7).min(bytes.len()), bytes.len()] {
                    let slice = &bytes[slice_start..slice_end.max(start + 1)];
                    let relative = start - slice_start;
                    let scanned = matches!(bytes[start], b'{' | b'[')
                        .then(|| scanned_container_end(slice, relative))
                        .flatten();
                    let indexed = index.container_end(base, length, slice, relative);
                    if let Some(end) = indexed {
                        assert_eq!(Some(end), scanned, "{json:?} at {start} in {slice_start}..");
                    }
                    if slice_end == bytes.len() && index.starts.contains(&(start as u32)) {
                        assert_eq!(indexed, scanned, "{json:?} at {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn lookups_agree_with_the_scan_everywhere() {
        let long = filler(70);
        let documents = [
            format!(r#"{{"a":[1,{{"b":"]}}","p":{long}}},[]],"c\"{{":{{"d":{{"p":{long}}}}},"e":"x"}}"#),
            format!(r#"[{{"k":"{{\"not\":[\"json\"]}}","p":{long}}},[[[{long}]]],"[",{{}}]"#),
            format!(r#""{{\"a\":[{long}]}}""#),
        ];
        for json in &documents {
            assert_index_agrees_with_scan(json);
        }
        // The first document's long containers, and only those, are recorded,
        // in document order.
        let index = ContainerIndex::of(&documents[0]).unwrap();
        assert_eq!(index.len(), 5);
        assert!(
            index
                .starts
                .iter()
                .zip(&index.ends)
                .all(|(start, end)| end - start >= MIN_INDEXED_LENGTH)
        );
        assert!(index.starts.is_sorted());
        // A string is no container.
        assert!(ContainerIndex::of(&documents[2]).unwrap().is_empty());
    }

    #[test]
    fn brackets_inside_strings_are_not_containers() {
        let long = filler(80);
        let json = format!(r#"{{"a":"{{[","b":{{"c":"}}","d":{long}}}}}"#);
        let index = ContainerIndex::of(&json).unwrap();
        let brace = json.find("{\"c\"").unwrap();
        assert_eq!(index.starts, [0, brace as u32]);
        assert_eq!(index.ends, [json.len() as u32, (json.len() - 1) as u32]);
    }

    #[test]
    fn unbalanced_or_unterminated_text_is_not_indexed() {
        for json in [r#"{"a":[1}"#, r#"{"a":1}}"#, r#"{"a":"x}"#, "[[]"] {
            assert!(ContainerIndex::of(json).is_none(), "{json}");
        }
    }

    #[test]
    fn an_index_that_does_not_describe_the_document_is_refused() {
        let long = filler(80);
        let json = format!(r#"{{"a":[{long}],"b":{{"c":{long}}}}}"#);
        let index = ContainerIndex::of(&json).unwrap();
        assert!(index.describes(&json));
        let (starts, ends) = index.clone().into_parts();
        let refused = |starts: Vec<u32>, ends: Vec<u32>| !ContainerIndex::from_parts(starts, ends).describes(&json);
        // Fewer ends than starts.
        assert!(refused(starts.clone(), ends[..2].to_vec()));
        // Not in document order.
        assert!(refused(
            starts.iter().rev().copied().collect(),
            ends.iter().rev().copied().collect()
        ));
        // An end one byte short, past the text, or before the start.
        let mut short = ends.clone();
        short[1] -= 1;
        assert!(refused(starts.clone(), short));
        let mut past = ends.clone();
        past[0] += 1;
        assert!(refused(starts.clone(), past));
        assert!(refused(vec![5], vec![5]));
        // `[` … `}`: the brackets do not match.
        let array = json.find('[').unwrap() as u32;
        let object_end = json.len() as u32 - 1;
        assert!(refused(vec![array], vec![object_end]));
        // Two containers that overlap without nesting, with the right
        // brackets at each end; nested, the same brackets are accepted.
        let pairs = r#"[{"x":[1]},{"y":[2]}]"#;
        let described = |starts: Vec<u32>, ends: Vec<u32>| ContainerIndex::from_parts(starts, ends).describes(pairs);
        assert!(!described(vec![1, 6], vec![10, 19]));
        assert!(described(vec![1, 6], vec![10, 9]));
        // The empty index describes anything.
        assert!(ContainerIndex::default().describes(&json));
        // A refused index is not used: the scan still finds every end.
        let mut wrong = ends;
        wrong[2] = wrong[1];
        with_index(&json, ContainerIndex::from_parts(starts, wrong), || {
            assert_eq!(indexed_container_end(json.as_bytes(), 0), None);
        });
    }

    #[test]
    fn only_slices_of_the_indexed_document_are_looked_up() {
        let long = filler(80);
        let json = format!(r#"{{"a":{{"b":[1,{long}]}}}}"#);
        let copy = json.clone();
        let index = ContainerIndex::of(&json).unwrap();
        let (base, length) = (json.as_ptr() as usize, json.len());
        let inner_end = json.len() - 1;
        let inner = &json[5..inner_end];
        assert_eq!(
            index.container_end(base, length, inner.as_bytes(), 0),
            Some(inner.len())
        );
        assert_eq!(index.container_end(base, length, copy.as_bytes(), 0), None);
        assert_eq!(
            index.container_end(base, length, &copy.as_bytes()[5..inner_end], 0),
            None
        );
        // A slice that cuts the container short is left to the scan.
        assert_eq!(
            index.container_end(base, length, &json.as_bytes()[5..inner_end - 1], 0),
            None
        );
        // A short container is not recorded: the scan finds it.
        assert_eq!(index.container_end(base, length, b"[]", 0), None);
    }

    #[test]
    fn the_index_is_scoped_and_nests() {
        let long = filler(80);
        let outer = format!(r#"{{"x":[[{long}]]}}"#);
        let inner = format!(r#"[{{"y":{long}}}]"#);
        let x_end = outer.len() - 1;
        let indexed = |json: &str| ContainerIndex::of(json).unwrap();
        assert_eq!(indexed_container_end(outer.as_bytes(), 5), None);
        with_index(&outer, indexed(&outer), || {
            assert_eq!(indexed_container_end(outer.as_bytes(), 5), Some(x_end));
            with_index(&inner, indexed(&inner), || {
                assert_eq!(indexed_container_end(inner.as_bytes(), 0), Some(inner.len()));
                assert_eq!(indexed_container_end(outer.as_bytes(), 5), None);
            });
            assert_eq!(indexed_container_end(outer.as_bytes(), 5), Some(x_end));
        });
        assert_eq!(indexed_container_end(outer.as_bytes(), 5), None);
        // Restored after a panic inside, too.
        let unwound = std::panic::catch_unwind(|| with_index(&outer, indexed(&outer), || panic!("inside")));
        assert!(unwound.is_err());
        assert_eq!(indexed_container_end(outer.as_bytes(), 5), None);
    }
}
