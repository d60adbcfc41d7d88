//! An audit's results in the cluster, as the ecosystem reads them: the
//! Kubernetes Policy working group's `wgpolicyk8s.io/v1alpha2` PolicyReport
//! (one per namespace) and ClusterPolicyReport (cluster-scoped objects),
//! which Kubewarden, Kyverno and the Policy Reporter UI read too.
//!
//! - **Split in parts.** One object in etcd is at most 1.5 MB by default, and
//!   a namespace with 10,000 Services has more results than that holds: a
//!   namespace's results are ordered (policy, kind, name) and cut into
//!   parts of [`RESULTS_PER_REPORT`], named `wasmhook-audit`,
//!   `wasmhook-audit-2`, …
//! - **Updated in place** by server-side apply (field manager
//!   [`FIELD_MANAGER`]): `results` is an atomic list, so an applied report
//!   holds exactly this run's results — a fixed object's result changes, and
//!   a deleted object's result is gone.
//! - **Pruned**: a report part of wasmhook's (by label) that this run did
//!   not write, in the scope it audited, is deleted.
//! - **Partial runs keep the rest**: with `--policy`, the results of the
//!   set's other policies are read back and kept; with `--namespace`, only
//!   those namespaces' reports are touched. Results of a policy no longer in
//!   the set are dropped.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::{AuditError, AuditReport, Finding, Summary, lister};

/// The reports' API group.
pub const GROUP: &str = "wgpolicyk8s.io";
/// Their version.
pub const VERSION: &str = "v1alpha2";
/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "wasmhook-audit";
/// The name of a scope's first report part.
pub const REPORT_NAME: &str = "wasmhook-audit";
/// The label that marks wasmhook's audit reports (with the value `audit`).
pub const REPORT_LABEL: &str = "wasmhook.dev/report";
/// The most results in one report part (~0.3–0.7 MB).
pub const RESULTS_PER_REPORT: usize = 500;
/// A result's message is cut at this many characters.
const MAX_MESSAGE_CHARS: usize = 1024;

/// Where an audit looked: the reports it may rewrite and prune.
#[derive(Debug, Clone)]
pub struct ReportScope {
    /// Every policy of the set (results of others are dropped).
    pub set_policies: BTreeSet<String>,
    /// The policies this run audited (their results are replaced).
    pub audited_policies: BTreeSet<String>,
    /// The namespaces audited; `None`: all, and cluster-scoped objects.
    pub namespaces: Option<BTreeSet<String>>,
}

impl ReportScope {
    fn covers(&self, namespace: Option<&str>) -> bool {
        match (&self.namespaces, namespace) {
            (None, _) => true,
            (Some(namespaces), Some(namespace)) => namespaces.contains(namespace),
            (Some(_), None) => false,
        }
    }
}

/// What writing the reports did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Report parts applied.
    pub applied: usize,
    /// Report parts deleted.
    pub deleted: usize,
}

/// The two report kinds as the cluster serves them.
#[derive(Debug, Clone)]
pub struct ReportKinds {
    namespaced: ApiResource,
    cluster: ApiResource,
}

impl ReportKinds {
    /// Resolves both kinds, so that an audit whose reports could not be
    /// written fails before it starts, saying how to install the CRDs.
    pub async fn resolve(client: &kube::Client) -> Result<Self, AuditError> {
        Ok(Self {
            namespaced: resolve(client, "PolicyReport").await?,
            cluster: resolve(client, "ClusterPolicyReport").await?,
        })
    }
}

