//! The StatefulSets that depend on a Service, read from the cluster context:
//! a StatefulSet's pods get their DNS names through the Service its
//! `spec.serviceName` names, so deleting that Service, or changing its
//! selector away from the pods, breaks them — and `serviceName` cannot be
//! changed to point elsewhere.
//!
//! Without context for StatefulSets (`declared` says so before anything is
//! read) nothing is checked: the policy then works exactly as it did before
//! it could read the cluster.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmhook_policy::context::{self, ContextError};
use wasmhook_policy::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use wasmhook_policy::{Metadata, NamespacedName, PolicyError, Request, Verdict};

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

/// What to do when a request breaks a StatefulSet that names the Service
/// (`statefulSetChecks` in the settings); both warn by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct StatefulSetChecks {
    /// A DELETE of a Service that a StatefulSet names in `spec.serviceName`.
    pub delete: Enforcement,
    /// An UPDATE whose new `spec.selector` no longer selects the pod
    /// template labels of a StatefulSet that names the Service.
    pub selector_change: Enforcement,
}

/// A StatefulSet that names the Service: its name and its pods' labels.
struct Dependent {
    name: String,
    pod_labels: BTreeMap<String, String>,
}

/// The verdict on a DELETE of a Service.
pub(crate) fn on_delete(request: &Request<'_>, checks: &StatefulSetChecks) -> Result<Verdict, PolicyError> {
    if !has_context() {
        return Ok(Verdict::allow());
    }
    let (Some(namespace), Some(name)) = (request.namespace(), service_name(request)?) else {
        return Ok(Verdict::allow());
    };
    let dependents = match dependents(namespace, &name) {
        Ok(dependents) => dependents,
        Err(error) if error.is_not_declared() => return Ok(Verdict::allow()),
        Err(error) => return Ok(Verdict::allow().with_warning(cannot_check(&error))),
    };
    if dependents.is_empty() {
        return Ok(Verdict::allow());
    }
    let (statefulsets, name_it, their) = statefulsets(&dependents);
    let message = format!(
        "{statefulsets} {name_it} this Service in spec.serviceName: {their} pods lose their DNS names; delete \
         the StatefulSet{} first",
        if dependents.len() == 1 { "" } else { "s" }
    );
    let service = NamespacedName::new(Some(namespace), &name);
    Ok(apply(checks.delete, service, Verdict::allow(), message))
}

/// The verdict on an UPDATE of a Service, given the verdict of the headless
/// rules (an allow, possibly mutating).
pub(crate) fn on_update(
    request: &Request<'_>,
    checks: &StatefulSetChecks,
    verdict: Verdict,
) -> Result<Verdict, PolicyError> {
    if !has_context() {
        return Ok(verdict);
    }
    let new = request
        .object_at::<BTreeMap<String, String>>("/spec/selector")?
        .unwrap_or_default();
    let old = request
        .old_object_at::<BTreeMap<String, String>>("/spec/selector")?
        .unwrap_or_default();
    if new == old {
        return Ok(verdict);
    }
    let (Some(namespace), Some(name)) = (request.namespace(), service_name(request)?) else {
        return Ok(verdict);
    };
    let dependents = match dependents(namespace, &name) {
        Ok(dependents) => dependents,
        Err(error) if error.is_not_declared() => return Ok(verdict),
        Err(error) => return Ok(verdict.with_warning(cannot_check(&error))),
    };
    // Those the old selector selected: a selector that never selected a
    // StatefulSet's pods is not what this change breaks.
    let broken: Vec<Dependent> = dependents
        .into_iter()
        .filter(|dependent| selects(&old, &dependent.pod_labels) && !selects(&new, &dependent.pod_labels))
        .collect();
    if broken.is_empty() {
        return Ok(verdict);
    }
    let pods: Vec<String> = broken
        .iter()
        .map(|dependent| {
            format!(
                "the pods ({}) of StatefulSet {:?}",
                labels(&dependent.pod_labels),
                dependent.name
            )
        })
        .collect();
    let message = format!(
        "selector {} no longer selects {}, whose serviceName this is: keep {}",
        labels(&new),
        pods.join(" and "),
        labels(&old)
    );
    let service = NamespacedName::new(Some(namespace), &name);
    Ok(apply(checks.selector_change, service, verdict, message))
}

/// The Service's name: the request's (a DELETE carries it), or the name in
/// the old object.
fn service_name(request: &Request<'_>) -> Result<Option<String>, PolicyError> {
    match request.name() {
        Some(name) => Ok(Some(name.to_owned())),
        None => request.old_object_at::<String>("/metadata/name"),
    }
}

/// Whether the policy set lets this policy read StatefulSets: without, the
/// checks do not apply, and asking is cheaper than a refused read. Built
/// without the feature, the policy does not import the cluster-context
/// interface at all.
fn has_context() -> bool {
    cfg!(feature = "cluster-context") && context::declared_kind(STATEFULSET.0, STATEFULSET.1).is_some()
}

/// The apiVersion and kind the checks read.
const STATEFULSET: (&str, &str) = ("apps/v1", "StatefulSet");

/// The StatefulSets in `namespace` whose `spec.serviceName` is `service`.
fn dependents(namespace: &str, service: &str) -> Result<Vec<Dependent>, ContextError> {
    let statefulsets =
        context::list_as::<StatefulSetView>(STATEFULSET.0, STATEFULSET.1, Some(namespace), &LabelSelector::default())?;
    Ok(statefulsets
        .into_iter()
        .filter_map(|StatefulSetView { metadata, spec }| {
            let spec = spec?;
            (spec.service_name.as_deref() == Some(service)).then(|| Dependent {
                name: metadata.name.unwrap_or_default(),
                pod_labels: spec.template.metadata.labels,
            })
        })
        .collect())
}

/// The parts of a StatefulSet the checks read, in one pass: a view, not
/// k8s-openapi's `StatefulSet`, whose deserializer (a whole pod template)
/// would triple the size of the component.
#[derive(Deserialize, Default)]
#[serde(default)]
struct StatefulSetView {
    metadata: Metadata,
    spec: Option<StatefulSetSpecView>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct StatefulSetSpecView {
    service_name: Option<String>,
    template: TemplateView,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TemplateView {
    metadata: Metadata,
}

/// A finding as a warning on `verdict`, or a denial that names the Service
/// in front. A warning says what is wrong and what to do in at most about
/// 120 characters, the length Kubernetes recommends (the server trims longer
/// ones): kubectl reports it for the Service, so it does not name it.
fn apply(enforcement: Enforcement, service: NamespacedName<'_>, verdict: Verdict, message: String) -> Verdict {
    match enforcement {
        Enforcement::Warn => verdict.with_warning(message),
        Enforcement::Deny => Verdict::deny(format!("Service {service}: {message}")),
    }
}

/// The warning for StatefulSets that could not be read.
fn cannot_check(error: &ContextError) -> String {
    format!("StatefulSets not checked: {error}")
}

/// `StatefulSet "web"` or `StatefulSets "web" and "db"`, with the matching
/// verb (`names`, `name`) and possessive (`its`, `their`).
fn statefulsets(dependents: &[Dependent]) -> (String, &'static str, &'static str) {
    let names: Vec<String> = dependents
        .iter()
        .map(|dependent| format!("{:?}", dependent.name))
        .collect();
    match names.as_slice() {
        [one] => (format!("StatefulSet {one}"), "names", "its"),
        [first @ .., last] => (format!("StatefulSets {} and {last}", first.join(", ")), "name", "their"),
        [] => (String::new(), "name", "their"),
    }
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
