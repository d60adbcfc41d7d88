//! [`ClusterObjects`]: the cluster a policy's native unit tests read through
//! [`crate::context`], in place of the server's watch caches.
//!
//! The objects live in a per-thread slot for the duration of one evaluation
//! ([`ClusterObjects::run`], or [`TestRequest::with_cluster`] which calls
//! it), so tests running in parallel never see each other's cluster. With no
//! cluster set, every read is `NotDeclared`: what a policy sees on a server
//! whose policy set declares no `context:` for it.
//!
//! [`TestRequest::with_cluster`]: super::TestRequest::with_cluster

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde::Serialize;
use serde_json::Value;

/// The annotation the server strips from context objects.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Objects by namespace (`""` for cluster-scoped objects), then by name: the
/// order `list` returns them in.
type Objects = BTreeMap<String, BTreeMap<String, Value>>;

/// The objects of a test cluster, and which kinds a policy may read of it.
///
/// Build one with [`ClusterObjects::new`] and the `with_*` methods, or from
/// the objects alone (an array or `Vec` of JSON values, or an iterator of
/// them): every kind is then readable. Give it to a request with
/// [`TestRequest::with_cluster`](super::TestRequest::with_cluster).
///
/// - [`ClusterObjects::declare`] limits reads to the kinds declared, as a
///   policy set's `context:` does; reading another kind is `NotDeclared`.
///   Without a declaration every kind may be read.
/// - [`ClusterObjects::not_synced`] and [`ClusterObjects::unknown_kind`] make
///   reads of a kind fail as the server's do while its first list is
///   running, or when the cluster serves no such kind.
/// - Objects are stored as the server stores them: without
///   `metadata.managedFields` and kubectl's last-applied annotation. Reads of
///   a kind with no objects find nothing (`None`, an empty list).
///
/// Not modelled: `scope: RequestNamespace` (every namespace is readable).
///
/// ```
/// use wasmhook_policy::context::{self, ContextError};
/// use wasmhook_policy::k8s_openapi::api::core::v1::ConfigMap;
/// use wasmhook_policy::serde_json::json;
/// use wasmhook_policy::testing::ClusterObjects;
///
/// let cluster = ClusterObjects::new()
///     .with_object(json!({
///         "apiVersion": "v1", "kind": "ConfigMap",
///         "metadata": {"name": "settings", "namespace": "shop"},
///         "data": {"mode": "strict"},
///     }))
///     .declare("v1", "ConfigMap");
/// cluster.run(|| {
///     let found = context::get::<ConfigMap>(Some("shop"), "settings").unwrap().unwrap();
///     assert_eq!(found.data.unwrap()["mode"], "strict");
///     assert!(context::get::<ConfigMap>(Some("dev"), "settings").unwrap().is_none());
///     let error = context::get_json("v1", "Secret", Some("shop"), "token").unwrap_err();
///     assert!(error.is_not_declared(), "{error}");
/// });
/// // Outside `run`, nothing is declared.
/// assert!(matches!(context::get::<ConfigMap>(Some("shop"), "settings"), Err(ContextError::NotDeclared(_))));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a ClusterObjects does nothing until a request is evaluated with it"]
pub struct ClusterObjects {
    /// By `"{apiVersion} {kind}"`.
    objects: BTreeMap<String, Objects>,
    /// `None`: every kind is declared.
    declared: Option<BTreeSet<String>>,
    failures: BTreeMap<String, Failure>,
}

/// How reads of a kind fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    NotSynced,
    UnknownKind,
}

