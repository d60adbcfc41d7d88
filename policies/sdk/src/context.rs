//! Reading the cluster a request lands in: a StatefulSet's Service, the
//! StatefulSets that name a Service.
//!
//! Some rules cannot be decided from the request alone — "the Service this
//! StatefulSet names exists and is headless", "no StatefulSet still needs the
//! Service being deleted". The server keeps watch caches of the kinds a
//! policy declares under `context:` in the policy set and answers the WIT
//! `cluster-context` import from them, never with an API call on the review
//! path. This module is that import made typed: [`get`] and [`list`] read
//! k8s-openapi types, [`get_as`] and [`list_as`] read narrow views of your
//! own (what a policy on a hot path should use: see [`get_as`]),
//! [`get_json`] and [`list_json`] read any kind as JSON, and every failure
//! is a [`ContextError`].
//!
//! What to know when using it:
//!
//! - **Only declared kinds are readable.** A read of a kind the policy set
//!   does not declare for this policy — or of another namespace than the
//!   request's when the kind is declared with `scope: RequestNamespace` —
//!   fails with [`ContextError::NotDeclared`]. Treat it as "no context
//!   configured" ([`ContextError::is_not_declared`]) and decide as if the
//!   check did not exist, so the policy works with and without `context:`.
//! - **The caches lag the API server** by the watch's latency (usually
//!   milliseconds): an object created in the same `kubectl apply` as the one
//!   under review may not be seen yet. A finding such as "the Service does
//!   not exist" is therefore best a warning, or a denial the operator opts
//!   into.
//! - **Objects arrive without `metadata.managedFields`** and without the
//!   `kubectl.kubernetes.io/last-applied-configuration` annotation.
//! - **Only policies that call it import it.** On `wasm32` the functions
//!   call the import; a policy that never calls them does not import
//!   `cluster-context` at all (the linker drops the unused import), and pays
//!   nothing for it.
//! - **In native unit tests** the reads go to a test cluster set by
//!   [`crate::testing`] ([`TestRequest::with_cluster`], or
//!   [`ClusterObjects::run`]); without one every read is `NotDeclared`, as on
//!   a server whose policy set declares no `context:`.
//!
//! [`TestRequest::with_cluster`]: crate::testing::TestRequest::with_cluster
//! [`ClusterObjects::run`]: crate::testing::ClusterObjects::run
//!
//! # Example
//!
//! A policy that warns when a StatefulSet names a Service that does not
//! exist, and its tests:
//!
//! ```
//! use wasmhook_policy::context::{self, ContextError};
//! use wasmhook_policy::k8s_openapi::api::core::v1::Service;
//! use wasmhook_policy::serde_json::json;
//! use wasmhook_policy::testing::{ClusterObjects, create};
//! use wasmhook_policy::{Policy, PolicyError, Request, Verdict};
//!
//! struct ServiceExists;
//!
//! impl Policy for ServiceExists {
//!     type Settings = ();
//!
//!     fn evaluate(request: &Request<'_>, _: &()) -> Result<Verdict, PolicyError> {
//!         let Some(service) = request.object_at::<String>("/spec/serviceName")? else {
//!             return Ok(Verdict::allow());
//!         };
//!         match context::get::<Service>(request.namespace(), &service) {
//!             Ok(Some(_)) => Ok(Verdict::allow()),
//!             Ok(None) => Ok(Verdict::allow().with_warning(format!("there is no Service {service:?} yet"))),
//!             // No `context:` for this policy: skip the check.
//!             Err(error) if error.is_not_declared() => Ok(Verdict::allow()),
//!             // Anything else is a failure of the policy (`?` works too).
//!             Err(error) => Err(error.into()),
//!         }
//!     }
//! }
//!
//! let statefulset = json!({
//!     "apiVersion": "apps/v1", "kind": "StatefulSet",
//!     "metadata": {"name": "web", "namespace": "shop"},
//!     "spec": {"serviceName": "web-headless"},
//! });
//! let service = json!({
//!     "apiVersion": "v1", "kind": "Service",
//!     "metadata": {"name": "web-headless", "namespace": "shop"},
//!     "spec": {"clusterIP": "None"},
//! });
//!
//! // The Service is there: no warning.
//! let verdict = create(&statefulset).with_cluster([service]).evaluate::<ServiceExists>(()).unwrap();
//! assert!(verdict.warnings().is_empty());
//!
//! // It is not: a warning.
//! let verdict = create(&statefulset).with_cluster([]).evaluate::<ServiceExists>(()).unwrap();
//! assert_eq!(verdict.warnings(), [r#"there is no Service "web-headless" yet"#]);
//!
//! // No context declared (no test cluster at all, or one that declares
//! // other kinds): the check is skipped.
//! let verdict = create(&statefulset).evaluate::<ServiceExists>(()).unwrap();
//! assert!(verdict.warnings().is_empty());
//! let only_pods = ClusterObjects::new().declare("v1", "Pod");
//! let verdict = create(&statefulset).with_cluster(only_pods).evaluate::<ServiceExists>(()).unwrap();
//! assert!(verdict.warnings().is_empty());
//!
//! // The server has not listed Services yet: the policy fails.
//! let not_synced = ClusterObjects::new().not_synced("v1", "Service");
//! let error = create(&statefulset).with_cluster(not_synced).evaluate::<ServiceExists>(()).unwrap_err();
//! assert!(error.contains("has not finished"), "{error}");
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::view::NamespacedName;