/// Writes `report`'s results as PolicyReports of `kinds`, keeping what
/// `scope` says to keep, and prunes what is left over. `now` is the results'
/// timestamp (seconds since the epoch).
pub async fn write(
    client: &kube::Client,
    kinds: &ReportKinds,
    report: &AuditReport,
    scope: &ReportScope,
    now: i64,
) -> Result<Written, AuditError> {
    let ReportKinds { namespaced, cluster } = kinds;
    let selector = ListParams::default().labels(&format!("{REPORT_LABEL}=audit"));
    let mut existing = lister::list_all(client.clone(), namespaced.clone(), selector.clone(), 100)
        .await
        .map_err(|reason| AuditError::Report(format!("cannot list existing PolicyReports: {reason}")))?;
    if scope.namespaces.is_none() {
        existing.extend(
            lister::list_all(client.clone(), cluster.clone(), selector, 100)
                .await
                .map_err(|reason| AuditError::Report(format!("cannot list existing ClusterPolicyReports: {reason}")))?,
        );
    }
    let existing: Vec<(Option<String>, String, Value)> = existing
        .into_iter()
        .filter_map(|object| {
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let name = object.pointer("/metadata/name")?.as_str()?.to_owned();
            Some((namespace, name, object))
        })
        .filter(|(namespace, _, _)| scope.covers(namespace.as_deref()))
        .collect();

    // Per scope (namespace, or None for the cluster): kept and new results.
    let mut results: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for (namespace, _, object) in &existing {
        let kept = object
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|result| {
                result.get("policy").and_then(Value::as_str).is_some_and(|policy| {
                    scope.set_policies.contains(policy) && !scope.audited_policies.contains(policy)
                })
            })
            .cloned();
        results.entry(namespace.clone()).or_default().extend(kept);
    }
    let modes: BTreeMap<&str, &str> = report
        .policies
        .iter()
        .map(|policy| (&*policy.name, policy.mode.as_str()))
        .collect();
    for finding in &report.results {
        let mode = modes.get(&*finding.policy).copied().unwrap_or("mutate");
        results
            .entry(finding.object.namespace.clone())
            .or_default()
            .push(result(finding, mode, now));
    }

    let mut written = Written::default();
    let mut kept_names: BTreeSet<(Option<String>, String)> = BTreeSet::new();
    for (namespace, mut entries) in results {
        if entries.is_empty() {
            continue;
        }
        entries.sort_by_cached_key(order_key);
        for (part, chunk) in entries.chunks(RESULTS_PER_REPORT).enumerate() {
            let name = part_name(part);
            let (api, kind) = match &namespace {
                Some(namespace) => (
                    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, namespaced),
                    "PolicyReport",
                ),
                None => (
                    Api::<DynamicObject>::all_with(client.clone(), cluster),
                    "ClusterPolicyReport",
                ),
            };
            let object = report_object(kind, namespace.as_deref(), &name, chunk);
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(|error| {
                AuditError::Report(format!(
                    "cannot apply {kind} {}{name}: {}",
                    namespace.as_deref().map(|ns| format!("{ns}/")).unwrap_or_default(),
                    crate::error_chain::error_chain(&error)
                ))
            })?;
            written.applied += 1;
            kept_names.insert((namespace.clone(), name));
        }
    }
    for (namespace, name, _) in existing {
        if kept_names.contains(&(namespace.clone(), name.clone())) {
            continue;
        }
        let api = match &namespace {
            Some(namespace) => Api::<DynamicObject>::namespaced_with(client.clone(), namespace, namespaced),
            None => Api::<DynamicObject>::all_with(client.clone(), cluster),
        };
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => written.deleted += 1,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(AuditError::Report(format!(
                    "cannot delete the stale report {}{name}: {}",
                    namespace.as_deref().map(|ns| format!("{ns}/")).unwrap_or_default(),
                    crate::error_chain::error_chain(&error)
                )));
            }
        }
    }
    Ok(written)
}

/// The report kind's resource, or an error saying how to install the CRD.
async fn resolve(client: &kube::Client, kind: &str) -> Result<ApiResource, AuditError> {
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _)) => Ok(resource),
        Err(error) => Err(AuditError::Report(format!(
            "{GROUP}/{VERSION} {kind} is not served ({}): install the PolicyReport CRDs with `kubectl apply \
             --server-side -k deploy/crds`",
            crate::error_chain::error_chain(&error)
        ))),
    }
}

/// `wasmhook-audit`, `wasmhook-audit-2`, …
fn part_name(part: usize) -> String {
    match part {
        0 => REPORT_NAME.to_owned(),
        _ => format!("{REPORT_NAME}-{}", part + 1),
    }
}