impl ClusterObjects {
    /// An empty cluster in which every kind may be read.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `object` (any serializable value: a `json!` literal or a
    /// k8s-openapi type), replacing an object of the same kind, namespace
    /// and name. A cluster-scoped object is one without
    /// `metadata.namespace`.
    ///
    /// # Panics
    ///
    /// If the object does not serialize to JSON with a string `apiVersion`,
    /// `kind` and `metadata.name`.
    #[track_caller]
    pub fn with_object(mut self, object: impl Serialize) -> Self {
        let mut object = match serde_json::to_value(object) {
            Ok(object) => object,
            Err(error) => panic!("cannot serialize a cluster object to JSON: {error}"),
        };
        let field = |value: &Value, pointer: &str| value.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        let (Some(api_version), Some(kind), Some(name)) = (
            field(&object, "/apiVersion"),
            field(&object, "/kind"),
            field(&object, "/metadata/name"),
        ) else {
            panic!("a cluster object needs a string apiVersion, kind and metadata.name: {object}");
        };
        let namespace = field(&object, "/metadata/namespace").unwrap_or_default();
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
            if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove(LAST_APPLIED);
            }
        }
        self.objects
            .entry(kind_key(&api_version, &kind))
            .or_default()
            .entry(namespace)
            .or_default()
            .insert(name, object);
        self
    }

    /// Adds every object of `objects`, as [`ClusterObjects::with_object`].
    ///
    /// # Panics
    ///
    /// As [`ClusterObjects::with_object`].
    #[track_caller]
    pub fn with_objects<I>(self, objects: I) -> Self
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        objects.into_iter().fold(self, Self::with_object)
    }

    /// Declares that the policy may read `kind` in `api_version`, as an
    /// entry of its `context:` in a policy set does. Once one kind is
    /// declared, reading any other is `NotDeclared`.
    pub fn declare(mut self, api_version: &str, kind: &str) -> Self {
        self.declared
            .get_or_insert_with(BTreeSet::new)
            .insert(kind_key(api_version, kind));
        self
    }

    /// Makes reads of `kind` fail with `NotSynced`, as the server's do until
    /// its first list of the kind has finished.
    pub fn not_synced(mut self, api_version: &str, kind: &str) -> Self {
        self.failures.insert(kind_key(api_version, kind), Failure::NotSynced);
        self
    }

    /// Makes reads of `kind` fail with `UnknownKind`, as the server's do
    /// when the cluster serves no such kind.
    pub fn unknown_kind(mut self, api_version: &str, kind: &str) -> Self {
        self.failures.insert(kind_key(api_version, kind), Failure::UnknownKind);
        self
    }

    /// Runs `read` with this cluster as what [`crate::context`] reads on
    /// this thread, and restores the previous one (usually none) afterwards,
    /// even if `read` panics. For evaluations [`TestRequest`] does not
    /// build, such as [`evaluate_review`]:
    /// `cluster.run(|| testing::evaluate_review::<P>(review, settings))`.
    ///
    /// [`TestRequest`]: super::TestRequest
    /// [`evaluate_review`]: super::evaluate_review
    pub fn run<R>(&self, read: impl FnOnce() -> R) -> R {
        let previous = CLUSTER.with(|slot| slot.replace(Some(Rc::new(self.clone()))));
        let _restore = Restore(previous);
        read()
    }
}

impl<const N: usize> From<[Value; N]> for ClusterObjects {
    /// A cluster of these objects, in which every kind may be read.
    #[track_caller]
    fn from(objects: [Value; N]) -> Self {
        Self::new().with_objects(objects)
    }
}

impl From<Vec<Value>> for ClusterObjects {
    /// A cluster of these objects, in which every kind may be read.
    #[track_caller]
    fn from(objects: Vec<Value>) -> Self {
        Self::new().with_objects(objects)
    }
}

impl FromIterator<Value> for ClusterObjects {
    /// A cluster of these objects, in which every kind may be read.
    #[track_caller]
    fn from_iter<I: IntoIterator<Item = Value>>(objects: I) -> Self {
        Self::new().with_objects(objects)
    }
}

fn kind_key(api_version: &str, kind: &str) -> String {
    format!("{api_version} {kind}")
}

thread_local! {
    /// The cluster [`crate::context`] reads natively on this thread.
    static CLUSTER: RefCell<Option<Rc<ClusterObjects>>> = const { RefCell::new(None) };
}

