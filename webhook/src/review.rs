//! Reading an `admission.k8s.io/v1` AdmissionReview on the host.
//!
//! The body is validated once, in the pass that also compacts and indexes it
//! (`wasmhook_rawjson::compact_indexed_checked`); serde_json reads what that
//! pass refuses, so that a malformed review gets serde_json's error, with its
//! line and column, and whatever serde_json accepts is still accepted. The
//! `request` member is kept as the text the API server sent, without the
//! whitespace between its tokens (`wasmhook_rawjson::compact`: strings,
//! numbers and key order byte for byte), and the policy receives that text
//! without re-serialization. A pretty-printed review is half indentation; compacted
//! once here, natively, every later pass — the policy's reads in Wasm, the
//! copy into its memory, the object it returns, the diff — covers only what
//! means something. The few header fields the server needs (uid, kind,
//! operation, name…) are then read from the validated text with
//! `wasmhook_rawjson::from_valid_str`, which delimits the object instead of
//! validating it a second time. The object is parsed on the host only when a
//! policy returns a mutation and the patch must be computed.

use std::ops::Range;

use kube::core::GroupVersionKind;
use kube::core::admission::Operation;
use serde::Deserialize;
use wasmhook_rawjson::{Compacted, ContainerIndex, RawText};

use crate::engine::RequestText;

/// The API version of the reviews wasmhook answers.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The kind of the reviews wasmhook answers.
pub const KIND: &str = "AdmissionReview";

/// Why a request body is not an AdmissionReview wasmhook can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The body is not JSON, or not an object.
    #[error("the body is not a JSON AdmissionReview: {0}")]
    NotJson(String),
    /// `apiVersion` is missing or not `admission.k8s.io/v1`.
    #[error(
        "apiVersion is {found:?}; wasmhook answers admission.k8s.io/v1 AdmissionReviews (set admissionReviewVersions: [\"v1\"])"
    )]
    WrongApiVersion {
        /// What the body said.
        found: Option<String>,
    },
    /// `kind` is missing or not `AdmissionReview`.
    #[error("kind is {}; expected \"AdmissionReview\"", quoted(found))]
    WrongKind {
        /// What the body said.
        found: Option<String>,
    },
    /// The review has no `request`.
    #[error("the AdmissionReview has no request")]
    MissingRequest,
    /// The request has no (or an empty) `uid`.
    #[error("request.uid is missing or empty")]
    MissingUid,
    /// A request field has the wrong shape.
    #[error("request is malformed: {0}")]
    MalformedRequest(String),
}

/// `"value"`, or `missing`.
fn quoted(found: &Option<String>) -> String {
    found
        .as_ref()
        .map_or_else(|| "missing".to_owned(), |value| format!("{value:?}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, borrow)]
    request: Option<RawText<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header<'a> {
    #[serde(default)]
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default, borrow)]
    object: Option<RawText<'a>>,
    #[serde(default, borrow)]
    old_object: Option<RawText<'a>>,
}

/// The operation as the API server spells it: `CREATE`, `UPDATE`…
pub fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// An admission request, ready to evaluate.
#[derive(Debug, Clone)]
pub struct AdmissionInput {
    request_json: String,
    /// Where the long containers of `request_json` are: handed to policies
    /// that import `request-layout`.
    containers: ContainerIndex,
    uid: String,
    kind: GroupVersionKind,
    sub_resource: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    operation: Operation,
    dry_run: bool,
    object: Option<Range<usize>>,
}

impl AdmissionInput {
    /// Parses an AdmissionReview body.
    pub fn from_review(body: &[u8]) -> Result<Self, ReviewError> {
        Self::expect_object(body)?;
        let checked = std::str::from_utf8(body)
            .ok()
            .and_then(wasmhook_rawjson::compact_indexed_checked);
        if let Some(Compacted { text, containers }) = checked {
            let envelope = wasmhook_rawjson::with_index(&text, containers.clone(), || {
                wasmhook_rawjson::from_valid_str::<Envelope<'_>>(&text)
            });
            // An envelope serde_json would not read either: its error says why.
            if let Ok(envelope) = envelope {
                let request = Self::request_of(envelope)?;
                let span = wasmhook_rawjson::span_in(&text, request);
                return Self::from_compacted_request(request.to_owned(), containers.within(span));
            }
        }
        Self::from_review_by_serde_json(body)
    }