/// Results in a stable order: policy, then the object's kind, name and uid.
fn order_key(result: &Value) -> (String, String, String, String) {
    let text = |pointer: &str| {
        result
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (
        text("/policy"),
        text("/resources/0/kind"),
        text("/resources/0/name"),
        text("/resources/0/uid"),
    )
}

/// One result of a report, as the v1alpha2 schema has it.
fn result(finding: &Finding, mode: &str, now: i64) -> Value {
    let object = &finding.object;
    let mut resource = json!({
        "apiVersion": object.api_version,
        "kind": object.kind,
        "name": object.name,
        "uid": object.uid,
    });
    if let Some(namespace) = &object.namespace {
        resource["namespace"] = json!(namespace);
    }
    let mut properties = serde_json::Map::new();
    properties.insert("mode".into(), json!(mode));
    if let Some(patch) = &finding.patch {
        properties.insert("patch".into(), json!(serde_json::to_string(patch).unwrap_or_default()));
    }
    let mut result = json!({
        "source": "wasmhook",
        "policy": &*finding.policy,
        "result": finding.result.as_str(),
        "scored": true,
        "timestamp": {"seconds": now, "nanos": 0},
        "resources": [resource],
        "properties": properties,
    });
    if !finding.message.is_empty() {
        let message: String = finding.message.chars().take(MAX_MESSAGE_CHARS).collect();
        result["message"] = json!(message);
    }
    result
}

/// A report part holding `results`.
fn report_object(kind: &str, namespace: Option<&str>, name: &str, results: &[Value]) -> Value {
    let mut summary = Summary::default();
    let mut skip = 0;
    for result in results {
        match result.get("result").and_then(Value::as_str) {
            Some("pass") => summary.pass += 1,
            Some("warn") => summary.warn += 1,
            Some("fail") => summary.fail += 1,
            Some("error") => summary.error += 1,
            _ => skip += 1,
        }
    }
    let mut metadata = json!({
        "name": name,
        "labels": {
            "app.kubernetes.io/managed-by": "wasmhook",
            REPORT_LABEL: "audit",
        },
    });
    if let Some(namespace) = namespace {
        metadata["namespace"] = json!(namespace);
    }
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": kind,
        "metadata": metadata,
        "summary": {
            "pass": summary.pass,
            "fail": summary.fail,
            "warn": summary.warn,
            "error": summary.error,
            "skip": skip,
        },
        "results": results,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::{ObjectRef, Verdict};

    #[test]
    fn a_result_has_the_schemas_fields_and_a_report_counts_them() {
        let finding = Finding {
            policy: Arc::from("headless-service"),
            object: ObjectRef {
                namespace: Some("default".into()),
                kind: "Service".into(),
                name: "web-headless".into(),
                api_version: "v1".into(),
                uid: "1234".into(),
            },
            result: Verdict::Fail,
            message: "x".repeat(2000),
            patch: Some(
                serde_json::from_value(json!([{"op": "replace", "path": "/spec/clusterIP", "value": "None"}]))
                    .expect("a patch"),
            ),
        };
        let result = result(&finding, "mutate", 1_700_000_000);
        assert_eq!(result["policy"], "headless-service");
        assert_eq!(result["result"], "fail");
        assert_eq!(result["timestamp"], json!({"seconds": 1_700_000_000, "nanos": 0}));
        assert_eq!(
            result["resources"],
            json!([{"apiVersion": "v1", "kind": "Service", "namespace": "default", "name": "web-headless", "uid": "1234"}])
        );
        assert_eq!(result["properties"]["mode"], "mutate");
        assert_eq!(
            result["properties"]["patch"],
            r#"[{"op":"replace","path":"/spec/clusterIP","value":"None"}]"#
        );
        assert_eq!(
            result["message"].as_str().map(|m| m.chars().count()),
            Some(MAX_MESSAGE_CHARS)
        );

        // The schema has no nullable field: a cluster-scoped object's
        // reference leaves the namespace out.
        let mut cluster_scoped = finding.clone();
        cluster_scoped.object.namespace = None;
        let cluster_result = super::result(&cluster_scoped, "validate", 1);
        assert!(
            cluster_result["resources"][0].get("namespace").is_none(),
            "{cluster_result}"
        );
        let cluster_report = report_object("ClusterPolicyReport", None, "wasmhook-audit", &[cluster_result]);
        assert!(
            cluster_report["metadata"].get("namespace").is_none(),
            "{cluster_report}"
        );

        let report = report_object(
            "PolicyReport",
            Some("default"),
            "wasmhook-audit",
            &[result.clone(), result],
        );
        assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(report["metadata"]["namespace"], "default");
        assert_eq!(report["metadata"]["labels"][REPORT_LABEL], "audit");
        assert_eq!(
            report["summary"],
            json!({"pass": 0, "fail": 2, "warn": 0, "error": 0, "skip": 0})
        );
    }

    #[test]
    fn parts_are_named_in_order_and_scopes_cover_what_was_audited() {
        assert_eq!(
            (0..3).map(part_name).collect::<Vec<_>>(),
            ["wasmhook-audit", "wasmhook-audit-2", "wasmhook-audit-3"]
        );
        let everything = ReportScope {
            set_policies: BTreeSet::new(),
            audited_policies: BTreeSet::new(),
            namespaces: None,
        };
        assert!(everything.covers(None) && everything.covers(Some("shop")));
        let shop = ReportScope {
            namespaces: Some(BTreeSet::from(["shop".to_owned()])),
            ..everything
        };
        assert!(shop.covers(Some("shop")));
        assert!(
            !shop.covers(Some("default")),
            "another namespace's report is left alone"
        );
        assert!(!shop.covers(None), "the cluster report is left alone");
    }
}
