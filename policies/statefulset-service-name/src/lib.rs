//! # statefulset-service-name — pair every StatefulSet with its headless Service
//!
//! A StatefulSet's pods get stable DNS names only through the headless
//! Service named in `spec.serviceName`. This policy, on CREATE:
//!
//! - fills an empty or missing `spec.serviceName` from a template (default
//!   `{name}-headless`, which pairs with the headless-service policy's default
//!   suffix);
//! - denies a `serviceName` that is not a valid DNS-1035 label, with the reason;
//! - denies a `spec.selector` that does not match the pod template's labels,
//!   naming each differing label (the API server's own error comes later and is
//!   cryptic);
//! - warns when the StatefulSet's name is longer than 52 characters: the
//!   `controller-revision-hash` label of its pods would exceed 63 characters and
//!   no pod could be created;
//! - with cluster context (below), checks the Service that `serviceName`
//!   names.
//!
//! `serviceName` is immutable, so UPDATE is never mutated; UPDATE and DELETE
//! are allowed.
//!
//! ## The Service, with cluster context
//!
//! When the policy set declares `context: [{apiVersion: v1, kind: Service}]`
//! for this policy (scope `Cluster` or `RequestNamespace`: only the request's
//! namespace is read), the policy reads the Service that `spec.serviceName`
//! names — as given, or as just filled in — in the StatefulSet's namespace,
//! and reports:
//!
//! - (a) `missing`: there is no such Service;
//! - (b) `notHeadless`: the Service is not headless (`spec.clusterIP` is not
//!   `None`), so the pods get no stable DNS names;
//! - (c) `selectorMismatch`: the Service's `spec.selector` does not select
//!   the pod template's labels (or it has none), naming the labels on both
//!   sides;
//! - (d) always a warning: the Service is headless but does not set
//!   `publishNotReadyAddresses: true` while the StatefulSet starts its pods
//!   in parallel (`podManagementPolicy: Parallel`), so starting pods cannot
//!   find each other by DNS.
//!
//! Each of (a)–(c) is an admission warning by default, or a denial
//! (`serviceChecks: {missing: deny}`); a mutation (the filled-in
//! `serviceName`) is kept along with the warnings. The context is a watch
//! cache, which lags the API server by the watch's latency: a Service
//! created in the same `kubectl apply` as its StatefulSet, or just before,
//! may not be seen yet. That is why `missing` warns by default; deny it only
//! where Services are created well before their StatefulSets.
//!
//! Without `context:` (the read is refused as not declared) the policy
//! behaves exactly as without these checks. When the Service cannot be read
//! — the server's cache has not finished its first list, or the cluster
//! serves no Services — one warning says so and why; nothing is denied.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmhook_policy::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use wasmhook_policy::{
    Metadata, NamespacedName, Operation, Policy, PolicyError, Request, Verdict, selector, validation,
};

pub mod messages;
mod service;

pub use service::{Enforcement, ServiceChecks};

/// Longest StatefulSet name whose pods can be created: the pods'
/// `controller-revision-hash` label is the name plus an 11-character hash
/// suffix, and label values are limited to 63 characters.
pub const MAX_WORKABLE_NAME: usize = 52;

/// How the service name is filled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Template for a missing `serviceName`. `{name}` is the StatefulSet's
    /// name, `{namespace}` its namespace.
    pub service_name_template: String,
    /// Namespaces whose StatefulSets are never touched.
    pub skip_namespaces: Vec<String>,
    /// What to do about each finding on the Service `serviceName` names,
    /// when the policy has cluster context (see the crate documentation).
    pub service_checks: ServiceChecks,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            service_name_template: "{name}-headless".into(),
            skip_namespaces: Vec::new(),
            service_checks: ServiceChecks::default(),
        }
    }
}

/// The policy.
pub struct StatefulSetServiceName;

impl Policy for StatefulSetServiceName {
    type Settings = Settings;

    fn validate_settings(settings: &Settings) -> Result<(), String> {
        let template = &settings.service_name_template;
        if !template.contains("{name}") {
            return Err(format!(
                "serviceNameTemplate {template:?} must contain {{name}}: otherwise every StatefulSet \
                 in a namespace would share one Service"
            ));
        }
        // Render with a sample name so malformed templates fail at load time.
        let sample = render(template, "web", "default")?;
        validation::dns1035_label(&sample)
            .map_err(|reason| format!("serviceNameTemplate {template:?} renders {sample:?}, which {reason}"))
    }

