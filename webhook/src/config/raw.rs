//! One policy entry as written in the file, and its checks. Each entry is
//! deserialized on its own, with `serde_path_to_error`, so an error names the
//! policy and the field's path inside it; then every value is checked and
//! defaults are filled in.
//!
//! Rules, selectors and match conditions are read into local mirrors of the
//! k8s-openapi types: those ignore unknown keys, and a typo such as
//! `matchLabel` would silently widen a selector to every object.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{MatchCondition, RuleWithOperations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Deserialize;
use serde_json::Value;

use super::{PolicyConfig, quantity};
use crate::builtin::{self, ModuleSource};
use crate::context::{Declaration, ResourceKind, Scope};
use crate::engine::Limits;
use crate::oci::{SignatureRequirement, VerificationKey};
use crate::policy::{Action, Enforcement, FailurePolicy, Mode};

/// The shortest timeout a policy may have.
pub(super) const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest: the API server waits at most 30 s for a webhook.
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// The smallest memory limit a policy may have.
pub(super) const MIN_MEMORY: usize = 1 << 20;
/// At most this many match conditions, as in Kubernetes.
const MAX_MATCH_CONDITIONS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "a policy mapping")]
struct RawPolicy {
    name: String,
    module: String,
    sha256: Option<Value>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    action: Action,
    #[serde(default)]
    failure_policy: FailurePolicy,
    timeout: Option<Value>,
    memory_limit: Option<Value>,
    #[serde(default)]
    settings: Value,
    rules: Option<Vec<RawRule>>,
    namespace_selector: Option<RawSelector>,
    object_selector: Option<RawSelector>,
    #[serde(default)]
    match_conditions: Vec<RawMatchCondition>,
    #[serde(default)]
    context: Vec<RawDeclaration>,
    signatures: Option<RawSignatures>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSignatures {
    keys: Vec<PathBuf>,
    #[serde(default)]
    require: Require,
}

/// Whether every key of `signatures.keys` must have signed, or one.
#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "camelCase")]
enum Require {
    #[default]
    All,
    Any,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDeclaration {
    api_version: String,
    kind: String,
    #[serde(default)]
    scope: Scope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    #[serde(default)]
    operations: Vec<String>,
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    api_versions: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSelector {
    match_labels: Option<BTreeMap<String, String>>,
    match_expressions: Option<Vec<RawRequirement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRequirement {
    key: String,
    operator: String,
    values: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMatchCondition {
    name: String,
    expression: String,
}

/// What is wrong with a policy entry, and where inside it.
#[derive(Debug)]
pub(super) struct Invalid {
    /// The field's path, e.g. `rules[0].operations[1]`; `None` for the entry itself.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: Some(field.into()),
        message: message.into(),
    }
}

/// Splits a deserialization error into the field's path (`None` at the top)
/// and serde's message. An unknown key is reported at the mapping holding it:
/// the message names the key already.
pub(super) fn split_error(error: serde_path_to_error::Error<serde_json::Error>) -> (Option<String>, String) {
    let message = error.inner().to_string();
    let mut segments: Vec<_> = error.path().iter().collect();
    if message.starts_with("unknown field") {
        segments.pop();
    }
    let mut field = String::new();
    for segment in segments {
        match segment {
            serde_path_to_error::Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            other => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(&other.to_string());
            }
        }
    }
    ((!field.is_empty()).then_some(field), message)
}

/// The entry's name, if it is one a message can use.
pub(super) fn usable_name(entry: &Value) -> Option<String> {
    let name = entry.get("name")?.as_str()?;
    check_name(name).is_ok().then(|| name.to_owned())
}

/// Checks and completes one policy entry.
pub(super) fn policy(entry: Value, base_dir: &Path, max_memory: usize) -> Result<PolicyConfig, Invalid> {
    let raw: RawPolicy = serde_path_to_error::deserialize(entry).map_err(|error| {
        let (field, message) = split_error(error);
        Invalid { field, message }
    })?;
    check_name(&raw.name).map_err(|message| invalid("name", message))?;
    let module = module(&raw.module, base_dir).map_err(|message| invalid("module", message))?;
    let sha256 = raw
        .sha256
        .map(sha256)
        .transpose()
        .map_err(|message| invalid("sha256", message))?;
    let timeout = match &raw.timeout {
        None => Limits::default().timeout,
        Some(value) => timeout(value).map_err(|message| invalid("timeout", message))?,
    };
    let default_memory = Limits::default().memory.min(max_memory);
    let memory = match &raw.memory_limit {
        None => default_memory,
        Some(value) => memory(value, max_memory).map_err(|message| invalid("memoryLimit", message))?,
    };
    let context = convert_context(raw.context)?;
    let rules = match (raw.rules, &module) {
        (Some(rules), _) => rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| convert_rule(rule, &format!("rules[{index}]")))
            .collect::<Result<Vec<_>, _>>()?,
        (None, ModuleSource::Builtin(name)) => builtin_rules(name, &context)
            .ok_or_else(|| invalid("rules", format!("required: the built-in {name} has no default rules")))?,
        (None, ModuleSource::File(_) | ModuleSource::Oci(_)) => {
            return Err(invalid(
                "rules",
                "required for a policy from a file or a registry: say which requests it sees, e.g. \
                 [{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [services]}]",
            ));
        }
    };
    if rules.is_empty() {
        return Err(invalid("rules", "must list at least one rule"));
    }
    let namespace_selector = raw
        .namespace_selector
        .map(|selector| convert_selector(selector, "namespaceSelector"))
        .transpose()?;
    let object_selector = raw
        .object_selector
        .map(|selector| convert_selector(selector, "objectSelector"))
        .transpose()?;
    let match_conditions = convert_match_conditions(raw.match_conditions)?;
    let signatures = raw
        .signatures
        .map(|signatures| convert_signatures(signatures, &module, base_dir))
        .transpose()?;
    Ok(PolicyConfig {
        name: raw.name,
        module,
        sha256,
        enforcement: Enforcement {
            mode: raw.mode,
            action: raw.action,
            failure_policy: raw.failure_policy,
        },
        limits: Limits { timeout, memory },
        settings: raw.settings,
        rules,
        namespace_selector,
        object_selector,
        match_conditions,
        signatures,
        context,
    })
}

/// A `context:` list as written (in a policy set or a test suite's policy):
/// each kind once, with an apiVersion and a kind. The error names the field.
pub(super) fn context_declarations(value: Value) -> Result<Vec<Declaration>, Invalid> {
    let raw: Vec<RawDeclaration> = serde_path_to_error::deserialize(value).map_err(|error| {
        let (field, message) = split_error(error);
        Invalid {
            field: Some(match field {
                Some(field) if field.starts_with('[') => format!("context{field}"),
                Some(field) => format!("context.{field}"),
                None => "context".to_owned(),
            }),
            message,
        }
    })?;
    convert_context(raw)
}

/// The kinds a built-in policy reads when they are declared: what `wasmhook
/// eval --context` declares for it, and what its documentation shows.
pub(super) fn builtin_context(name: &str) -> Vec<ResourceKind> {
    match name {
        "statefulset-service-name" => vec![ResourceKind::new("v1", "Service")],
        "headless-service" => vec![ResourceKind::new("apps/v1", "StatefulSet")],
        _ => Vec::new(),
    }
}

/// A policy's `context:`: each kind once, with an apiVersion and a kind.
fn convert_context(raw: Vec<RawDeclaration>) -> Result<Vec<Declaration>, Invalid> {
    let mut declarations: Vec<Declaration> = Vec::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("context[{index}].{field}");
        let version_ok = entry
            .api_version
            .split('/')
            .all(|part| !part.is_empty() && !part.contains(char::is_whitespace))
            && entry.api_version.matches('/').count() <= 1;
        if !version_ok {
            return Err(invalid(
                at("apiVersion"),
                format!(
                    "{:?} is not an apiVersion (`v1` for the core group, `group/version` otherwise, e.g. apps/v1)",
                    entry.api_version
                ),
            ));
        }
        let kind_ok = entry.kind.starts_with(|c: char| c.is_ascii_uppercase())
            && entry.kind.chars().all(|c| c.is_ascii_alphanumeric());
        if !kind_ok {
            return Err(invalid(
                at("kind"),
                format!(
                    "{:?} is not a kind (CamelCase, as in the objects: Service, StatefulSet)",
                    entry.kind
                ),
            ));
        }
        let kind = ResourceKind::new(entry.api_version, entry.kind);
        if declarations.iter().any(|declared| declared.kind == kind) {
            return Err(invalid(at("kind"), format!("{kind} is declared twice")));
        }
        declarations.push(Declaration {
            kind,
            scope: entry.scope,
        });
    }
    Ok(declarations)
}

/// A DNS-1123 label: the name is a URL path segment and a Kubernetes webhook name part.
fn check_name(name: &str) -> Result<(), String> {
    const RULE: &str = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 \
                        characters: the name is the policy's URL path segment";
    if name.is_empty() {
        return Err(format!("must not be empty ({RULE})"));
    }
    let label = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let well_formed = name.len() <= 63
        && bytes.iter().all(|&b| label(b) || b == b'-')
        && label(bytes[0])
        && label(bytes[bytes.len() - 1]);
    if !well_formed {
        return Err(format!("{name:?} is not a DNS-1123 label ({RULE})"));
    }
    Ok(())
}

/// `signatures:`: the keys read now, so a missing or malformed key fails the
/// policy set, not a later pull. Only an OCI module has signatures; a file
/// is pinned with `sha256`.
fn convert_signatures(
    raw: RawSignatures,
    module: &ModuleSource,
    base_dir: &Path,
) -> Result<SignatureRequirement, Invalid> {
    if !matches!(module, ModuleSource::Oci(_)) {
        return Err(invalid(
            "signatures",
            "only a module from a registry (oci://…) is signed; pin a file or a built-in with sha256",
        ));
    }
    if raw.keys.is_empty() {
        return Err(invalid("signatures.keys", "must list at least one public key file"));
    }
    let keys = raw
        .keys
        .iter()
        .enumerate()
        .map(|(index, path)| {
            VerificationKey::read(&base_dir.join(path))
                .map_err(|error| invalid(format!("signatures.keys[{index}]"), error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SignatureRequirement {
        keys,
        require_all: raw.require == Require::All,
    })
}

/// `builtin:<name>`, an `oci://` (or `registry://`) reference, or a path
/// resolved against the policy set's directory.
/// (Unlike the command line, a bare built-in name is a path here: a policy
/// set says what it means.)
fn module(spec: &str, base_dir: &Path) -> Result<ModuleSource, String> {
    if spec.trim().is_empty() {
        return Err("must not be empty: write builtin:<name> or the path of a .wasm component".to_owned());
    }
    if spec.starts_with(builtin::PREFIX) || crate::oci::PolicyReference::is_oci(spec) {
        return ModuleSource::parse(spec).map_err(|error| error.to_string());
    }
    // `components()` drops the `.` segments `./policy.wasm` would leave in messages.
    let path: PathBuf = base_dir
        .join(spec)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    Ok(ModuleSource::File(path))
}

/// A pin: 64 lowercase hex digits. YAML reads a digest of digits only (or
/// with a single `e`) as a number, losing it: say to quote it.
fn sha256(value: Value) -> Result<String, String> {
    let digest = match value {
        Value::String(digest) => digest,
        Value::Number(number) => {
            return Err(format!(
                "YAML read the digest as the number {number}: write it in quotes"
            ));
        }
        other => return Err(format!("expected a string of 64 lowercase hex digits, found {other}")),
    };
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if digest.len() != 64 || !digest.bytes().all(hex) {
        return Err(format!("{digest:?} is not a sha256 digest (64 lowercase hex digits)"));
    }
    Ok(digest)
}

fn timeout(value: &Value) -> Result<Duration, String> {
    let timeout = match value {
        Value::String(text) => crate::duration::parse(text)?,
        Value::Number(number) => crate::duration::parse(&number.to_string())?,
        other => return Err(format!("expected a duration such as 2s or 500ms, found {other}")),
    };
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
        return Err(format!(
            "{value} is out of range: must be between {} and {} (the API server waits at most 30s for a webhook)",
            crate::duration::format(MIN_TIMEOUT),
            crate::duration::format(MAX_TIMEOUT),
        ));
    }
    Ok(timeout)
}

fn memory(value: &Value, max_memory: usize) -> Result<usize, String> {
    let bytes = match value {
        Value::String(text) => quantity::parse(text),
        Value::Number(number) => number.as_u64().map(u128::from),
        _ => None,
    }
    .ok_or_else(|| format!("{value} is not a quantity (use e.g. 64Mi)"))?;
    if bytes < MIN_MEMORY as u128 {
        return Err(format!(
            "{value} is below the minimum, {}",
            quantity::format(MIN_MEMORY)
        ));
    }
    match usize::try_from(bytes) {
        Ok(bytes) if bytes <= max_memory => Ok(bytes),
        _ => Err(format!(
            "{value} is above the engine's maximum memory limit, {}",
            quantity::format(max_memory)
        )),
    }
}

/// The rules of a built-in policy when the policy set gives none.
pub(super) fn builtin_rules(name: &str, context: &[Declaration]) -> Option<Vec<RuleWithOperations>> {
    let rule = |groups: &str, operations: &[&str], resources: &str| RuleWithOperations {
        api_groups: Some(vec![groups.to_owned()]),
        api_versions: Some(vec!["v1".to_owned()]),
        operations: Some(operations.iter().map(|&op| op.to_owned()).collect()),
        resources: Some(vec![resources.to_owned()]),
        scope: None,
    };
    match name {
        // With StatefulSets in its context, headless-service also checks the
        // deletion of a Service a StatefulSet depends on: only then does it
        // see DELETE (without context it has nothing to say about one, and a
        // fail-closed webhook on every Service deletion would cost the
        // cluster its break-glass path for nothing).
        "headless-service" => {
            let watches_statefulsets = context
                .iter()
                .any(|declared| declared.kind == ResourceKind::new("apps/v1", "StatefulSet"));
            let operations: &[&str] = if watches_statefulsets {
                &["CREATE", "UPDATE", "DELETE"]
            } else {
                &["CREATE", "UPDATE"]
            };
            Some(vec![rule("", operations, "services")])
        }
        "statefulset-service-name" => Some(vec![rule("apps", &["CREATE"], "statefulsets")]),
        _ => None,
    }
}

fn convert_rule(rule: RawRule, at: &str) -> Result<RuleWithOperations, Invalid> {
    const OPERATIONS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "*"];
    for (index, operation) in rule.operations.iter().enumerate() {
        if !OPERATIONS.contains(&operation.as_str()) {
            return Err(invalid(
                format!("{at}.operations[{index}]"),
                format!("{operation:?} is not an operation (expected CREATE, UPDATE, DELETE, CONNECT or *)"),
            ));
        }
    }
    let lists = [
        ("operations", &rule.operations, "list at least one operation"),
        (
            "apiGroups",
            &rule.api_groups,
            "list at least one group (\"\" is the core group, \"*\" every group)",
        ),
        (
            "apiVersions",
            &rule.api_versions,
            "list at least one version (\"*\" for every version)",
        ),
        (
            "resources",
            &rule.resources,
            "list at least one resource (\"*\" for every resource)",
        ),
    ];
    for (field, list, hint) in lists {
        if list.is_empty() {
            return Err(invalid(format!("{at}.{field}"), format!("must {hint}")));
        }
        if list.len() > 1 && list.iter().any(|item| item == "*") {
            return Err(invalid(format!("{at}.{field}"), "\"*\" must be the only entry"));
        }
        // The core API group is the empty string; nothing else may be empty.
        if field != "apiGroups"
            && let Some(index) = list.iter().position(String::is_empty)
        {
            return Err(invalid(format!("{at}.{field}[{index}]"), "must not be empty"));
        }
    }
    if let Some(scope) = &rule.scope
        && !["Cluster", "Namespaced", "*"].contains(&scope.as_str())
    {
        return Err(invalid(
            format!("{at}.scope"),
            format!("{scope:?} is not a scope (expected Cluster, Namespaced or *)"),
        ));
    }
    Ok(RuleWithOperations {
        api_groups: Some(rule.api_groups),
        api_versions: Some(rule.api_versions),
        operations: Some(rule.operations),
        resources: Some(rule.resources),
        scope: rule.scope,
    })
}

fn convert_selector(selector: RawSelector, at: &str) -> Result<LabelSelector, Invalid> {
    let mut expressions = Vec::new();
    for (index, requirement) in selector.match_expressions.into_iter().flatten().enumerate() {
        let at = format!("{at}.matchExpressions[{index}]");
        let values = requirement.values.as_deref().unwrap_or_default();
        if requirement.key.is_empty() {
            return Err(invalid(format!("{at}.key"), "must not be empty"));
        }
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(invalid(
                    format!("{at}.values"),
                    format!("operator {} needs at least one value", requirement.operator),
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(invalid(
                    format!("{at}.values"),
                    format!("operator {} takes no values", requirement.operator),
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(invalid(
                    format!("{at}.operator"),
                    format!("{other:?} is not an operator (expected In, NotIn, Exists or DoesNotExist)"),
                ));
            }
        }
        expressions.push(LabelSelectorRequirement {
            key: requirement.key,
            operator: requirement.operator,
            values: requirement.values,
        });
    }
    Ok(LabelSelector {
        match_labels: selector.match_labels,
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    })
}

fn convert_match_conditions(conditions: Vec<RawMatchCondition>) -> Result<Vec<MatchCondition>, Invalid> {
    if conditions.len() > MAX_MATCH_CONDITIONS {
        return Err(invalid(
            "matchConditions",
            format!("at most {MAX_MATCH_CONDITIONS} are allowed, found {}", conditions.len()),
        ));
    }
    let mut converted: Vec<MatchCondition> = Vec::with_capacity(conditions.len());
    for (index, condition) in conditions.into_iter().enumerate() {
        let at = format!("matchConditions[{index}]");
        let name = &condition.name;
        let edge = |b: u8| b.is_ascii_alphanumeric();
        let well_formed = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| edge(b) || b"-_.".contains(&b))
            && edge(name.as_bytes()[0])
            && edge(name.as_bytes()[name.len() - 1]);
        if !well_formed {
            return Err(invalid(
                format!("{at}.name"),
                format!(
                    "{name:?} is not a valid name (1 to 63 letters, digits, '-', '_' or '.', starting and ending \
                     with a letter or digit)"
                ),
            ));
        }
        if let Some(first) = converted.iter().position(|earlier| earlier.name == *name) {
            return Err(invalid(
                format!("{at}.name"),
                format!("{name:?} is also the name of matchConditions[{first}]"),
            ));
        }
        if condition.expression.trim().is_empty() {
            return Err(invalid(format!("{at}.expression"), "must not be empty"));
        }
        converted.push(MatchCondition {
            name: condition.name,
            expression: condition.expression,
        });
    }
    Ok(converted)
}
