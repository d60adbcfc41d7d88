//! Narrow views of Kubernetes objects, for policies on the hot path.
//!
//! Deserializing a whole k8s-openapi object allocates every field of it —
//! managed fields, annotations such as kubectl's last-applied configuration,
//! status, a pod template. A policy that reads a few fields can instead
//! deserialize a struct of just those fields with
//! [`Request::object`](crate::Request::object): serde reads the object once
//! and skips everything else without allocating. [`Metadata`] is the piece
//! most such views share:
//!
//! ```
//! use serde::Deserialize;
//! use wasmhook_policy::Metadata;
//! use wasmhook_policy::k8s_openapi::api::core::v1::ServiceSpec;
//!
//! /// What a Service policy reads: metadata and spec, not status.
//! #[derive(Deserialize, Default)]
//! #[serde(default)]
//! struct ServiceView {
//!     metadata: Metadata,
//!     spec: ServiceSpec,
//! }
//!
//! let view: ServiceView = serde_json::from_str(
//!     r#"{"metadata":{"name":"web","labels":{"app":"web"},"managedFields":[{"manager":"kubectl"}]},
//!         "spec":{"clusterIP":"None"},"status":{}}"#,
//! )
//! .unwrap();
//! assert_eq!(view.metadata.name.as_deref(), Some("web"));
//! assert_eq!(view.metadata.labels["app"], "web");
//! assert_eq!(view.spec.cluster_ip.as_deref(), Some("None"));
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// The identifying metadata of an object: name, namespace and labels.
/// Annotations and managed fields are skipped (they are often the largest
/// part of an object); add them to your own view if a policy needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Metadata {
    /// `metadata.name`; absent when the API server will generate it.
    pub name: Option<String>,
    /// `metadata.generateName`.
    pub generate_name: Option<String>,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.labels` (empty when absent).
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// `null` reads as the default, as Kubernetes treats it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An object's name as messages give it: `namespace/name`, or the name alone
/// for a cluster-scoped object. Formatted only when it is displayed, so a
/// policy can make one up front and pay only on the paths that say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespacedName<'a> {
    /// The namespace; `None` for a cluster-scoped object.
    pub namespace: Option<&'a str>,
    /// The name.
    pub name: &'a str,
}

impl<'a> NamespacedName<'a> {
    /// The name in `namespace` (an empty namespace is none).
    pub fn new(namespace: Option<&'a str>, name: &'a str) -> Self {
        Self {
            namespace: namespace.filter(|namespace| !namespace.is_empty()),
            name,
        }
    }
}

impl fmt::Display for NamespacedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespaced_name_reads_as_kubectl_writes_it() {
        assert_eq!(NamespacedName::new(Some("prod"), "web").to_string(), "prod/web");
        assert_eq!(NamespacedName::new(Some(""), "web").to_string(), "web");
        assert_eq!(NamespacedName::new(None, "nodes-a").to_string(), "nodes-a");
    }

    #[test]
    fn absent_and_null_labels_are_empty() {
        let absent: Metadata = serde_json::from_str(r#"{"generateName":"web-"}"#).unwrap();
        assert_eq!(absent.generate_name.as_deref(), Some("web-"));
        assert!(absent.labels.is_empty() && absent.name.is_none());
        let null: Metadata = serde_json::from_str(r#"{"labels":null,"namespace":"n"}"#).unwrap();
        assert!(null.labels.is_empty());
        assert_eq!(null.namespace.as_deref(), Some("n"));
    }
}
