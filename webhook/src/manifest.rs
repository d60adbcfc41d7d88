//! Builds a realistic AdmissionRequest from plain `kubectl`-style manifests,
//! so policy authors can try a policy on the YAML they already have.
//!
//! The request looks like what the API server sends a webhook: kind and
//! resource from `apiVersion`/`kind`, the namespace filled in, `oldObject` on
//! UPDATE, the object moved to `oldObject` on DELETE, the matching
//! `options` kind, and a fresh uid.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use kube::core::admission::Operation;
use serde_json::{Value, json};

/// Why a manifest cannot become an admission request.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML (or JSON).
    #[error("{file}: not valid YAML: {reason}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's message, with the location.
        reason: String,
    },
    /// The file holds no object or several.
    #[error("{file}: expected exactly one object, found {count} YAML documents")]
    DocumentCount {
        /// The file.
        file: String,
        /// How many documents it holds.
        count: usize,
    },
    /// The object lacks a field every Kubernetes object has.
    #[error("{file}: {field} is missing or not a string")]
    MissingField {
        /// The file.
        file: String,
        /// The field, such as `metadata.name`.
        field: &'static str,
    },
    /// The old object is not the same object.
    #[error("{file}: the old object is {old}, but the object is {new}: an UPDATE compares two versions of one object")]
    DifferentObject {
        /// The old object's file.
        file: String,
        /// The old object's identity.
        old: String,
        /// The new object's identity.
        new: String,
    },
    /// The operation and inputs do not fit together.
    #[error("{0}")]
    Usage(String),
}

/// A manifest file read into one JSON object.
pub fn read_object(path: &Path) -> Result<Value, ManifestError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        file: file.clone(),
        source,
    })?;
    parse_object(&file, &text)
}

/// Parses one object from YAML or JSON text; `file` names it in errors.
pub fn parse_object(file: &str, text: &str) -> Result<Value, ManifestError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|error| ManifestError::Yaml {
        file: file.to_owned(),
        reason: error.to_string(),
    })?;
    let mut documents: Vec<Value> = documents.into_iter().filter(|document| !document.is_null()).collect();
    if documents.len() != 1 {
        return Err(ManifestError::DocumentCount {
            file: file.to_owned(),
            count: documents.len(),
        });
    }
    let object = documents.remove(0);
    for (pointer, field) in [("/apiVersion", "apiVersion"), ("/kind", "kind")] {
        if !object.pointer(pointer).is_some_and(Value::is_string) {
            return Err(ManifestError::MissingField {
                file: file.to_owned(),
                field,
            });
        }
    }
    if !object.pointer("/metadata/name").is_some_and(Value::is_string)
        && !object.pointer("/metadata/generateName").is_some_and(Value::is_string)
    {
        return Err(ManifestError::MissingField {
            file: file.to_owned(),
            field: "metadata.name",
        });
    }
    Ok(object)
}

/// The inputs of a synthetic request.
pub struct RequestSpec {
    /// The object (the new version on UPDATE, the deleted one on DELETE).
    pub object: Value,
    /// The old version, for UPDATE.
    pub old_object: Option<Value>,
    /// CREATE, UPDATE or DELETE.
    pub operation: Operation,
    /// Namespace for namespaced objects that do not name one.
    pub default_namespace: String,
}

/// Builds the `request` member of an AdmissionReview.
pub fn build_request(spec: RequestSpec) -> Result<Value, ManifestError> {
    let RequestSpec {
        mut object,
        old_object,
        operation,
        default_namespace,
    } = spec;
    let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version.as_str()));
    let namespaced = !CLUSTER_SCOPED.contains(&kind.as_str());

    let namespace = namespaced.then(|| {
        object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map_or_else(|| default_namespace.clone(), str::to_owned)
    });
    if let Some(namespace) = &namespace {
        object["metadata"]["namespace"] = json!(namespace);
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    let old_object = match (&operation, old_object) {
        (Operation::Update, Some(mut old)) => {
            if let Some(namespace) = &namespace {
                old["metadata"]
                    .as_object_mut()
                    .map(|metadata| metadata.entry("namespace").or_insert_with(|| json!(namespace)));
            }
            let identity = |value: &Value| {
                format!(
                    "{} {}/{}",
                    value["kind"].as_str().unwrap_or("?"),
                    value
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?")
                )
            };
            if identity(&old) != identity(&object) {
                return Err(ManifestError::DifferentObject {
                    file: "--old".into(),
                    old: identity(&old),
                    new: identity(&object),
                });
            }
            Some(old)
        }
        (Operation::Update, None) => {
            return Err(ManifestError::Usage("an UPDATE needs the old object (--old)".into()));
        }
        (_, Some(_)) => {
            return Err(ManifestError::Usage(format!(
                "--old is only meaningful for UPDATE, not {}",
                crate::review::operation_name(&operation)
            )));
        }
        (_, None) => None,
    };
    let (object, old_object, options_kind) = match operation {
        Operation::Create => (Some(object), None, "CreateOptions"),
        Operation::Update => (Some(object), old_object, "UpdateOptions"),
        Operation::Delete => (None, Some(object), "DeleteOptions"),
        Operation::Connect => {
            return Err(ManifestError::Usage(
                "CONNECT requests cannot be built from a manifest".into(),
            ));
        }
    };
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": plural(&kind)});
    Ok(json!({
        "uid": fresh_uid(),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": name,
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "wasmhook-eval", "groups": ["system:authenticated"]},
        "object": object,
        "oldObject": old_object,
        "dryRun": false,
        "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
    }))
}

