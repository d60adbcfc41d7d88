//! The policy set: which policies the webhook serves, where their components
//! come from, which requests each one sees, and how each is applied and
//! bounded. It is read from one YAML file at startup and checked completely —
//! every field, every module file, every sha256 pin — before the server binds
//! a port, so a typo fails the rollout instead of an admission request.
//!
//! ```yaml
//! apiVersion: wasmhook.dev/v1alpha1
//! kind: PolicySet
//! policies:
//!   - name: headless-service
//!     module: builtin:headless-service
//! ```
//!
//! Every error names the file, the policy (by name, or `policies[i]` when the
//! name is missing or unusable) and the field, e.g.
//! `policies.yaml: policy "web" (policies[1]): field memoryLimit: "12Qi" is not a quantity (use e.g. 64Mi)`.
//! The complete format, with comments, is `tests/fixtures/policy-sets/example.yaml`.

mod quantity;
mod raw;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::admissionregistration::v1::{MatchCondition, RuleWithOperations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use crate::builtin::{ModuleError, ModuleSource};
use crate::engine::{Limits, sha256_hex};
use crate::oci::{Registry, SignatureRequirement};
use crate::policy::Enforcement;

/// The `apiVersion` a policy set file must declare.
pub const API_VERSION: &str = "wasmhook.dev/v1alpha1";
/// The `kind` a policy set file must declare.
pub const KIND: &str = "PolicySet";

/// The policies the webhook serves, in the order of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    /// The policies; names are unique.
    pub policies: Vec<PolicyConfig>,
}

/// One policy of a set, validated, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// A DNS-1123 label, unique in the set: the last segment of the policy's
    /// URL (`/mutate/<name>` or `/validate/<name>`).
    pub name: String,
    /// The component: a built-in or a file (relative paths already resolved
    /// against the policy set's directory).
    pub module: ModuleSource,
    /// The pinned sha256 of the module's bytes (64 lowercase hex digits).
    pub sha256: Option<String>,
    /// Mode, action and failure policy.
    pub enforcement: Enforcement,
    /// Timeout and memory limit of one evaluation.
    pub limits: Limits,
    /// The policy's settings (`null` when absent: the policy's defaults).
    pub settings: Value,
    /// The requests the policy sees, as in a webhook configuration.
    pub rules: Vec<RuleWithOperations>,
    /// Only objects in namespaces matching this selector.
    pub namespace_selector: Option<LabelSelector>,
    /// Only objects whose labels match this selector.
    pub object_selector: Option<LabelSelector>,
    /// CEL conditions the API server checks before calling the webhook.
    pub match_conditions: Vec<MatchCondition>,
    /// The cluster objects the policy may read (`context:`), each kind once.
    pub context: Vec<crate::context::Declaration>,
    /// The keys whose signatures an OCI module must carry (`signatures:`).
    pub signatures: Option<SignatureRequirement>,
}

/// Which policy of a set an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    /// The policy's name, when it has a valid one.
    pub name: Option<String>,
    /// The policy's position in `policies`, when known.
    pub index: Option<usize>,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, self.index) {
            (Some(name), Some(index)) => write!(f, "policy {name:?} (policies[{index}])"),
            (Some(name), None) => write!(f, "policy {name:?}"),
            (None, Some(index)) => write!(f, "policies[{index}]"),
            (None, None) => f.write_str("a policy"),
        }
    }
}

