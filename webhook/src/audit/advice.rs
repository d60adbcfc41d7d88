//! What a mutating policy would change in an existing object, in words an
//! operator acts on: each change (`set spec.clusterIP to None`), then what to
//! do — and whether the change can be made at all. Many fields a policy
//! fixes at creation are immutable afterwards (a Service's cluster IP, most
//! of a StatefulSet's spec): for those the only fix is to delete and
//! re-create the object, and the finding says so instead of suggesting an
//! update the API server would refuse.

use json_patch::{Patch, PatchOperation};
use serde_json::Value;

/// The longest value shown in a change before it is cut.
const MAX_VALUE_CHARS: usize = 60;

/// The object a finding is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `v1`, `apps/v1`.
    pub api_version: &'a str,
    /// `Service`.
    pub kind: &'a str,
    /// The object's name.
    pub name: &'a str,
    /// The object as it is in the cluster.
    pub object: &'a Value,
}

/// `would set spec.clusterIP to None: <what to do>`, for a policy whose
/// `patch` changes `subject`; `on_update` says whether the policy also sees
/// the object's updates (and so makes the change at the next one).
pub fn describe(subject: Subject<'_>, patch: &Patch, on_update: bool) -> String {
    let changes: Vec<String> = patch.0.iter().map(change).collect();
    let advice = match immutable(subject, patch) {
        Some(reason) => format!("{reason}: {}", recreate(subject)),
        None if on_update => "the policy makes this change at the object's next update (apply it again)".to_owned(),
        None => format!(
            "the policy changes {} objects only when they are created: re-create it, or make the change yourself",
            subject.kind
        ),
    };
    format!("would {}: {advice}", changes.join(", "))
}

/// One operation in words.
fn change(operation: &PatchOperation) -> String {
    match operation {
        PatchOperation::Add(op) => format!("set {} to {}", field(op.path.as_str()), show(&op.value)),
        PatchOperation::Replace(op) => format!("set {} to {}", field(op.path.as_str()), show(&op.value)),
        PatchOperation::Remove(op) => format!("remove {}", field(op.path.as_str())),
        PatchOperation::Move(op) => format!("move {} to {}", field(op.from.as_str()), field(op.path.as_str())),
        PatchOperation::Copy(op) => format!("copy {} to {}", field(op.from.as_str()), field(op.path.as_str())),
        PatchOperation::Test(op) => format!("require {} to be {}", field(op.path.as_str()), show(&op.value)),
    }
}

/// The path an operation changes (its target; `from` is only read).
fn target(operation: &PatchOperation) -> &str {
    match operation {
        PatchOperation::Add(op) => op.path.as_str(),
        PatchOperation::Replace(op) => op.path.as_str(),
        PatchOperation::Remove(op) => op.path.as_str(),
        PatchOperation::Move(op) => op.path.as_str(),
        PatchOperation::Copy(op) => op.path.as_str(),
        PatchOperation::Test(op) => op.path.as_str(),
    }
}

