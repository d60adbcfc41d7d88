//! Cluster context: the objects already in the cluster that a policy may read
//! through the `cluster-context` import (a StatefulSet's Service, the
//! StatefulSets that name a Service).
//!
//! Three layers, from the engine outwards:
//!
//! - this module: what a policy declares ([`Declaration`]: apiVersion, kind,
//!   [`Scope`]), what a read may fail with ([`ContextError`]), and the trait
//!   the engine reads through ([`ContextSource`]), with the per-evaluation
//!   access check ([`PolicyContext::for_request`]) — no I/O;
//! - [`store`]: the one implementation, in-memory objects by kind, stripped of
//!   what no policy needs; fed by files offline ([`files`]: `wasmhook eval
//!   --context`, test suites' `context:`) and by watches in the server
//!   ([`watch`]), so what passes offline behaves the same in a cluster;
//! - [`watch`]: one reflector per declared kind, shared by every policy that
//!   declares it, and what `/readyz` and the metrics say of them.
//!
//! Without any `context:` in the policy set nothing here runs: no watch, no
//! store, and evaluations pay nothing for it.

pub mod files;
pub mod store;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use store::ContextStore;

/// A kind of object, as a policy names it: `apiVersion` (`v1`, `apps/v1`)
/// and `kind` (`Service`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceKind {
    /// `group/version`, or `version` for the core group.
    pub api_version: String,
    /// The kind, in CamelCase.
    pub kind: String,
}

impl ResourceKind {
    /// `api_version` and `kind`.
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
        }
    }

    /// The API group (`""` for the core group) and version.
    pub fn group_version(&self) -> (&str, &str) {
        match self.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.api_version.as_str()),
        }
    }

    /// Whether this is the kind whose objects hold secrets.
    pub fn is_secret(&self) -> bool {
        self.api_version == "v1" && self.kind == "Secret"
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.api_version, self.kind)
    }
}

/// Where a policy may read a declared kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Every namespace (and cluster-scoped objects).
    #[default]
    Cluster,
    /// Only the namespace of the request being evaluated.
    RequestNamespace,
}

/// One entry of a policy's `context:`: a kind it may read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// The kind.
    pub kind: ResourceKind,
    /// Where.
    pub scope: Scope,
}

/// Why a read was refused: the `context-error` of the WIT contract. Each
/// text says what was asked and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Not declared by the policy, or outside the declared scope.
    #[error("{0}")]
    NotDeclared(String),
    /// The kind's cache has not finished its first list.
    #[error("{0}")]
    NotSynced(String),
    /// The cluster (or, offline, the context files) serves no such kind.
    #[error("{0}")]
    UnknownKind(String),
    /// The label selector is not a valid `LabelSelector`.
    #[error("{0}")]
    InvalidSelector(String),
}

/// A label selector, parsed: what `list` matches labels against.
#[derive(Debug, Clone, Default)]
pub struct LabelQuery(kube::core::Selector);

impl LabelQuery {
    /// Parses a `metav1.LabelSelector` as JSON; `""` and `{}` select all.
    pub fn parse(json: &str) -> Result<Self, ContextError> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        let invalid = |reason: String| {
            ContextError::InvalidSelector(format!(
                "label selector {json:?}: {reason} (expected a LabelSelector as JSON: \
                 {{\"matchLabels\": {{...}}, \"matchExpressions\": [...]}})"
            ))
        };
        let selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
            serde_json::from_str(json).map_err(|error| invalid(error.to_string()))?;
        kube::core::Selector::try_from(selector)
            .map(Self)
            .map_err(|error| invalid(error.to_string()))
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        use kube::core::SelectorExt as _;
        self.0.matches(labels)
    }
}

/// Where the engine reads cluster objects: [`ContextStore`], fed by watches
/// in the server and by files offline.
pub trait ContextSource: Send + Sync + 'static {
    /// The object of `kind` named `name` in `namespace` (`None`: cluster
    /// scope), as JSON.
    fn get(&self, kind: &ResourceKind, namespace: Option<&str>, name: &str) -> Result<Option<Arc<str>>, ContextError>;

    /// The objects of `kind` in `namespace` (`None`: everywhere) whose labels
    /// match `selector`, ordered by namespace and name, as JSON.
    fn list(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        selector: &LabelQuery,
    ) -> Result<Vec<Arc<str>>, ContextError>;
}

/// A policy's declared kinds and where it reads them: what a compiled policy
/// carries when its policy-set entry has `context:`.
#[derive(Clone)]
pub struct PolicyContext {
    declarations: Arc<[Declaration]>,
    source: Arc<dyn ContextSource>,
}

impl fmt::Debug for PolicyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyContext")
            .field("declarations", &self.declarations)
            .finish_non_exhaustive()
    }
}