/// Why a policy set cannot be used. Every message names the file, and where it
/// applies the policy and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The policy set file could not be read.
    #[error("cannot read policy set {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{origin}: not valid YAML: {reason}")]
    Yaml {
        /// The file.
        origin: String,
        /// The parser's message, with the line and column.
        reason: String,
    },
    /// The document is not a policy set: not a mapping, an unknown or missing
    /// top-level key, the wrong `apiVersion` or `kind`, no policies.
    #[error("{origin}: {}{message}", field_prefix(.field))]
    Document {
        /// The file.
        origin: String,
        /// The top-level field, if the problem is in one.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A policy is invalid: an unknown or missing key, or a bad value.
    #[error("{origin}: {policy}: {}{message}", field_prefix(.field))]
    Policy {
        /// The file.
        origin: String,
        /// The policy.
        policy: PolicyRef,
        /// The field's path inside the policy (`memoryLimit`,
        /// `rules[0].operations[1]`), if the problem is in one.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// Two policies have the same name (and so the same URL).
    #[error("{origin}: duplicate policy name {name:?} (policies[{first}] and policies[{second}])")]
    DuplicateName {
        /// The file.
        origin: String,
        /// The name.
        name: String,
        /// The first policy's index.
        first: usize,
        /// The second policy's index.
        second: usize,
    },
    /// A policy's module cannot be read (the source names the module).
    /// `origin` is `None` when the module is read again after the set was
    /// loaded ([`PolicyConfig::read_module`]).
    #[error("{}{policy}: {source}", origin_prefix(.origin))]
    Module {
        /// The file.
        origin: Option<String>,
        /// The policy.
        policy: PolicyRef,
        /// Why the module cannot be read.
        #[source]
        source: ModuleError,
    },
    /// A module's bytes do not have the pinned sha256.
    #[error(
        "{}{policy}: module {}: sha256 mismatch: pinned {pinned}, {} has {actual}",
        origin_prefix(.origin),
        .module.display_name(),
        match .module { ModuleSource::Builtin(_) => "built-in", ModuleSource::File(_) => "file", ModuleSource::Oci(_) => "pulled module" }
    )]
    Sha256Mismatch {
        /// The file (see [`ConfigError::Module`]).
        origin: Option<String>,
        /// The policy.
        policy: PolicyRef,
        /// The module.
        module: ModuleSource,
        /// The sha256 the policy set pins.
        pinned: Box<str>,
        /// The sha256 of the module's bytes.
        actual: Box<str>,
    },
}

fn field_prefix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|field| format!("field {field}: "))
        .unwrap_or_default()
}

fn origin_prefix(origin: &Option<String>) -> String {
    origin.as_ref().map(|origin| format!("{origin}: ")).unwrap_or_default()
}

/// YAML 1.2 booleans only, so that `name: y` or `mode: on` stay strings
/// (YAML 1.1 reads them as `true`); duplicate keys are errors (the default);
/// parse errors on one line, without a source snippet, as they end up in logs.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    options
}

/// The top level of the file; each policy is read on its own (see [`raw`]) so
/// that its errors can name it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "a PolicySet mapping")]
struct RawPolicySet {
    api_version: String,
    kind: String,
    policies: Vec<Value>,
}

