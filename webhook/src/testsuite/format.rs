//! The test-suite file format, read strictly: an unknown or misspelt key is an
//! error that names it, so a typo never silently turns a check off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::SuiteError;
use crate::policy::{Action, Mode};

/// The `apiVersion` of a suite.
pub const API_VERSION: &str = "wasmhook.dev/v1alpha1";
/// The `kind` of a suite.
pub const KIND: &str = "PolicyTestSuite";

/// A test suite, read from a file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Suite {
    /// `wasmhook.dev/v1alpha1`.
    pub api_version: String,
    /// `PolicyTestSuite`.
    pub kind: String,
    /// The policy every case runs against.
    pub policy: PolicyUnderTest,
    /// Cluster objects every case's policy may read (`cluster-context`):
    /// objects inline, or files of them (YAML/JSON documents or Lists).
    #[serde(default)]
    pub context: Vec<Source>,
    /// The cases.
    pub tests: Vec<TestCase>,
    /// The file's directory: relative paths in the suite are resolved
    /// against it. Not part of the file.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The file. Not part of the file.
    #[serde(skip)]
    pub path: PathBuf,
}

/// The policy under test.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyUnderTest {
    /// `builtin:<name>`, or a path to a `.wasm` component (relative to the suite).
    pub module: String,
    /// The policy's settings; `null` (the default) for the policy's own defaults.
    #[serde(default)]
    pub settings: Value,
    /// `mutate` (default) or `validate`: a validating policy denies what it
    /// would have patched.
    #[serde(default)]
    pub mode: Mode,
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub action: Action,
    /// Time limit per evaluation, such as `500ms` (default 2s).
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// The kinds the policy may read, as a policy set's `context:` declares
    /// them [default: every kind of the suite's objects, and the kinds a
    /// built-in reads].
    #[serde(default)]
    pub context: Option<Value>,
}

/// One case.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestCase {
    /// What the case shows, printed in the results.
    pub name: String,
    /// The object under review: a manifest file (YAML or JSON), or inline.
    #[serde(default)]
    pub object: Option<Source>,
    /// The old version of the object (makes the operation UPDATE).
    #[serde(default)]
    pub old_object: Option<Source>,
    /// `CREATE`, `UPDATE` or `DELETE` [default: CREATE, or UPDATE with oldObject].
    #[serde(default)]
    pub operation: Option<String>,
    /// Namespace for a namespaced object that names none [default: `default`].
    #[serde(default)]
    pub namespace: Option<String>,
    /// Instead of `object`: a whole AdmissionReview file, as the API server sends it.
    #[serde(default)]
    pub review: Option<PathBuf>,
    /// Settings for this case only, instead of the suite's.
    #[serde(default)]
    pub settings: Option<Value>,
    /// This case's cluster objects, instead of the suite's.
    #[serde(default)]
    pub context: Option<Vec<Source>>,
    /// What the policy must answer.
    pub expect: Expectation,
}

/// What a case must answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expectation {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// A part of the denial message.
    #[serde(default)]
    pub message: Option<String>,
    /// Parts of warnings: each must appear in some warning. Without it, the
    /// answer must carry no warning.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
    /// The exact JSON Patch (RFC 6902 operations, in order).
    #[serde(default)]
    pub patch: Option<Value>,
    /// The object after the patch: a manifest file, or inline.
    #[serde(default)]
    pub object: Option<Source>,
    /// `true`: no patch at all.
    #[serde(default)]
    pub unchanged: bool,
    /// A part of the policy's failure (timeout, trap, error…): the policy
    /// must fail, and the failure must mention it.
    #[serde(default)]
    pub failure: Option<String>,
}

/// An object given by file or inline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A manifest file, relative to the suite.
    File(PathBuf),
    /// The object itself.
    Inline(Value),
}

impl Source {
    /// The object: the file read (relative to `dir`), or the inline value.
    pub fn object(&self, dir: &Path) -> Result<Value, String> {
        match self {
            Self::File(path) => crate::manifest::read_object(&dir.join(path)).map_err(|error| error.to_string()),
            Self::Inline(value) if value.is_object() => Ok(value.clone()),
            Self::Inline(value) => Err(format!("an object must be a mapping or a file name, not {value}")),
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    text.map(|text| crate::duration::parse(&text).map_err(serde::de::Error::custom))
        .transpose()
}

impl Suite {
    /// Reads and checks a suite file.
    pub fn read(path: &Path) -> Result<Self, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: String| SuiteError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut suite: Self = serde_saphyr::from_str(&text).map_err(|error| {
            let message = error.to_string();
            invalid(message.strip_prefix("error: ").unwrap_or(&message).to_owned())
        })?;
        if suite.api_version != API_VERSION || suite.kind != KIND {
            return Err(invalid(format!(
                "expected apiVersion {API_VERSION} and kind {KIND}, found {} and {}",
                suite.api_version, suite.kind
            )));
        }
        if suite.tests.is_empty() {
            return Err(invalid("tests: the suite has no test".into()));
        }
        for (index, case) in suite.tests.iter().enumerate() {
            case.check()
                .map_err(|reason| invalid(format!("tests[{index}] ({:?}): {reason}", case.name)))?;
        }
        suite.dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        suite.path = path.to_owned();
        Ok(suite)
    }
}

impl TestCase {
    /// Combinations that cannot be meant.
    fn check(&self) -> Result<(), String> {
        match (&self.object, &self.review) {
            (None, None) => return Err("give `object` (a manifest) or `review` (an AdmissionReview file)".into()),
            (Some(_), Some(_)) => return Err("give `object` or `review`, not both".into()),
            _ => {}
        }
        if self.review.is_some() && (self.old_object.is_some() || self.operation.is_some() || self.namespace.is_some())
        {
            return Err("a `review` carries its own oldObject, operation and namespace".into());
        }
        let expect = &self.expect;
        if expect.unchanged && (expect.patch.is_some() || expect.object.is_some()) {
            return Err("expect: `unchanged` contradicts `patch` and `object`".into());
        }
        if let Some(patch) = &expect.patch {
            json_patch::Patch::deserialize(patch)
                .map_err(|error| format!("expect.patch is not a JSON Patch: {error}"))?;
        }
        if let Some(operation) = &self.operation
            && !matches!(operation.as_str(), "CREATE" | "UPDATE" | "DELETE")
        {
            return Err(format!("operation {operation:?} is not CREATE, UPDATE or DELETE"));
        }
        Ok(())
    }
}