/// Kinds of the built-in APIs that are not namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "APIService",
];

/// The resource name of a kind, as the API server's REST mapper derives it
/// for the built-in kinds (`StatefulSet` → `statefulsets`, `Ingress` →
/// `ingresses`, `NetworkPolicy` → `networkpolicies`).
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower == "endpoints" {
        return lower;
    }
    if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if lower.ends_with('s') || lower.ends_with('x') || lower.ends_with("ch") || lower.ends_with("sh") {
        return format!("{lower}es");
    }
    format!("{lower}s")
}

/// A uid in UUID form, unique enough for a request built by hand.
fn fresh_uid() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let digest = crate::engine::sha256_hex(format!("{nanos}-{}", std::process::id()).as_bytes());
    format!(
        "{}-{}-4{}-a{}-{}",
        &digest[0..8],
        &digest[8..12],
        &digest[13..16],
        &digest[17..20],
        &digest[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-headless\nspec:\n  ports:\n  - port: 80\n";

    #[test]
    fn a_create_request_looks_like_the_api_servers() {
        let object = parse_object("svc.yaml", SERVICE).unwrap();
        let request = build_request(RequestSpec {
            object,
            old_object: None,
            operation: Operation::Create,
            default_namespace: "default".into(),
        })
        .unwrap();
        assert_eq!(
            request["kind"],
            json!({"group": "", "version": "v1", "kind": "Service"})
        );
        assert_eq!(request["resource"]["resource"], "services");
        assert_eq!(request["operation"], "CREATE");
        assert_eq!(request["namespace"], "default");
        assert_eq!(request["object"]["metadata"]["namespace"], "default");
        assert_eq!(request["oldObject"], Value::Null);
        assert_eq!(request["options"]["kind"], "CreateOptions");
        assert_eq!(request["uid"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn delete_moves_the_object_to_old_object() {
        let object = parse_object("svc.yaml", SERVICE).unwrap();
        let request = build_request(RequestSpec {
            object,
            old_object: None,
            operation: Operation::Delete,
            default_namespace: "ns".into(),
        })
        .unwrap();
        assert_eq!(request["object"], Value::Null);
        assert_eq!(request["oldObject"]["metadata"]["name"], "web-headless");
    }

    #[test]
    fn update_needs_the_same_object() {
        let object = parse_object("a.yaml", SERVICE).unwrap();
        let other = parse_object("b.yaml", &SERVICE.replace("web-headless", "db")).unwrap();
        let spec = |old| RequestSpec {
            object: object.clone(),
            old_object: old,
            operation: Operation::Update,
            default_namespace: "ns".into(),
        };
        assert!(build_request(spec(None)).unwrap_err().to_string().contains("--old"));
        let error = build_request(spec(Some(other))).unwrap_err().to_string();
        assert!(
            error.contains("Service ns/db") && error.contains("Service ns/web-headless"),
            "{error}"
        );
        assert!(build_request(spec(Some(object.clone()))).is_ok());
    }

    #[test]
    fn bad_manifests_say_what_and_where() {
        let error = parse_object("x.yaml", "kind: [").unwrap_err().to_string();
        assert!(error.starts_with("x.yaml: not valid YAML"), "{error}");
        let error = parse_object("x.yaml", &format!("{SERVICE}---\n{SERVICE}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("found 2 YAML documents"), "{error}");
        let error = parse_object("x.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("metadata.name"), "{error}");
        let error = parse_object("x.yaml", "kind: Service\n").unwrap_err().to_string();
        assert!(error.contains("apiVersion"), "{error}");
    }

    #[test]
    fn plurals_of_builtin_kinds() {
        for (kind, resource) in [
            ("Service", "services"),
            ("StatefulSet", "statefulsets"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Endpoints", "endpoints"),
            ("Gateway", "gateways"),
        ] {
            assert_eq!(plural(kind), resource);
        }
    }
}