    fn evaluate(request: &Request<'_>, settings: &Settings) -> Result<Verdict, PolicyError> {
        let kind = request.kind();
        let is_statefulset = kind.group == "apps" && kind.kind == "StatefulSet";
        if !is_statefulset || request.operation() != Operation::Create || request.sub_resource().is_some() {
            return Ok(Verdict::allow());
        }
        let namespace = request.namespace().unwrap_or_default();
        if settings.skip_namespaces.iter().any(|skip| skip == namespace) {
            return Ok(Verdict::allow());
        }
        let Some(StatefulSetView { spec }) = request.object()? else {
            return Ok(Verdict::allow());
        };
        // The object's metadata, with its managed fields a third of a recorded
        // StatefulSet, is read only if the request carries no name.
        let name = request.object_name()?;
        let name = name.as_ref();
        let display = NamespacedName::new(Some(namespace), name);
        let SpecView {
            selector,
            service_name,
            template,
            pod_management_policy,
        } = spec;
        let template_labels = template.metadata.labels;

        if let Some(mismatch) = selector_mismatch(&selector, &template_labels) {
            return Ok(Verdict::deny(format!(
                "StatefulSet {display}: spec.selector does not match spec.template.metadata.labels: {mismatch}. \
                 The selector must select the pods the template creates."
            )));
        }

        let (verdict, service_name) = match service_name.filter(|service| !service.is_empty()) {
            Some(service_name) => match validation::dns1035_label(&service_name) {
                Ok(()) => (Verdict::allow(), service_name),
                Err(reason) => {
                    return Ok(Verdict::deny(messages::invalid_service_name(
                        &display,
                        &format_args!("{service_name:?}"),
                        &reason,
                    )));
                }
            },
            None if name.is_empty() => {
                return Ok(Verdict::deny(messages::generated_name_without_service_name(
                    &format_args!("{namespace:?}"),
                )));
            }
            None => {
                let service_name =
                    render(&settings.service_name_template, name, namespace).map_err(PolicyError::other)?;
                if let Err(reason) = validation::dns1035_label(&service_name) {
                    return Ok(Verdict::deny(messages::generated_service_name_invalid(
                        &display,
                        &format_args!("{service_name:?}"),
                        &reason,
                    )));
                }
                let mut object = request.mutable_object()?;
                object.set("/spec/serviceName", service_name.as_str())?;
                (Verdict::mutate(object), service_name)
            }
        };

        let mut warnings = Vec::new();
        if name.len() > MAX_WORKABLE_NAME {
            warnings.push(format!(
                "StatefulSet name {name:?} has {} characters; above {MAX_WORKABLE_NAME} its pods cannot be \
                 created (their controller-revision-hash label would exceed 63 characters)",
                name.len()
            ));
        }
        let statefulset = service::StatefulSet {
            namespace,
            selector: &selector,
            template_labels: &template_labels,
            parallel: pod_management_policy.as_deref() == Some("Parallel"),
        };
        let findings = service::check(&statefulset, &service_name, &settings.service_checks);
        warnings.extend(findings.warnings);
        let verdict = if findings.denials.is_empty() {
            verdict
        } else {
            Verdict::deny(format!("StatefulSet {display}: {}", findings.denials.join("; ")))
        };
        Ok(warnings.into_iter().fold(verdict, Verdict::with_warning))
    }
}

wasmhook_policy::export_policy!(StatefulSetServiceName);

/// The parts of a StatefulSet this policy reads, deserialized in one pass:
/// the pod template's spec (most of the spec), the metadata and the status
/// are skipped, not allocated.
#[derive(Deserialize, Default)]
#[serde(default)]
struct StatefulSetView {
    spec: SpecView,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpecView {
    selector: LabelSelector,
    service_name: Option<String>,
    template: TemplateView,
    pod_management_policy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TemplateView {
    metadata: Metadata,
}

/// Renders the service-name template: `{name}` and `{namespace}` replaced
/// (also what `wasmhook manifests --backstop` renders into CEL).
pub fn render(template: &str, name: &str, namespace: &str) -> Result<String, String> {
    let rendered = template.replace("{name}", name).replace("{namespace}", namespace);
    match rendered.find(['{', '}']) {
        Some(_) => Err(format!(
            "serviceNameTemplate {template:?} has an unknown placeholder (known: {{name}}, {{namespace}})"
        )),
        None => Ok(rendered),
    }
}

/// Describes how the selector fails to match the template labels, or `None`
/// when it matches.
fn selector_mismatch(selector: &LabelSelector, template_labels: &BTreeMap<String, String>) -> Option<String> {
    let differences: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .filter_map(|(key, wanted)| match template_labels.get(key) {
            Some(actual) if actual == wanted => None,
            Some(actual) => Some(format!(
                "label {key:?} is {wanted:?} in the selector but {actual:?} in the template"
            )),
            None => Some(format!(
                "label {key:?}={wanted:?} is in the selector but not in the template"
            )),
        })
        .collect();
    if !differences.is_empty() {
        return Some(differences.join("; "));
    }
    let expressions_only = LabelSelector {
        match_expressions: selector.match_expressions.clone(),
        ..Default::default()
    };
    (!selector::matches(&expressions_only, template_labels))
        .then(|| "the template's labels do not satisfy spec.selector.matchExpressions".to_owned())
}

#[cfg(test)]
mod tests;