/// Why a read of cluster objects failed.
///
/// The first four are the host's answers (the WIT `context-error`), carrying
/// its text, which says what was asked and what to do; the last is the SDK's
/// own: an object that does not read as the type asked for.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The policy's `context:` does not declare this apiVersion and kind, or
    /// declares it for the request's namespace only and another namespace
    /// (or every namespace) was asked. Also what every read returns when the
    /// policy set declares no `context:` for the policy — see
    /// [`ContextError::is_not_declared`].
    #[error("{0}")]
    NotDeclared(String),
    /// The server has not finished its first list of this kind yet (it is
    /// starting, or the API server is slow): try again later, or decide
    /// without the context.
    #[error("{0}")]
    NotSynced(String),
    /// The cluster serves no such apiVersion and kind (a CRD that is not
    /// installed, a misspelt kind).
    #[error("{0}")]
    UnknownKind(String),
    /// The label selector is not a valid `LabelSelector` (an unknown
    /// operator, values with `Exists`).
    #[error("{0}")]
    InvalidSelector(String),
    /// An object the server returned does not deserialize as the type it was
    /// read as: the type is stricter than the object (a required field the
    /// object lacks), or the object is not of the kind asked for.
    #[error("cannot read {kind} {object} from the cluster as {target}: {source}")]
    InvalidObject {
        /// The apiVersion and kind read, such as `v1 Service`.
        kind: String,
        /// Which object: `namespace/name`, or its name for a cluster-scoped one.
        object: String,
        /// The Rust type it was read as.
        target: &'static str,
        /// The deserializer's message.
        #[source]
        source: serde_json::Error,
    },
}

impl ContextError {
    /// Whether the read was refused because the policy set does not declare
    /// it for this policy — the same as "no context configured": a policy
    /// then decides as it would without the check.
    pub fn is_not_declared(&self) -> bool {
        matches!(self, Self::NotDeclared(_))
    }
}

/// Where the policy set lets this policy read a kind: its `context:` entry's
/// `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In every namespace (and cluster-scoped objects).
    Cluster,
    /// Only in the namespace of the request being evaluated.
    RequestNamespace,
}

/// Where this policy may read objects of type `K`, as the policy set
/// declares it; `None` when it does not (as for a policy set with no
/// `context:` for the policy).
///
/// Ask before a check that needs context, to skip it cheaply without:
/// a read refused as [`ContextError::NotDeclared`] costs a host call that
/// writes a message for the author into the policy's memory, on every
/// evaluation.
///
/// ```
/// use wasmhook_policy::context;
/// use wasmhook_policy::k8s_openapi::api::core::v1::Service;
///
/// fn service_exists(namespace: &str, name: &str) -> Result<Option<bool>, context::ContextError> {
///     if context::declared::<Service>().is_none() {
///         return Ok(None); // no context: the check does not apply
///     }
///     Ok(Some(context::get::<Service>(Some(namespace), name)?.is_some()))
/// }
/// ```
pub fn declared<K: k8s_openapi::Resource>() -> Option<Scope> {
    declared_kind(K::API_VERSION, K::KIND)
}

/// [`declared`] for a kind named by `api_version` and `kind` (a custom
/// resource, or a policy that reads with [`get_as`]).
pub fn declared_kind(api_version: &str, kind: &str) -> Option<Scope> {
    host::declared(api_version, kind)
}

/// The object of type `K` named `name` in `namespace` (`None` for a
/// cluster-scoped kind); `Ok(None)` when there is no such object.
///
/// `K`'s `API_VERSION` and `KIND` say what to read:
/// `context::get::<Service>(Some("shop"), "web-headless")`.
pub fn get<K>(namespace: Option<&str>, name: &str) -> Result<Option<K>, ContextError>
where
    K: k8s_openapi::Resource + DeserializeOwned,
{
    get_as(K::API_VERSION, K::KIND, namespace, name)
}

/// The objects of type `K` in `namespace` (`None`: in every namespace) whose
/// labels match `selector`, ordered by namespace and name.
///
/// `&LabelSelector::default()` selects every object; a workload's
/// `spec.selector` can be passed as it is.
pub fn list<K>(namespace: Option<&str>, selector: &LabelSelector) -> Result<Vec<K>, ContextError>
where
    K: k8s_openapi::Resource + DeserializeOwned,
{
    list_as(K::API_VERSION, K::KIND, namespace, selector)
}