/// Puts the previous cluster back when a [`ClusterObjects::run`] ends.
struct Restore(Option<Rc<ClusterObjects>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CLUSTER.with(|slot| *slot.borrow_mut() = previous);
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{declared, get, list};

/// The reads, natively: what [`crate::context`] calls instead of the import.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use serde_json::Value;

    use super::{CLUSTER, ClusterObjects, Failure, Objects, kind_key};
    use crate::context::{ContextError, Scope};
    use crate::selector;

    impl ClusterObjects {
        /// The objects of `kind` (`None`: there are none), or why the policy may
        /// not read them.
        fn check(&self, api_version: &str, kind_name: &str) -> Result<Option<&Objects>, ContextError> {
            let kind = kind_key(api_version, kind_name);
            if let Some(declared) = &self.declared
                && !declared.contains(&kind)
            {
                let list: Vec<&str> = declared.iter().map(String::as_str).collect();
                return Err(ContextError::NotDeclared(format!(
                    "{kind} is not declared for this policy (declared: {}): add `- {{apiVersion: {api_version}, kind: \
                 {kind_name}}}` to its context: in the policy set",
                    list.join(", ")
                )));
            }
            match self.failures.get(&kind) {
                Some(Failure::NotSynced) => Err(ContextError::NotSynced(format!(
                    "{kind}: the first list from the test cluster has not finished yet"
                ))),
                Some(Failure::UnknownKind) => Err(ContextError::UnknownKind(format!(
                    "{kind}: the test cluster holds no such kind"
                ))),
                None => Ok(self.objects.get(&kind)),
            }
        }
    }

    /// `cluster-context.declared`, answered from the test cluster: every
    /// kind it lets the policy read is declared for the whole cluster.
    pub(crate) fn declared(api_version: &str, kind: &str) -> Option<Scope> {
        let cluster: Option<Rc<ClusterObjects>> = CLUSTER.with(|slot| slot.borrow().clone());
        let readable = match cluster?.declared.as_ref() {
            Some(declared) => declared.contains(&kind_key(api_version, kind)),
            None => true,
        };
        readable.then_some(Scope::Cluster)
    }

    /// `cluster-context.get`, answered from the test cluster.
    pub(crate) fn get(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, ContextError> {
        read(api_version, kind, |objects| {
            objects
                .and_then(|objects| objects.get(namespace.unwrap_or_default()))
                .and_then(|named| named.get(name))
                .map(Value::to_string)
        })
    }

    /// `cluster-context.list`, answered from the test cluster: the selector
    /// is parsed from JSON and matched as the API server matches it.
    pub(crate) fn list(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<String>, ContextError> {
        read(api_version, kind, |objects| {
            let selector = parse_selector(label_selector)?;
            let in_scope: Vec<&BTreeMap<String, Value>> = match (objects, namespace) {
                (None, _) => Vec::new(),
                (Some(objects), Some(namespace)) => objects.get(namespace).into_iter().collect(),
                (Some(objects), None) => objects.values().collect(),
            };
            Ok(in_scope
                .into_iter()
                .flat_map(BTreeMap::values)
                .filter(|object| selector::matches(&selector, &labels(object)))
                .map(Value::to_string)
                .collect())
        })?
    }

    /// `read` of the objects of a kind the policy may read (`None`: there
    /// are none), or why it may not read them.
    fn read<R>(api_version: &str, kind: &str, read: impl FnOnce(Option<&Objects>) -> R) -> Result<R, ContextError> {
        let cluster: Option<Rc<ClusterObjects>> = CLUSTER.with(|slot| slot.borrow().clone());
        let Some(cluster) = cluster else {
            // The server's answer to a policy whose entry in the policy set
            // declares no `context:`.
            return Err(ContextError::NotDeclared(format!(
                "this policy declares no context: add `context: [{{apiVersion: {api_version}, kind: {kind}}}]` to \
                 its entry in the policy set to read {}",
                kind_key(api_version, kind)
            )));
        };
        cluster.check(api_version, kind).map(read)
    }

    /// Parses a `LabelSelector` as JSON, as the server does: `""` selects all.
    fn parse_selector(json: &str) -> Result<LabelSelector, ContextError> {
        if json.trim().is_empty() {
            return Ok(LabelSelector::default());
        }
        let invalid = |reason: String| {
            ContextError::InvalidSelector(format!(
                "label selector {json:?}: {reason} (expected a LabelSelector as JSON: {{\"matchLabels\": {{...}}, \
                 \"matchExpressions\": [...]}})"
            ))
        };
        let selector: LabelSelector = serde_json::from_str(json).map_err(|error| invalid(error.to_string()))?;
        selector::validate(&selector).map_err(invalid)?;
        Ok(selector)
    }

    /// An object's labels (none when absent or malformed).
    fn labels(object: &Value) -> BTreeMap<String, String> {
        object["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
            .collect()
    }
}