    /// [`Self::from_review`] with serde_json validating the body and reading
    /// the envelope: for what the one-pass validation refuses.
    fn from_review_by_serde_json(body: &[u8]) -> Result<Self, ReviewError> {
        Self::expect_object(body)?;
        let envelope: Envelope<'_> =
            serde_json::from_slice(body).map_err(|error| ReviewError::NotJson(error.to_string()))?;
        // Validated with the envelope: read, not validated again.
        Self::from_valid_request(Self::request_of(envelope)?)
    }

    /// A review is an object (serde_json would also read a struct from an
    /// array).
    fn expect_object(body: &[u8]) -> Result<(), ReviewError> {
        if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ReviewError::NotJson("expected a JSON object".into()));
        }
        Ok(())
    }

    /// The request of an AdmissionReview v1.
    fn request_of(envelope: Envelope<'_>) -> Result<&str, ReviewError> {
        if envelope.api_version.as_deref() != Some(API_VERSION) {
            return Err(ReviewError::WrongApiVersion {
                found: envelope.api_version,
            });
        }
        if envelope.kind.as_deref() != Some(KIND) {
            return Err(ReviewError::WrongKind { found: envelope.kind });
        }
        envelope
            .request
            .map(|RawText(request)| request)
            .filter(|request| *request != "null")
            .ok_or(ReviewError::MissingRequest)
    }

    /// Reads (and validates) the `request` member of a review, given as JSON.
    pub fn from_request(request_json: String) -> Result<Self, ReviewError> {
        // Validated as given, so that errors point into the text as written.
        Self::from_header(serde_json::from_str(&request_json), &request_json)?;
        Self::from_valid_request(&request_json)
    }

    /// The input of a validated request, kept compacted: what the policy is
    /// given. Its header is read without validating the text again.
    /// The pass that compacts it also indexes its containers, for the
    /// policy and for reading the header here: the object is jumped over,
    /// not scanned.
    fn from_valid_request(request_json: &str) -> Result<Self, ReviewError> {
        let Compacted { text, containers } = wasmhook_rawjson::compact_indexed(request_json);
        Self::from_compacted_request(text.into_owned(), containers)
    }

    /// The input of a validated, compacted request and the index of its
    /// containers.
    fn from_compacted_request(compacted: String, containers: ContainerIndex) -> Result<Self, ReviewError> {
        let header = wasmhook_rawjson::with_index(&compacted, containers.clone(), || {
            wasmhook_rawjson::from_valid_str(&compacted)
        });
        Self::from_header(header, &compacted).map(|input| input.with_json(compacted, containers))
    }

    /// The input a header describes; `request_json` (which the header
    /// borrows, so it cannot be moved in yet) is set by [`Self::with_json`].
    fn from_header(header: Result<Header<'_>, serde_json::Error>, request_json: &str) -> Result<Self, ReviewError> {
        let header = header.map_err(|error| ReviewError::MalformedRequest(error.to_string()))?;
        if header.uid.is_empty() {
            return Err(ReviewError::MissingUid);
        }
        let span = |raw: Option<RawText<'_>>| {
            raw.filter(|RawText(raw)| *raw != "null")
                .map(|RawText(raw)| wasmhook_rawjson::span_in(request_json, raw))
        };
        let object = span(header.object);
        let has_old_object = span(header.old_object).is_some();
        if object.is_none() && header.operation != Operation::Delete && !has_old_object {
            return Err(ReviewError::MalformedRequest(format!(
                "a {} request must carry request.object",
                operation_name(&header.operation)
            )));
        }
        Ok(Self {
            request_json: String::new(),
            containers: ContainerIndex::default(),
            uid: header.uid,
            kind: header.kind,
            sub_resource: header.sub_resource.filter(|s| !s.is_empty()),
            name: header.name.filter(|s| !s.is_empty()),
            namespace: header.namespace.filter(|s| !s.is_empty()),
            operation: header.operation,
            dry_run: header.dry_run.unwrap_or(false),
            object,
        })
    }

    fn with_json(self, request_json: String, containers: ContainerIndex) -> Self {
        Self {
            request_json,
            containers,
            ..self
        }
    }

    /// The request's uid, echoed in the response.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The kind of the object.
    pub fn kind(&self) -> &GroupVersionKind {
        &self.kind
    }

    /// The subresource, if any.
    pub fn sub_resource(&self) -> Option<&str> {
        self.sub_resource.as_deref()
    }

    /// The object's name, if known.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The object's namespace, if namespaced.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The operation.
    pub fn operation(&self) -> &Operation {
        &self.operation
    }

    /// Whether the request is a dry run.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The `request` member as received, without whitespace between its
    /// tokens: what the policy is given.
    pub fn request_json(&self) -> &str {
        &self.request_json
    }

    /// The request as a policy is given it: the compacted text, the index
    /// of its containers, and its namespace (already read here, so a policy
    /// whose context is scoped to the request's namespace costs no second
    /// read of the text).
    pub fn request_text(&self) -> RequestText<'_> {
        RequestText::indexed(&self.request_json, &self.containers).in_namespace(self.namespace())
    }

    /// Runs `read` with the request's containers indexed: what it reads of
    /// the request (the object, diffed against a policy's mutation) with
    /// `wasmhook_rawjson` jumps over the containers instead of scanning them.
    pub fn with_request_index<R>(&self, read: impl FnOnce() -> R) -> R {
        wasmhook_rawjson::with_index(&self.request_json, self.containers.clone(), read)
    }

    /// The request's object as raw JSON (absent on DELETE).
    pub fn object_json(&self) -> Option<&str> {
        self.object.clone().map(|span| &self.request_json[span])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(request: &str) -> String {
        format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#)
    }

    const REQUEST: &str = r#"{"uid":"u1","kind":{"group":"","version":"v1","kind":"Service"},
        "resource":{"group":"","version":"v1","resource":"services"},"name":"web","namespace":"ns",
        "operation":"CREATE","userInfo":{},"object":{"kind":"Service","metadata":{"name":"web"}},"oldObject":null}"#;

    #[test]
    fn a_review_is_read_once_and_the_request_kept_without_whitespace_between_tokens() {
        let input = AdmissionInput::from_review(review(REQUEST).as_bytes()).unwrap();
        assert_eq!(input.uid(), "u1");
        assert_eq!(input.kind().kind, "Service");
        assert_eq!(input.operation(), &Operation::Create);
        assert_eq!((input.name(), input.namespace()), (Some("web"), Some("ns")));
        assert_eq!(
            input.request_json(),
            r#"{"uid":"u1","kind":{"group":"","version":"v1","kind":"Service"},"resource":{"group":"","version":"v1","resource":"services"},"name":"web","namespace":"ns","operation":"CREATE","userInfo":{},"object":{"kind":"Service","metadata":{"name":"web"}},"oldObject":null}"#
        );
        assert_eq!(
            input.object_json(),
            Some(r#"{"kind":"Service","metadata":{"name":"web"}}"#)
        );
        // Indexed in the same pass: the compacted text's own index.
        assert!(!input.containers.is_empty());
        assert_eq!(
            Some(&input.containers),
            ContainerIndex::of(input.request_json()).as_ref()
        );
        // Strings, numbers and key order are kept byte for byte.
        let spaced = REQUEST.replace(
            r#"{"name":"web"}"#,
            r#"{ "name" : "web" , "annotations": {"z": "two  spaces\n", "a": " 1.50E+2 "}, "generation": 1.50E+2 }"#,
        );
        let input = AdmissionInput::from_review(review(&spaced).as_bytes()).unwrap();
        assert_eq!(
            input.object_json(),
            Some(
                r#"{"kind":"Service","metadata":{"name":"web","annotations":{"z":"two  spaces\n","a":" 1.50E+2 "},"generation":1.50E+2}}"#
            )
        );
    }

    #[test]
    fn invalid_json_anywhere_in_the_object_is_rejected_before_a_policy_sees_it() {
        // Policies read the request without validating it again: the server
        // must have validated every byte, including those it never reads.
        let invalid = REQUEST.replace(r#"{"name":"web"}"#, r#"{"name":"web","x":[tru]}"#);
        assert!(matches!(
            AdmissionInput::from_review(review(&invalid).as_bytes()),
            Err(ReviewError::NotJson(reason)) if reason.contains("line")
        ));
        assert!(matches!(
            AdmissionInput::from_request(invalid),
            Err(ReviewError::MalformedRequest(reason)) if reason.contains("line")
        ));
        let from_request = AdmissionInput::from_request(REQUEST.to_owned()).unwrap();
        let from_review = AdmissionInput::from_review(review(REQUEST).as_bytes()).unwrap();
        assert_eq!(format!("{from_request:?}"), format!("{from_review:?}"));
    }

    /// The reviews recorded from kube-apiserver.
    fn recorded_reviews() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/admission-reviews");
        let mut reviews: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
            .map(|path| std::fs::read(path).unwrap())
            .collect();
        reviews.sort();
        assert!(
            reviews.len() >= 20,
            "only {} recorded reviews in {}",
            reviews.len(),
            dir.display()
        );
        reviews
    }

    #[test]
    fn the_one_pass_read_gives_what_serde_json_gives_valid_or_not() {
        let read = |body: &[u8]| format!("{:?}", AdmissionInput::from_review(body));
        let by_serde_json = |body: &[u8]| format!("{:?}", AdmissionInput::from_review_by_serde_json(body));
        let mut variants = 0;
        for body in recorded_reviews() {
            let input = AdmissionInput::from_review(&body).unwrap();
            assert_eq!(
                Some(&input.containers),
                ContainerIndex::of(input.request_json()).as_ref(),
                "the request's index is the one of its own text"
            );
            assert_eq!(read(&body), by_serde_json(&body));
            // Damaged at every 7th byte: a byte removed, or one that changes
            // JSON's structure (or a review's meaning) put in its place.
            for (at, byte) in (0..body.len()).step_by(7).zip(br#"{}[]",:\ 0e-.tn"x"#.iter().cycle()) {
                let mut removed = body.clone();
                removed.remove(at);
                let mut replaced = body.clone();
                replaced[at] = *byte;
                for damaged in [removed, replaced] {
                    assert_eq!(
                        read(&damaged),
                        by_serde_json(&damaged),
                        "{}",
                        String::from_utf8_lossy(&damaged)
                    );
                    variants += 1;
                }
            }
        }
        assert!(variants > 5000, "{variants} variants");
    }

    #[test]
    fn what_the_one_pass_read_refuses_serde_json_reads() {
        // Invalid UTF-8 in a string of a member the envelope does not read,
        // and nesting deeper than the one-pass validation follows: serde_json
        // accepts both, and so does the server.
        let mut body = review(REQUEST).into_bytes();
        body.splice(1..1, *b"\"note\":\"\xff\",");
        let input = AdmissionInput::from_review(&body).unwrap();
        assert_eq!(input.uid(), "u1");
        let deep = format!(
            "{}{}",
            "[".repeat(wasmhook_rawjson::MAX_DEPTH + 1),
            "]".repeat(wasmhook_rawjson::MAX_DEPTH + 1)
        );
        let body = review(&REQUEST.replace(r#""userInfo":{}"#, &format!(r#""userInfo":{{"extra":{deep}}}"#)));
        assert!(wasmhook_rawjson::compact_indexed_checked(&body).is_none());
        let input = AdmissionInput::from_review(body.as_bytes()).unwrap();
        assert_eq!(input.uid(), "u1");
        assert!(input.request_json().contains(&deep));
    }

    #[test]
    fn bad_envelopes_say_what_is_wrong() {
        let error = |body: &str| AdmissionInput::from_review(body.as_bytes()).unwrap_err();
        assert!(matches!(error("{"), ReviewError::NotJson(reason) if reason.contains("line 1")));
        assert!(matches!(error("[]"), ReviewError::NotJson(reason) if reason.contains("JSON object")));
        assert!(matches!(error(""), ReviewError::NotJson(_)));
        assert_eq!(
            error(r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#),
            ReviewError::WrongApiVersion {
                found: Some("admission.k8s.io/v1beta1".into())
            }
        );
        assert_eq!(
            error(r#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#),
            ReviewError::WrongKind {
                found: Some("Pod".into())
            }
        );
        assert_eq!(error(&review("null")), ReviewError::MissingRequest);
        assert_eq!(
            error(&review(&REQUEST.replace(r#""uid":"u1""#, r#""uid":"""#))),
            ReviewError::MissingUid
        );
        assert!(matches!(
            error(&review(&REQUEST.replace("CREATE", "CRUSH"))),
            ReviewError::MalformedRequest(reason) if reason.contains("CRUSH")
        ));
        assert!(matches!(
            error(&review(&REQUEST.replace(r#""object":{"kind":"Service","metadata":{"name":"web"}}"#, r#""object":null"#))),
            ReviewError::MalformedRequest(reason) if reason.contains("request.object")
        ));
    }
}