/// A JSON pointer as a field path: `/spec/ports/0/port` → `spec.ports[0].port`,
/// `/metadata/labels/app.kubernetes.io~1name` → `metadata.labels["app.kubernetes.io/name"]`.
pub fn field(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|byte| byte.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else if segment.is_empty() || segment.contains(['.', '/', '"', ' ', '[', ']']) {
            path.push_str(&format!("[{}]", Value::String(segment)));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    if path.is_empty() { "the object".to_owned() } else { path }
}

/// A value as a reader expects it: a plain word bare (`None`), anything else
/// as compact JSON, cut at [`MAX_VALUE_CHARS`].
fn show(value: &Value) -> String {
    let plain = |text: &str| {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            && !matches!(text, "true" | "false" | "null")
            && text.parse::<f64>().is_err()
    };
    let text = match value {
        Value::String(text) if plain(text) => text.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_VALUE_CHARS {
        let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Why `patch` cannot be applied to `subject` in place, if it cannot: the
/// fields the API server refuses to change after creation.
fn immutable(subject: Subject<'_>, patch: &Patch) -> Option<String> {
    let group = subject.api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let paths = patch.0.iter().map(target);
    let spec_field = |path: &str| {
        path.strip_prefix("/spec/").map(|rest| {
            rest.split('/')
                .next()
                .unwrap_or(rest)
                .replace("~1", "/")
                .replace("~0", "~")
        })
    };
    let kind = subject.kind;
    for path in paths {
        let Some(top) = spec_field(path) else { continue };
        let refused = match (group, kind) {
            ("", "Service") => {
                let has_cluster_ip = subject
                    .object
                    .pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .is_some_and(|ip| !ip.is_empty());
                (matches!(top.as_str(), "clusterIP" | "clusterIPs") && has_cluster_ip)
                    .then(|| "a Service's cluster IP cannot be changed or removed once set".to_owned())
            }
            ("apps", "StatefulSet") => (!matches!(
                top.as_str(),
                "replicas"
                    | "template"
                    | "updateStrategy"
                    | "persistentVolumeClaimRetentionPolicy"
                    | "minReadySeconds"
                    | "ordinals"
            ))
            .then(|| format!("a StatefulSet's spec.{top} cannot be changed after creation")),
            ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") | ("batch", "Job") if top == "selector" => {
                Some(format!("a {kind}'s spec.selector cannot be changed after creation"))
            }
            ("batch", "Job") if top == "template" => {
                Some("a Job's spec.template cannot be changed after creation".to_owned())
            }
            ("", "PersistentVolumeClaim") if top != "resources" && top != "volumeAttributesClassName" => Some(format!(
                "a PersistentVolumeClaim's spec.{top} cannot be changed after creation"
            )),
            _ => None,
        };
        if refused.is_some() {
            return refused;
        }
    }
    None
}

/// How to re-create `subject` with the least disruption.
fn recreate(subject: Subject<'_>) -> String {
    let name = subject.name;
    match subject.kind {
        "StatefulSet" | "Deployment" | "ReplicaSet" | "DaemonSet" => format!(
            "delete it with `kubectl delete {} {name} --cascade=orphan` (its pods keep running) and re-create it",
            subject.kind.to_lowercase()
        ),
        kind => format!("delete and re-create the {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patch(operations: Value) -> Patch {
        serde_json::from_value(operations).expect("a JSON Patch")
    }

    #[test]
    fn a_cluster_ip_cannot_be_removed_so_the_service_must_be_recreated() {
        let service = json!({"spec": {"clusterIP": "10.0.0.12", "clusterIPs": ["10.0.0.12"]}});
        let subject = Subject {
            api_version: "v1",
            kind: "Service",
            name: "web-headless",
            object: &service,
        };
        let change = patch(json!([
            {"op": "replace", "path": "/spec/clusterIP", "value": "None"},
            {"op": "replace", "path": "/spec/clusterIPs", "value": ["None"]},
        ]));
        assert_eq!(
            describe(subject, &change, true),
            "would set spec.clusterIP to None, set spec.clusterIPs to [\"None\"]: a Service's cluster IP \
             cannot be changed or removed once set: delete and re-create the Service"
        );
    }

    #[test]
    fn a_statefulsets_service_name_needs_an_orphaning_delete() {
        let statefulset = json!({"spec": {"serviceName": ""}});
        let subject = Subject {
            api_version: "apps/v1",
            kind: "StatefulSet",
            name: "web",
            object: &statefulset,
        };
        let change = patch(json!([{"op": "replace", "path": "/spec/serviceName", "value": "web-headless"}]));
        assert_eq!(
            describe(subject, &change, false),
            "would set spec.serviceName to web-headless: a StatefulSet's spec.serviceName cannot be changed \
             after creation: delete it with `kubectl delete statefulset web --cascade=orphan` (its pods keep \
             running) and re-create it"
        );
    }

    #[test]
    fn a_mutable_change_says_when_the_policy_makes_it() {
        let deployment = json!({"metadata": {"labels": {}}});
        let subject = Subject {
            api_version: "apps/v1",
            kind: "Deployment",
            name: "api",
            object: &deployment,
        };
        let change = patch(json!([
            {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1team", "value": "unowned"},
            {"op": "remove", "path": "/spec/template/spec/containers/0/ports/1"},
        ]));
        assert_eq!(
            describe(subject, &change, true),
            "would set metadata.labels[\"app.kubernetes.io/team\"] to unowned, remove \
             spec.template.spec.containers[0].ports[1]: the policy makes this change at the object's next \
             update (apply it again)"
        );
        assert_eq!(
            describe(subject, &change, false),
            "would set metadata.labels[\"app.kubernetes.io/team\"] to unowned, remove \
             spec.template.spec.containers[0].ports[1]: the policy changes Deployment objects only when they \
             are created: re-create it, or make the change yourself"
        );
    }

    #[test]
    fn values_that_could_be_misread_are_json() {
        assert_eq!(show(&json!("true")), "\"true\"");
        assert_eq!(show(&json!("8080")), "\"8080\"");
        assert_eq!(show(&json!("two words")), "\"two words\"");
        assert_eq!(show(&json!(3)), "3");
        let long = "x".repeat(100);
        assert_eq!(show(&json!(long)), format!("{}…", "x".repeat(60)));
        assert_eq!(field(""), "the object");
    }
}
