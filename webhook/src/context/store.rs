//! The objects policies read, in memory, by kind: what watches fill in the
//! server and files fill offline, through the same [`KindCache::apply`] and
//! [`KindCache::replace`].
//!
//! Each object is kept as compact JSON text (handed to a policy as it is,
//! without serializing on the review path) with its labels parsed (for
//! `list`), and without what no policy needs: `metadata.managedFields` and
//! the `kubectl.kubernetes.io/last-applied-configuration` annotation, which
//! together are often most of an object's size.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::{ContextError, ContextSource, LabelQuery, ResourceKind};

/// The annotation `kubectl apply` keeps a copy of the whole object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One cached object.
#[derive(Debug, Clone)]
pub struct CachedObject {
    /// The object as compact JSON.
    pub json: Arc<str>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// Namespace (empty for cluster-scoped objects) and name.
type ObjectKey = (String, String);

/// The objects of one kind.
#[derive(Debug, Default)]
pub struct KindCache {
    objects: RwLock<BTreeMap<ObjectKey, CachedObject>>,
    synced: AtomicBool,
}

impl KindCache {
    /// Whether the first full list has been stored.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// How many objects are held.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JSON bytes held (the objects' text, not the map's overhead).
    pub fn json_bytes(&self) -> usize {
        self.read().values().map(|object| object.json.len()).sum()
    }

    /// Stores or replaces `object` (stripped first).
    pub fn apply(&self, object: Value) -> Result<(), String> {
        let (key, cached) = prepare(object)?;
        self.write().insert(key, cached);
        Ok(())
    }

    /// Removes the object `object` names.
    pub fn delete(&self, object: &Value) -> Result<(), String> {
        let key = key_of(object)?;
        self.write().remove(&key);
        Ok(())
    }

    /// Replaces every object with `objects` (a re-list) and marks the cache
    /// synced. Objects that fail to prepare are skipped and returned.
    pub fn replace(&self, objects: impl IntoIterator<Item = Value>) -> Vec<String> {
        let mut failures = Vec::new();
        let mut fresh = BTreeMap::new();
        for object in objects {
            match prepare(object) {
                Ok((key, cached)) => {
                    fresh.insert(key, cached);
                }
                Err(error) => failures.push(error),
            }
        }
        *self.write() = fresh;
        self.synced.store(true, Ordering::Release);
        failures
    }

    /// Marks the cache synced without changing it (for objects applied one
    /// by one, as a watch's initial list is).
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ObjectKey, CachedObject>> {
        self.objects.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ObjectKey, CachedObject>> {
        self.objects.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every cached kind. Objects change through each kind's [`KindCache`]; a
/// kind is added when a policy first declares it (at start-up, or by a
/// reload).
#[derive(Debug, Default)]
pub struct ContextStore {
    kinds: RwLock<HashMap<ResourceKind, Arc<KindCache>>>,
    /// Where the objects come from, for messages (`watches of https://…`,
    /// `context.yaml`).
    origin: String,
}

impl ContextStore {
    /// An empty store of objects from `origin`.
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            kinds: RwLock::default(),
            origin: origin.into(),
        }
    }

    /// The cache of `kind`, and whether it was added by this call.
    pub fn add_kind(&self, kind: ResourceKind) -> (Arc<KindCache>, bool) {
        let mut kinds = self.kinds.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let added = !kinds.contains_key(&kind);
        (kinds.entry(kind).or_default().clone(), added)
    }

    /// The cache of `kind`, if the store has one.
    pub fn kind(&self, kind: &ResourceKind) -> Option<Arc<KindCache>> {
        self.kinds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
            .cloned()
    }

    /// Every kind, in a stable order.
    pub fn kinds(&self) -> Vec<(ResourceKind, Arc<KindCache>)> {
        let kinds = self.kinds.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut kinds: Vec<_> = kinds
            .iter()
            .map(|(kind, cache)| (kind.clone(), cache.clone()))
            .collect();
        kinds.sort_by(|a, b| a.0.cmp(&b.0));
        kinds
    }

    /// Where the objects come from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn cache(&self, kind: &ResourceKind) -> Result<Arc<KindCache>, ContextError> {
        let cache = self
            .kind(kind)
            .ok_or_else(|| ContextError::UnknownKind(format!("{kind}: {} holds no such kind", self.origin)))?;
        if !cache.synced() {
            return Err(ContextError::NotSynced(format!(
                "{kind}: the first list from {} has not finished yet",
                self.origin
            )));
        }
        Ok(cache)
    }
}

impl ContextSource for ContextStore {
    fn get(&self, kind: &ResourceKind, namespace: Option<&str>, name: &str) -> Result<Option<Arc<str>>, ContextError> {
        let cache = self.cache(kind)?;
        let key = (namespace.unwrap_or_default().to_owned(), name.to_owned());
        Ok(cache.read().get(&key).map(|object| object.json.clone()))
    }

    fn list(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        selector: &LabelQuery,
    ) -> Result<Vec<Arc<str>>, ContextError> {
        let cache = self.cache(kind)?;
        let objects = cache.read();
        let selected = |object: &CachedObject| selector.matches(&object.labels);
        Ok(match namespace {
            Some(namespace) => {
                let start = (namespace.to_owned(), String::new());
                objects
                    .range(start..)
                    .take_while(|((object_namespace, _), _)| object_namespace == namespace)
                    .filter(|(_, object)| selected(object))
                    .map(|(_, object)| object.json.clone())
                    .collect()
            }
            None => objects
                .values()
                .filter(|object| selected(object))
                .map(|object| object.json.clone())
                .collect(),
        })
    }
}

/// Strips an object of what policies do not need and keys it.
fn prepare(mut object: Value) -> Result<(ObjectKey, CachedObject), String> {
    strip(&mut object);
    let key = key_of(&object)?;
    let labels = match object.pointer("/metadata/labels") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(labels) => serde_json::from_value(labels.clone())
            .map_err(|error| format!("{}/{}: metadata.labels: {error}", key.0, key.1))?,
    };
    let json = serde_json::to_string(&object).expect("a JSON value serializes");
    Ok((
        key,
        CachedObject {
            json: json.into(),
            labels,
        },
    ))
}

/// Drops `metadata.managedFields` and the last-applied annotation (and the
/// annotations map, when that was its only entry).
pub fn strip(object: &mut Value) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    metadata.remove("managedFields");
    if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
}

fn key_of(object: &Value) -> Result<ObjectKey, String> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or("an object without metadata.name")?;
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok((namespace.to_owned(), name.to_owned()))
}
