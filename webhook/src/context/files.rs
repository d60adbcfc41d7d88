//! Cluster objects from files, for authors without a cluster: `wasmhook eval
//! --context objects.yaml` and the `context:` section of test suites.
//!
//! A file holds objects as `kubectl get -o yaml` and manifests do: one or
//! more YAML (or JSON) documents, each an object or a `List` (`kind: List`,
//! or any `…List` kind with `items`). The objects fill a [`ContextStore`] —
//! the same store the server's watches fill — so a policy reads them exactly
//! as it would read a cluster's.

use std::path::Path;

use serde_json::Value;

use super::{ContextProvider, ContextStore, Declaration, FileContext, PolicyContext, ResourceKind, Scope};

/// Why objects could not be read; names the file and the document.
#[derive(Debug, thiserror::Error)]
pub enum ContextFileError {
    /// The file could not be read.
    #[error("context file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML or JSON.
    #[error("context file {path}: not YAML or JSON: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// A document is not a Kubernetes object.
    #[error("context file {origin}, document {document}: {reason}")]
    Object {
        /// The file (or suite) the objects came from.
        origin: String,
        /// The document's position, from 1 (`3, item 2` inside a List).
        document: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the objects of the YAML or JSON file at `path`.
pub fn read_objects(path: &Path) -> Result<Vec<Value>, ContextFileError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ContextFileError::Read {
        path: origin.clone(),
        source,
    })?;
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|error| ContextFileError::Syntax {
        path: origin.clone(),
        reason: error.to_string(),
    })?;
    Ok(documents.into_iter().filter(|document| !document.is_null()).collect())
}

/// A store holding `objects` (documents, possibly Lists), every kind in it
/// synced, from `origin` (for messages).
pub fn store_of(origin: &str, documents: Vec<Value>) -> Result<ContextStore, ContextFileError> {
    let store = ContextStore::new(format!("the context objects of {origin}"));
    let mut objects = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        let position = index + 1;
        let kind = document.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind.ends_with("List") && document.get("items").is_some() {
            let Value::Array(items) = document["items"].clone() else {
                return Err(object_error(origin, position.to_string(), "items is not a list"));
            };
            for (item, object) in items.into_iter().enumerate() {
                objects.push((format!("{position}, item {}", item + 1), object));
            }
        } else {
            objects.push((position.to_string(), document));
        }
    }
    let mut by_kind: Vec<(ResourceKind, Vec<Value>)> = Vec::new();
    for (position, object) in objects {
        let kind = kind_of(&object).map_err(|reason| object_error(origin, position.clone(), &reason))?;
        if object.pointer("/metadata/name").and_then(Value::as_str).is_none() {
            return Err(object_error(origin, position, "no metadata.name"));
        }
        match by_kind.iter_mut().find(|(known, _)| *known == kind) {
            Some((_, list)) => list.push(object),
            None => by_kind.push((kind, vec![object])),
        }
    }
    for (kind, objects) in by_kind {
        let failures = store.add_kind(kind.clone()).0.replace(objects);
        if let Some(failure) = failures.into_iter().next() {
            return Err(object_error(origin, kind.to_string(), &failure));
        }
    }
    Ok(store)
}

/// The context of a policy evaluated offline: the objects of `documents`
/// (from `origin`), readable as `declared` says. Without declarations —
/// `wasmhook eval`, a suite whose policy declares none — every kind the
/// documents hold is declared for the whole cluster, and so is each kind of
/// `also` (what a built-in reads), so that a kind with no objects reads as
/// empty rather than undeclared.
pub fn offline_context(
    origin: &str,
    documents: Vec<Value>,
    declared: Option<Vec<Declaration>>,
    also: &[ResourceKind],
) -> Result<PolicyContext, ContextFileError> {
    let store = store_of(origin, documents)?;
    let declarations = declared.unwrap_or_else(|| {
        let mut kinds: Vec<ResourceKind> = store.kinds().into_iter().map(|(kind, _)| kind).collect();
        for kind in also {
            if !kinds.contains(kind) {
                kinds.push(kind.clone());
            }
        }
        kinds
            .into_iter()
            .map(|kind| Declaration {
                kind,
                scope: Scope::Cluster,
            })
            .collect()
    });
    Ok(FileContext::new(store)
        .provide(origin, &declarations)
        .expect("files provide every declared kind"))
}

/// Declares `kinds` in `store` (empty and synced) when the files hold none
/// of them: a policy that lists Services in a context without any sees an
/// empty list, as it would in a cluster without Services.
pub fn ensure_kinds<'k>(store: &ContextStore, kinds: impl IntoIterator<Item = &'k ResourceKind>) {
    for kind in kinds {
        let (cache, added) = store.add_kind(kind.clone());
        if added {
            cache.mark_synced();
        }
    }
}

fn kind_of(object: &Value) -> Result<ResourceKind, String> {
    let field = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("no {name}: every object needs apiVersion and kind"))
    };
    Ok(ResourceKind::new(field("apiVersion")?, field("kind")?))
}

fn object_error(origin: &str, document: String, reason: &str) -> ContextFileError {
    ContextFileError::Object {
        origin: origin.to_owned(),
        document,
        reason: reason.to_owned(),
    }
}