impl PolicyContext {
    /// `declarations` read from `source`.
    pub fn new(declarations: Vec<Declaration>, source: Arc<dyn ContextSource>) -> Self {
        Self {
            declarations: declarations.into(),
            source,
        }
    }

    /// The declared kinds.
    pub fn declarations(&self) -> &[Declaration] {
        &self.declarations
    }

    /// What one evaluation may read: this context, checked against the
    /// request's namespace.
    pub fn for_request(&self, request_namespace: Option<String>) -> RequestContext {
        RequestContext {
            policy: self.clone(),
            request_namespace,
        }
    }
}

/// The context of one evaluation: every read is checked against the
/// policy's declarations and the request's namespace.
#[derive(Debug, Clone)]
pub struct RequestContext {
    policy: PolicyContext,
    request_namespace: Option<String>,
}

impl RequestContext {
    /// Reads one object, if declared.
    pub fn get(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Arc<str>>, ContextError> {
        self.check(kind, namespace)?;
        self.policy.source.get(kind, namespace, name)
    }

    /// Lists objects, if declared.
    pub fn list(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Arc<str>>, ContextError> {
        self.check(kind, namespace)?;
        let selector = LabelQuery::parse(selector)?;
        self.policy.source.list(kind, namespace, &selector)
    }

    /// Where `kind` is declared to be read; `None` when it is not.
    pub fn scope(&self, kind: &ResourceKind) -> Option<Scope> {
        self.declaration(kind).map(|declared| declared.scope)
    }

    fn declaration(&self, kind: &ResourceKind) -> Option<&Declaration> {
        self.policy.declarations.iter().find(|declared| declared.kind == *kind)
    }

    /// Whether `kind` is declared, and `namespace` within its scope.
    fn check(&self, kind: &ResourceKind, namespace: Option<&str>) -> Result<(), ContextError> {
        let Some(declaration) = self.declaration(kind) else {
            let declared: Vec<String> = self.policy.declarations.iter().map(|d| d.kind.to_string()).collect();
            return Err(ContextError::NotDeclared(format!(
                "{kind} is not declared for this policy (declared: {}): add `- {{apiVersion: {}, kind: {}}}` \
                 to its context: in the policy set",
                if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join(", ")
                },
                kind.api_version,
                kind.kind,
            )));
        };
        if declaration.scope == Scope::RequestNamespace && namespace != self.request_namespace.as_deref() {
            let asked = namespace.map_or_else(|| "every namespace".to_owned(), |ns| format!("namespace {ns:?}"));
            let own = self.request_namespace.as_deref().map_or_else(
                || "a cluster-scoped request has none".to_owned(),
                |ns| format!("{ns:?}"),
            );
            return Err(ContextError::NotDeclared(format!(
                "{kind} is declared with scope RequestNamespace: only the request's namespace ({own}) may be \
                 read, not {asked}; declare scope: Cluster to read more"
            )));
        }
        Ok(())
    }
}

/// Gives each policy that declares `context:` its [`PolicyContext`]: the
/// server's watches ([`watch::ContextWatches`]), or files offline
/// ([`FileContext`]).
pub trait ContextProvider: Send + Sync {
    /// The context of `policy`, which declares `declarations` (not empty).
    /// Called while loading policies, outside the review path.
    fn provide(&self, policy: &str, declarations: &[Declaration]) -> Result<PolicyContext, String>;
}

/// Objects from files (`wasmhook eval --context`, a suite's `context:`): a
/// declared kind the files do not hold is there, empty — as in a cluster
/// with no such objects.
pub struct FileContext(Arc<ContextStore>);

impl FileContext {
    /// The objects of `store`.
    pub fn new(store: ContextStore) -> Self {
        Self(Arc::new(store))
    }

    /// No objects at all, from `origin`.
    pub fn empty(origin: &str) -> Self {
        Self::new(ContextStore::new(origin))
    }
}

impl ContextProvider for FileContext {
    fn provide(&self, _policy: &str, declarations: &[Declaration]) -> Result<PolicyContext, String> {
        files::ensure_kinds(&self.0, declarations.iter().map(|declared| &declared.kind));
        Ok(PolicyContext::new(declarations.to_vec(), self.0.clone()))
    }
}

/// What a policy may read when its entry declares no `context:`: nothing,
/// with a message that says how to declare.
pub fn undeclared(kind: &ResourceKind) -> ContextError {
    ContextError::NotDeclared(format!(
        "this policy declares no context: add `context: [{{apiVersion: {}, kind: {}}}]` to its entry in the \
         policy set to read {kind}",
        kind.api_version, kind.kind
    ))
}

#[cfg(test)]
mod tests;
