//! Runs test suites: each case through the engine and the server's response
//! mapping, then every expectation checked, each mismatch described with the
//! values that differ.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::core::admission::Operation;
use serde_json::Value;

use super::format::{Source, Suite, TestCase};
use crate::builtin::{ModuleSource, PREFIX};
use crate::context::{PolicyContext, files};
use crate::engine::{CompiledPolicy, Engine, EngineConfig, Limits};
use crate::manifest::{self, RequestSpec};
use crate::policy::{Enforcement, FailurePolicy};
use crate::response::{Decision, decide};
use crate::review::AdmissionInput;

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// What did not match; empty when the case passed.
    pub problems: Vec<String>,
    /// How long the evaluation took (loading excluded).
    pub elapsed: Duration,
}

impl CaseResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The outcome of one suite.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteResult {
    /// The suite file.
    pub path: PathBuf,
    /// The module under test, as the suite names it.
    pub module: String,
    /// One result per case, in order.
    pub cases: Vec<CaseResult>,
}

/// Runs suites with one engine; a module is compiled once per settings.
pub struct Runner {
    engine: Engine,
    loaded: HashMap<(PathBuf, String, String), CompiledPolicy>,
}

impl Runner {
    /// A runner whose engine caches compiled policies in `cache_dir`.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, String> {
        let engine = Engine::new(EngineConfig {
            max_concurrent_evaluations: 2,
            cache_dir,
            ..EngineConfig::default()
        })
        .map_err(|error| format!("cannot start the engine: {error:#}"))?;
        Ok(Self {
            engine,
            loaded: HashMap::new(),
        })
    }

    /// Runs every case of `suite`.
    pub fn run(&mut self, suite: &Suite) -> SuiteResult {
        let cases = suite
            .tests
            .iter()
            .map(|case| {
                let started = Instant::now();
                let mut elapsed = Duration::ZERO;
                let problems = match self.run_case(suite, case, &mut elapsed) {
                    Ok(problems) => problems,
                    Err(problem) => vec![problem],
                };
                CaseResult {
                    name: case.name.clone(),
                    problems,
                    elapsed: if elapsed.is_zero() { started.elapsed() } else { elapsed },
                }
            })
            .collect();
        SuiteResult {
            path: suite.path.clone(),
            module: suite.policy.module.clone(),
            cases,
        }
    }

    /// Evaluates one case and checks it; `Err` when it could not run at all.
    fn run_case(&mut self, suite: &Suite, case: &TestCase, elapsed: &mut Duration) -> Result<Vec<String>, String> {
        let settings = case.settings.as_ref().unwrap_or(&suite.policy.settings).to_string();
        let policy = self.policy(suite, &settings)?;
        let policy = match context(suite, case)? {
            Some(context) => policy.with_context(Some(context)),
            None => policy,
        };
        let input = input(suite, case)?;
        let started = Instant::now();
        let evaluated = policy.evaluate_blocking(input.request_text(), None);
        *elapsed = started.elapsed();

        let mut problems = Vec::new();
        match (&evaluated, &case.expect.failure) {
            (Err(failure), None) => problems.push(format!("the policy failed: {failure}")),
            (Err(failure), Some(expected)) if !failure.to_string().contains(expected.as_str()) => {
                problems.push(format!(
                    "the policy failed with {:?}, which lacks {expected:?}",
                    failure.to_string()
                ));
            }
            (Ok(_), Some(expected)) => problems.push(format!("expected the policy to fail ({expected:?}); it did not")),
            _ => {}
        }
        let enforcement = Enforcement {
            mode: suite.policy.mode,
            action: suite.policy.action,
            failure_policy: FailurePolicy::Fail,
        };
        let decision = decide(policy.name(), enforcement, &input, evaluated);
        check(suite, case, &input, &decision, &mut problems)?;
        Ok(problems)
    }

    /// The compiled policy for `settings`, loading it on first use.
    fn policy(&mut self, suite: &Suite, settings: &str) -> Result<CompiledPolicy, String> {
        let key = (suite.dir.clone(), suite.policy.module.clone(), settings.to_owned());
        if let Some(policy) = self.loaded.get(&key) {
            return Ok(policy.clone());
        }
        let spec = &suite.policy.module;
        // An oci:// module is parsed so that reading it says to pull it first.
        let source = if spec.starts_with(PREFIX) || crate::oci::PolicyReference::is_oci(spec) {
            ModuleSource::parse(spec).map_err(|error| error.to_string())?
        } else {
            ModuleSource::File(suite.dir.join(spec))
        };
        // A built-in with its cluster-context checks: cases with and without
        // context share the compiled policy, and without declarations it
        // decides as the build without them does.
        let wasm = source.read(true).map_err(|error| error.to_string())?;
        let limits = Limits {
            timeout: suite.policy.timeout.unwrap_or(Limits::default().timeout),
            ..Limits::default()
        };
        let policy = self
            .engine
            .load(&source.default_policy_name(), &wasm, settings, limits)
            .map_err(|error| error.to_string())?;
        self.loaded.insert(key, policy.clone());
        Ok(policy)
    }
}