impl PolicySet {
    /// Reads and checks a policy set file, and every module it names (see
    /// [`PolicySet::from_yaml`]). Relative module paths are resolved against
    /// the file's directory.
    pub fn from_file(path: &Path, max_memory_limit: usize) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        // Absolute, so module paths in messages and later reads do not depend
        // on the working directory.
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_owned());
        Self::from_yaml(&path.display().to_string(), &text, &base_dir, max_memory_limit)
    }

    /// Parses and checks a policy set: every field, then every module (it
    /// exists, is readable, and matches its sha256 pin). Compiling the modules
    /// is left to the engine. `origin` names the text in messages; relative
    /// module paths are resolved against `base_dir`; no policy may ask for
    /// more memory than `max_memory_limit` bytes (the engine's maximum), and
    /// the default memory limit is 128Mi or that maximum, whichever is lower.
    pub fn from_yaml(origin: &str, text: &str, base_dir: &Path, max_memory_limit: usize) -> Result<Self, ConfigError> {
        let document_error = |field: Option<&str>, message: String| ConfigError::Document {
            origin: origin.to_owned(),
            field: field.map(str::to_owned),
            message,
        };
        let document: Value =
            serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|error| ConfigError::Yaml {
                origin: origin.to_owned(),
                // The parser's advice is for programmers, not for whoever edits the file.
                reason: error
                    .to_string()
                    .replace(", set DuplicateKeyPolicy in Options if acceptable", ""),
            })?;
        if document.is_null() {
            return Err(document_error(
                None,
                format!("the file is empty: expected apiVersion: {API_VERSION}, kind: {KIND} and policies"),
            ));
        }
        let set: RawPolicySet = serde_path_to_error::deserialize(document).map_err(|error| {
            let (field, message) = raw::split_error(error);
            document_error(field.as_deref(), message)
        })?;
        if set.api_version != API_VERSION {
            return Err(document_error(
                Some("apiVersion"),
                format!("expected {API_VERSION:?}, found {:?}", set.api_version),
            ));
        }
        if set.kind != KIND {
            return Err(document_error(
                Some("kind"),
                format!("expected {KIND:?}, found {:?}", set.kind),
            ));
        }
        if set.policies.is_empty() {
            return Err(document_error(
                Some("policies"),
                "at least one policy is required".to_owned(),
            ));
        }

        let mut policies = Vec::with_capacity(set.policies.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        for (index, entry) in set.policies.into_iter().enumerate() {
            let policy = PolicyRef {
                name: raw::usable_name(&entry),
                index: Some(index),
            };
            let config = raw::policy(entry, base_dir, max_memory_limit).map_err(|invalid| ConfigError::Policy {
                origin: origin.to_owned(),
                policy,
                field: invalid.field,
                message: invalid.message,
            })?;
            if let Some(&first) = names.get(&config.name) {
                return Err(ConfigError::DuplicateName {
                    origin: origin.to_owned(),
                    name: config.name,
                    first,
                    second: index,
                });
            }
            names.insert(config.name.clone(), index);
            policies.push(config);
        }
        // Local modules are checked now; an OCI module is pulled (and its
        // pin and signatures checked) when the policy is loaded.
        let local = Registry::new(crate::oci::RegistryConfig::default());
        for (index, config) in policies.iter().enumerate() {
            if !matches!(config.module, ModuleSource::Oci(_)) {
                config.read_checked(&local, Some(origin), Some(index))?;
            }
        }
        Ok(Self { policies })
    }

    /// The embedded default: every built-in policy under its own name, in
    /// mutate mode, with its default settings, rules and limits.
    pub fn builtin_default() -> Self {
        let policies = crate::builtin::BUILTINS
            .iter()
            .filter_map(|builtin| {
                Some(PolicyConfig {
                    name: builtin.name.to_owned(),
                    rules: raw::builtin_rules(builtin.name, &[])?,
                    module: ModuleSource::Builtin(builtin.name),
                    sha256: None,
                    enforcement: Enforcement::default(),
                    limits: Limits::default(),
                    settings: Value::Null,
                    namespace_selector: None,
                    object_selector: None,
                    match_conditions: Vec::new(),
                    context: Vec::new(),
                    signatures: None,
                })
            })
            .collect();
        Self { policies }
    }

    /// The policy named `name`.
    pub fn get(&self, name: &str) -> Option<&PolicyConfig> {
        self.policies.iter().find(|policy| policy.name == name)
    }
}

/// Reads a `context:` list (as a policy set writes it) into declarations;
/// the error names the field and says what is wrong.
pub fn context_declarations(value: Value) -> Result<Vec<crate::context::Declaration>, String> {
    raw::context_declarations(value).map_err(|invalid| match invalid.field {
        Some(field) => format!("{field}: {}", invalid.message),
        None => invalid.message,
    })
}

/// The kinds the built-in policy `name` reads when they are declared.
pub fn builtin_context(name: &str) -> Vec<crate::context::ResourceKind> {
    raw::builtin_context(name)
}

impl PolicyConfig {
    /// The settings as the JSON text given to the policy.
    pub fn settings_json(&self) -> String {
        self.settings.to_string()
    }

    /// Reads the module's bytes and checks them against the sha256 pin. The
    /// error names the policy and the module; the policy set file was checked
    /// when the set was loaded, so it is not repeated here.
    pub fn read_module(&self, registry: &Registry) -> Result<Cow<'static, [u8]>, ConfigError> {
        self.read_checked(registry, None, None)
    }

    fn read_checked(
        &self,
        registry: &Registry,
        origin: Option<&str>,
        index: Option<usize>,
    ) -> Result<Cow<'static, [u8]>, ConfigError> {
        let policy = || PolicyRef {
            name: Some(self.name.clone()),
            index,
        };
        let with_context = !self.context.is_empty();
        let bytes = self
            .module
            .fetch(registry, with_context, self.signatures.as_ref())
            .map_err(|source| ConfigError::Module {
                origin: origin.map(str::to_owned),
                policy: policy(),
                source,
            })?;
        if let Some(pinned) = &self.sha256 {
            let actual = sha256_hex(&bytes);
            if actual != *pinned {
                return Err(ConfigError::Sha256Mismatch {
                    origin: origin.map(str::to_owned),
                    policy: policy(),
                    module: self.module.clone(),
                    pinned: pinned.as_str().into(),
                    actual: actual.into(),
                });
            }
        }
        Ok(bytes)
    }
}
