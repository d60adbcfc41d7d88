//! The Service a StatefulSet names, read from the cluster context: does it
//! exist, is it headless, does it select the StatefulSet's pods — what the
//! API server cannot check, because the two objects are created separately.
//!
//! Without context for Services (`declared` says so before any read) there
//! are no findings: the policy then works exactly as it did before it could
//! read the cluster.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmhook_policy::context::{self, ContextError};
use wasmhook_policy::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// What to do about a finding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Enforcement {
    /// An admission warning: the request is allowed (and mutated, if it was
    /// to be), and kubectl shows the warning.
    #[default]
    Warn,
    /// The request is denied with the finding as its message.
    Deny,
}

/// What to do about each finding on the Service (`serviceChecks` in the
/// settings); every one warns by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceChecks {
    /// (a) There is no Service of that name in the namespace.
    pub missing: Enforcement,
    /// (b) The Service is not headless (`spec.clusterIP` is not `None`).
    pub not_headless: Enforcement,
    /// (c) The Service's selector does not select the pod template's labels.
    pub selector_mismatch: Enforcement,
}

/// What the checks need of the StatefulSet under review.
pub(crate) struct StatefulSet<'a> {
    pub namespace: &'a str,
    pub selector: &'a LabelSelector,
    pub template_labels: &'a BTreeMap<String, String>,
    /// `podManagementPolicy: Parallel`.
    pub parallel: bool,
}

impl StatefulSet<'_> {
    /// The labels that identify its pods, for the Service to select: the
    /// selector's `matchLabels` (stable across versions of the template), or
    /// the template's labels when the selector has only expressions.
    fn pod_identity(&self) -> &BTreeMap<String, String> {
        match &self.selector.match_labels {
            Some(labels) if !labels.is_empty() => labels,
            _ => self.template_labels,
        }
    }
}

/// The findings, sorted by what to do with them. Each says what is wrong
/// and what to change in at most about 120 characters, the length
/// Kubernetes recommends for a warning (the server trims longer ones): the
/// StatefulSet is the object kubectl reports the warning for, so it is not
/// named, and a denial adds it in front.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// The findings set to deny, in the order (a)–(c).
    pub denials: Vec<String>,
    /// Admission warnings.
    pub warnings: Vec<String>,
}

impl Findings {
    fn add(&mut self, enforcement: Enforcement, message: String) {
        match enforcement {
            Enforcement::Warn => self.warnings.push(message),
            Enforcement::Deny => self.denials.push(message),
        }
    }
}

/// Reads the Service `service_name` in the StatefulSet's namespace and
/// checks it.
pub(crate) fn check(statefulset: &StatefulSet<'_>, service_name: &str, checks: &ServiceChecks) -> Findings {
    let mut findings = Findings::default();
    // Without context the check does not apply: asking is cheaper than a
    // read refused as not declared. Built without the feature, the policy
    // does not import the cluster-context interface at all.
    if !cfg!(feature = "cluster-context") || context::declared_kind("v1", "Service").is_none() {
        return findings;
    }
    let service = match context::get_as::<ServiceView>("v1", "Service", Some(statefulset.namespace), service_name) {
        Ok(service) => service,
        Err(error) if error.is_not_declared() => return findings,
        Err(error) => {
            findings.warnings.push(cannot_check(service_name, &error));
            return findings;
        }
    };
    let named = format!("Service {service_name:?} (spec.serviceName)");
    let pods = labels(statefulset.pod_identity());

    let Some(service) = service else {
        findings.add(
            checks.missing,
            format!("{named} does not exist: create it with clusterIP: None, selecting {pods}"),
        );
        return findings;
    };
    let spec = service.spec.unwrap_or_default();
    let external_name = spec.type_.as_deref() == Some("ExternalName");
    let headless = spec.cluster_ip.as_deref() == Some("None");

    if !headless {
        // A cluster IP cannot be changed: the fix is a new Service.
        let why = match (external_name, spec.cluster_ip.as_deref()) {
            (true, _) => "type ExternalName".to_owned(),
            (false, Some(ip)) if !ip.is_empty() => format!("clusterIP {ip}"),
            (false, _) => "no clusterIP: None".to_owned(),
        };
        findings.add(
            checks.not_headless,
            format!("{named} is not headless ({why}): re-create it with clusterIP: None"),
        );
    }

    // An ExternalName Service selects nothing by design; (b) said what to do.
    let service_selector = spec.selector.unwrap_or_default();
    if !external_name && !selects(&service_selector, statefulset.template_labels) {
        let template = labels(statefulset.template_labels);
        let message = if service_selector.is_empty() {
            format!("{named} has no selector, so none of these pods ({template}): make it select {pods}")
        } else {
            format!(
                "{named} selects {}, not these pods ({template}): make it select {pods}",
                labels(&service_selector)
            )
        };
        findings.add(checks.selector_mismatch, message);
    }

    if headless && statefulset.parallel && spec.publish_not_ready_addresses != Some(true) {
        findings.warnings.push(format!(
            "pods started in parallel find each other only if Service {service_name:?} sets \
             publishNotReadyAddresses: true"
        ));
    }
    findings
}

/// The parts of a Service the checks read, in one pass: a view, not
/// k8s-openapi's `Service`, whose deserializer would add half the size of
/// the component.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceView {
    spec: Option<ServiceSpecView>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ServiceSpecView {
    #[serde(rename = "type")]
    type_: Option<String>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    selector: Option<BTreeMap<String, String>>,
    publish_not_ready_addresses: Option<bool>,
}

/// The warning for a Service that could not be read.
fn cannot_check(service_name: &str, error: &ContextError) -> String {
    format!("Service {service_name:?} not checked: {error}")
}

/// Whether a Service selector selects pods with `labels`: a Service selector
/// is equality-based, and an empty one selects nothing.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// Labels as `kubectl -l` writes them: `app=web,tier=db` (`<none>` when
/// there are none).
fn labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "<none>".to_owned();
    }
    let pairs: Vec<String> = labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
    pairs.join(",")
}