/// [`get`] for a kind without a k8s-openapi type (a custom resource): the
/// object of `api_version` (`v1`, `example.com/v1`) and `kind` named `name`
/// in `namespace`, as JSON.
pub fn get_json(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ContextError> {
    get_as(api_version, kind, namespace, name)
}

/// [`list`] for a kind without a k8s-openapi type, as JSON.
pub fn list_json(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    selector: &LabelSelector,
) -> Result<Vec<Value>, ContextError> {
    list_as(api_version, kind, namespace, selector)
}

/// [`get`] into a type of your own: a narrow view of the fields the policy
/// reads (see [`crate::view`]), deserialized in one pass that skips the rest
/// of the object without allocating it.
///
/// A k8s-openapi type brings the code to deserialize every field of the
/// kind into the component — for a StatefulSet, its whole pod template: the
/// headless-service built-in grew from 0.56 MB to 1.9 MB listing
/// `StatefulSet`s, and is 0.63 MB with a view of the three fields it reads.
/// Prefer a view in a policy on a hot path.
///
/// ```
/// use serde::Deserialize;
/// use wasmhook_policy::context;
///
/// /// What a policy reads of a Service.
/// #[derive(Deserialize, Default)]
/// #[serde(default)]
/// struct ServiceView {
///     spec: ServiceSpecView,
/// }
///
/// #[derive(Deserialize, Default)]
/// #[serde(default, rename_all = "camelCase")]
/// struct ServiceSpecView {
///     #[serde(rename = "clusterIP")]
///     cluster_ip: Option<String>,
///     publish_not_ready_addresses: Option<bool>,
/// }
///
/// fn is_headless(namespace: &str, name: &str) -> Result<bool, context::ContextError> {
///     let service = context::get_as::<ServiceView>("v1", "Service", Some(namespace), name)?;
///     Ok(service.is_some_and(|service| service.spec.cluster_ip.as_deref() == Some("None")))
/// }
/// ```
pub fn get_as<T: DeserializeOwned>(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<T>, ContextError> {
    let Some(json) = host::get(api_version, kind, namespace, name)? else {
        return Ok(None);
    };
    read::<T>(api_version, kind, &json).map(Some)
}

/// [`list`] into a type of your own (see [`get_as`]).
pub fn list_as<T: DeserializeOwned>(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    selector: &LabelSelector,
) -> Result<Vec<T>, ContextError> {
    let objects = host::list(api_version, kind, namespace, &selector_json(selector)?)?;
    objects.iter().map(|json| read::<T>(api_version, kind, json)).collect()
}

/// The selector as the import takes it: `""` for the empty selector (every
/// object), JSON otherwise. Inlined so that a policy listing with
/// `LabelSelector::default()` links no serializer.
#[inline]
fn selector_json(selector: &LabelSelector) -> Result<String, ContextError> {
    if selector.match_labels.is_none() && selector.match_expressions.is_none() {
        return Ok(String::new());
    }
    serde_json::to_string(selector).map_err(|error| ContextError::InvalidSelector(error.to_string()))
}

/// Reads one object the host returned. Its text is the server's own
/// serialization, valid JSON: the members `T` ignores are delimited, not
/// validated, as the request's are.
fn read<T: DeserializeOwned>(api_version: &str, kind: &str, json: &str) -> Result<T, ContextError> {
    wasmhook_rawjson::from_valid_str(json).map_err(|source| ContextError::InvalidObject {
        kind: format!("{api_version} {kind}"),
        object: object_name(json),
        target: std::any::type_name::<T>(),
        source,
    })
}

/// `namespace/name` of an object, for an error message: found by pointer,
/// with the scanner every read already links in (a deserializer of its
/// metadata would add kilobytes to every policy that reads the cluster).
fn object_name(json: &str) -> String {
    let field = |pointer: &str| {
        crate::pointer::find(json, pointer)
            .ok()
            .flatten()
            .and_then(|raw| wasmhook_rawjson::from_valid_str::<String>(raw).ok())
    };
    let name = field("/metadata/name").unwrap_or_else(|| "(unnamed)".to_owned());
    NamespacedName::new(field("/metadata/namespace").as_deref(), &name).to_string()
}

/// The `cluster-context` import, in a Wasm policy.
#[cfg(target_arch = "wasm32")]
mod host {
    use super::{ContextError, Scope};
    use crate::bindings::wasmhook::policy::cluster_context::{self, ContextError as Wit, Scope as WitScope};

    pub(super) fn declared(api_version: &str, kind: &str) -> Option<Scope> {
        cluster_context::declared(api_version, kind).map(|scope| match scope {
            WitScope::Cluster => Scope::Cluster,
            WitScope::RequestNamespace => Scope::RequestNamespace,
        })
    }

    pub(super) fn get(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, ContextError> {
        cluster_context::get(api_version, kind, namespace, name).map_err(from_wit)
    }

    pub(super) fn list(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<String>, ContextError> {
        cluster_context::list(api_version, kind, namespace, selector).map_err(from_wit)
    }

    fn from_wit(error: Wit) -> ContextError {
        match error {
            Wit::NotDeclared(text) => ContextError::NotDeclared(text),
            Wit::NotSynced(text) => ContextError::NotSynced(text),
            Wit::UnknownKind(text) => ContextError::UnknownKind(text),
            Wit::InvalidSelector(text) => ContextError::InvalidSelector(text),
        }
    }
}

/// The test cluster of [`crate::testing`], natively.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    pub(super) use crate::testing::cluster::{declared, get, list};
}

#[cfg(test)]
mod tests;