/// What the case's policy may read of the cluster: the case's objects, else
/// the suite's, as the policy declares (`None` when the suite has neither
/// objects nor declarations: reads are refused as undeclared, as on a server).
fn context(suite: &Suite, case: &TestCase) -> Result<Option<PolicyContext>, String> {
    let sources = case.context.as_ref().unwrap_or(&suite.context);
    if sources.is_empty() && suite.policy.context.is_none() {
        return Ok(None);
    }
    let mut documents = Vec::new();
    for source in sources {
        match source {
            Source::File(path) => {
                documents.extend(files::read_objects(&suite.dir.join(path)).map_err(|error| error.to_string())?)
            }
            Source::Inline(object) => documents.push(object.clone()),
        }
    }
    let declared = suite
        .policy
        .context
        .clone()
        .map(|value| crate::config::context_declarations(value).map_err(|error| format!("policy.{error}")))
        .transpose()?;
    let also = match suite.policy.module.strip_prefix(PREFIX) {
        Some(name) => crate::config::builtin_context(name),
        None => Vec::new(),
    };
    let origin = format!("{} (context)", suite.path.display());
    files::offline_context(&origin, documents, declared, &also)
        .map(Some)
        .map_err(|error| error.to_string())
}

/// The request a case describes.
fn input(suite: &Suite, case: &TestCase) -> Result<AdmissionInput, String> {
    if let Some(review) = &case.review {
        let path = suite.dir.join(review);
        let body = std::fs::read(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        return AdmissionInput::from_review(&body).map_err(|error| format!("{}: {error}", path.display()));
    }
    let object = case
        .object
        .as_ref()
        .expect("a checked case has an object or a review")
        .object(&suite.dir)?;
    let old_object = case.old_object.as_ref().map(|old| old.object(&suite.dir)).transpose()?;
    let operation = match (case.operation.as_deref(), &old_object) {
        (Some("UPDATE"), _) | (None, Some(_)) => Operation::Update,
        (Some("DELETE"), _) => Operation::Delete,
        _ => Operation::Create,
    };
    let request = manifest::build_request(RequestSpec {
        object,
        old_object,
        operation,
        default_namespace: case.namespace.clone().unwrap_or_else(|| "default".into()),
    })
    .map_err(|error| error.to_string())?;
    AdmissionInput::from_request(request.to_string()).map_err(|error| error.to_string())
}

/// Compares the answer with the case's expectations.
fn check(
    suite: &Suite,
    case: &TestCase,
    input: &AdmissionInput,
    decision: &Decision,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let expect = &case.expect;
    let response = &decision.response;
    let message = response.status.as_ref().map(|status| status.message.as_str());
    if response.allowed != expect.allowed {
        let verdict = |allowed| if allowed { "allowed" } else { "denied" };
        problems.push(format!(
            "expected {}, got {}{}",
            verdict(expect.allowed),
            verdict(response.allowed),
            message.map(|message| format!(": {message}")).unwrap_or_default()
        ));
    }
    if let Some(expected) = &expect.message
        && !message.is_some_and(|message| message.contains(expected.as_str()))
    {
        problems.push(format!("expected a message containing {expected:?}, got {message:?}"));
    }
    match &expect.warnings {
        None if !response.warnings.is_empty() => {
            problems.push(format!("expected no warning, got {:?}", response.warnings));
        }
        Some(expected) => {
            for part in expected {
                if !response.warnings.iter().any(|warning| warning.contains(part.as_str())) {
                    problems.push(format!(
                        "expected a warning containing {part:?}, got {:?}",
                        response.warnings
                    ));
                }
            }
        }
        None => {}
    }
    let actual_patch = decision.mutation.as_ref().map_or_else(
        || Value::Array(Vec::new()),
        |mutation| serde_json::to_value(&mutation.patch).unwrap_or_default(),
    );
    if expect.unchanged && decision.mutation.is_some() {
        problems.push(format!("expected no change, got the patch {actual_patch}"));
    }
    if let Some(expected) = &expect.patch
        && *expected != actual_patch
    {
        problems.push(format!(
            "the patch differs\n  expected: {expected}\n  actual:   {actual_patch}"
        ));
    }
    if let Some(expected) = &expect.object {
        let expected = expected.object(&suite.dir)?;
        let actual = match &decision.mutation {
            Some(mutation) => mutation.mutated(),
            None => serde_json::from_str(input.object_json().unwrap_or("null")),
        };
        match actual {
            Ok(actual) if expected != actual => problems.push(describe_difference(&expected, &actual)),
            Ok(_) => {}
            Err(error) => problems.push(format!("the resulting object cannot be compared: {error}")),
        }
    }
    Ok(())
}

/// The differences between the expected and the resulting object, one line
/// per JSON Pointer.
fn describe_difference(expected: &Value, actual: &Value) -> String {
    let mut text = String::from("the resulting object differs");
    for operation in json_patch::diff(expected, actual).0 {
        let line = match operation {
            json_patch::PatchOperation::Add(op) => format!("{}: expected absent, got {}", op.path, op.value),
            json_patch::PatchOperation::Remove(op) => {
                let pointer = op.path.to_string();
                let value = expected.pointer(&pointer).map_or_else(String::new, Value::to_string);
                format!("{pointer}: expected {value}, got absent")
            }
            json_patch::PatchOperation::Replace(op) => {
                let pointer = op.path.to_string();
                let value = expected.pointer(&pointer).map_or_else(String::new, Value::to_string);
                format!("{pointer}: expected {value}, got {}", op.value)
            }
            other => format!("{other:?}"),
        };
        text.push_str("\n  ");
        text.push_str(&line);
    }
    text
}
