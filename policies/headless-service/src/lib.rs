//! # headless-service — make the Services that should be headless headless
//!
//! A StatefulSet's pods get stable DNS names (`web-0.web-headless.ns.svc`)
//! only through a headless Service (`clusterIP: None`). This policy selects
//! the Services that must be headless — by name suffix or prefix, or by label
//! selector — and, on CREATE, sets `clusterIP: None` (and `clusterIPs:
//! ["None"]`, which the API server requires to agree). What cannot be fixed by
//! a patch is denied with a message that says what to change:
//!
//! - a selected Service that asks for a concrete cluster IP, or is of type
//!   NodePort or LoadBalancer;
//! - an UPDATE of a selected Service that is not headless: cluster IPs are
//!   immutable, so it must be deleted and re-created;
//! - an UPDATE that turns a selected ExternalName Service into a ClusterIP one
//!   without `clusterIP: None` (the API server would allocate an address).
//!
//! ExternalName Services are allowed untouched, and so are DELETE requests
//! unless the StatefulSet checks below apply.
//!
//! ## StatefulSets, with cluster context
//!
//! When the policy set declares `context: [{apiVersion: apps/v1, kind:
//! StatefulSet}]` for this policy (scope `Cluster` or `RequestNamespace`:
//! only the request's namespace is read), the policy also protects the
//! StatefulSets in the Service's namespace that name it in
//! `spec.serviceName` — whose pods get their DNS names through it:
//!
//! - `delete`: deleting such a Service is warned about (default) or denied,
//!   naming the StatefulSets;
//! - `selectorChange`: an UPDATE that changes the Service's `spec.selector`
//!   so that it no longer selects the pod template labels of such a
//!   StatefulSet (its old selector did) is warned about or denied, naming
//!   the StatefulSets and their labels.
//!
//! These apply to **every** Service a StatefulSet names, whether or not the
//! name suffixes, prefixes and selector of the settings select it (only
//! `skipNamespaces` exempts it): a StatefulSet depends on its Service
//! whatever the Service is called. The StatefulSets are read only on a
//! DELETE and on an UPDATE whose selector changed.
//!
//! Without `context:` (the read is refused as not declared) the policy
//! behaves exactly as without these checks: DELETE is allowed untouched.
//! When the StatefulSets cannot be read — the server's cache has not
//! finished its first list — one warning says so and why; nothing is
//! denied. The cache lags the API server by the watch's latency, so a
//! StatefulSet created a moment ago may not be seen yet.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmhook_policy::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use wasmhook_policy::{NamespacedName, Operation, Policy, PolicyError, Request, Verdict, selector};

pub mod messages;
mod statefulsets;

pub use messages::Selection;
pub use statefulsets::{Enforcement, StatefulSetChecks};

/// The label that marks a Service as headless under the default settings.
pub const HEADLESS_LABEL: &str = "wasmhook.dev/headless";

/// Which Services must be headless, and how to treat them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// A Service whose name ends with one of these must be headless.
    pub name_suffixes: Vec<String>,
    /// A Service whose name starts with one of these must be headless.
    pub name_prefixes: Vec<String>,
    /// A Service whose labels match this selector must be headless; `null`
    /// turns label selection off (an empty selector, which would select every
    /// Service, is rejected).
    pub selector: Option<LabelSelector>,
    /// Namespaces whose Services are never touched.
    pub skip_namespaces: Vec<String>,
    /// Also set `publishNotReadyAddresses: true` on selected Services, so
    /// peers find each other before they are ready (typical for databases
    /// that form a cluster).
    pub publish_not_ready_addresses: bool,
    /// What to do when a DELETE or a selector change breaks a StatefulSet
    /// that names the Service, when the policy has cluster context (see the
    /// crate documentation).
    pub stateful_set_checks: StatefulSetChecks,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name_suffixes: vec!["-headless".into()],
            name_prefixes: Vec::new(),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(HEADLESS_LABEL.into(), "true".into())])),
                ..Default::default()
            }),
            skip_namespaces: Vec::new(),
            publish_not_ready_addresses: false,
            stateful_set_checks: StatefulSetChecks::default(),
        }
    }
}

/// The policy.
pub struct HeadlessService;

impl Policy for HeadlessService {
    type Settings = Settings;

    fn validate_settings(settings: &Settings) -> Result<(), String> {
        if let Some(index) = settings.name_suffixes.iter().position(String::is_empty) {
            return Err(format!("nameSuffixes[{index}] is empty: it would select every Service"));
        }
        if let Some(index) = settings.name_prefixes.iter().position(String::is_empty) {
            return Err(format!("namePrefixes[{index}] is empty: it would select every Service"));
        }
        if let Some(label_selector) = &settings.selector {
            selector::validate(label_selector).map_err(|error| format!("selector: {error}"))?;
            // An empty selector matches every Service, like an empty suffix.
            if label_selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && label_selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
            {
                return Err(
                    "selector is empty: it would select every Service (use null to turn label selection off)".into(),
                );
            }
        }
        if settings.name_suffixes.is_empty() && settings.name_prefixes.is_empty() && settings.selector.is_none() {
            return Err("the settings select no Service: set nameSuffixes, namePrefixes or selector".into());
        }
        Ok(())
    }

    fn evaluate(request: &Request<'_>, settings: &Settings) -> Result<Verdict, PolicyError> {
        let kind = request.kind();
        let is_service = kind.group.is_empty() && kind.kind == "Service";
        if !is_service || request.sub_resource().is_some() {
            return Ok(Verdict::allow());
        }
        if request
            .namespace()
            .is_some_and(|namespace| settings.skip_namespaces.iter().any(|skip| skip == namespace))
        {
            return Ok(Verdict::allow());
        }
        if request.operation() == Operation::Delete {
            return statefulsets::on_delete(request, &settings.stateful_set_checks);
        }
        let verdict = make_headless(request, settings)?;
        if request.operation() == Operation::Update && verdict.is_allowed() {
            return statefulsets::on_update(request, &settings.stateful_set_checks, verdict);
        }
        Ok(verdict)
    }
}

wasmhook_policy::export_policy!(HeadlessService);

/// The verdict on a CREATE or UPDATE of a Service: make it headless if the
/// settings select it, or deny what a patch cannot fix.
fn make_headless(request: &Request<'_>, settings: &Settings) -> Result<Verdict, PolicyError> {
    // A name that selects the Service spares reading its metadata (the
    // managed fields are most of a recorded Service); the labels are read
    // only when the selector must decide, in one pass with the spec.
    let name = request.object_name()?;
    let (reason, spec) = match name_selection(&name, settings) {
        Some(reason) => match request.object()? {
            Some(ServiceView { spec }) => (reason, spec),
            None => return Ok(Verdict::allow()),
        },
        None => {
            let Some(label_selector) = &settings.selector else {
                return Ok(Verdict::allow());
            };
            let Some(LabelledServiceView { metadata, spec }) = request.object()? else {
                return Ok(Verdict::allow());
            };
            if !selector::matches(label_selector, &metadata.labels.unwrap_or_default()) {
                return Ok(Verdict::allow());
            }
            (Selection::Labels, spec)
        }
    };
    let display = NamespacedName::new(request.namespace(), &name);

    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    match service_type {
        "ExternalName" => return Ok(Verdict::allow()),
        "ClusterIP" => {}
        other => {
            return Ok(Verdict::deny(messages::wrong_type(&display, &reason, &other)));
        }
    }

    let concrete_ip = concrete_cluster_ip(&spec).or_else(|| {
        // An UPDATE that omits the cluster IP keeps the allocated one.
        (request.operation() == Operation::Update)
            .then(|| request.old_object_at::<SpecView>("/spec").ok().flatten())
            .flatten()
            .and_then(|old| concrete_cluster_ip(&old))
    });
    if let Some(ip) = concrete_ip {
        // A CREATE of an object that has a resourceVersion is no real
        // CREATE (the API server refuses one): it is an object already
        // stored, as `wasmhook audit` sends it, and it can only be re-created.
        let stored = request
            .object_at::<String>("/metadata/resourceVersion")
            .ok()
            .flatten()
            .is_some_and(|version| !version.is_empty());
        let message = match request.operation() {
            Operation::Create if !stored => messages::cluster_ip_requested(&display, &reason, &ip),
            _ => messages::cluster_ip_allocated(&display, &reason, &ip),
        };
        return Ok(Verdict::deny(message));
    }

    let already_headless = spec.cluster_ip.as_deref() == Some("None");
    if request.operation() == Operation::Update && !already_headless && was_external_name(request) {
        // The one UPDATE that allocates a cluster IP: clusterIP is not yet
        // set, so it is not immutable — but the fix is the user's to make.
        return Ok(Verdict::deny(messages::external_name_to_cluster_ip(&display, &reason)));
    }
    let mut object = request.mutable_object()?;
    if request.operation() == Operation::Create && !already_headless {
        object.set("/spec/clusterIP", "None")?;
        object.set("/spec/clusterIPs", vec!["None"])?;
    }
    if settings.publish_not_ready_addresses {
        object.set("/spec/publishNotReadyAddresses", true)?;
    }
    Ok(Verdict::mutate(object))
}

/// The part of a Service this policy reads when its name selects it: the
/// metadata, ports and status are skipped, not allocated.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceView {
    spec: SpecView,
}

/// What it reads when the selector decides: the labels too, in the same pass.
#[derive(Deserialize, Default)]
#[serde(default)]
struct LabelledServiceView {
    metadata: LabelsView,
    spec: SpecView,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LabelsView {
    /// `null` reads as none, as Kubernetes treats it.
    labels: Option<BTreeMap<String, String>>,
}

/// The fields of a Service's spec this policy reads (k8s-openapi's names).
#[derive(Deserialize, Default)]
#[serde(default)]
struct SpecView {
    #[serde(rename = "type")]
    type_: Option<String>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Option<Vec<String>>,
}

/// Whether the Service's name selects it, and why.
fn name_selection<'s>(name: &str, settings: &'s Settings) -> Option<Selection<'s>> {
    if let Some(suffix) = settings
        .name_suffixes
        .iter()
        .find(|suffix| name.ends_with(suffix.as_str()))
    {
        return Some(Selection::NameSuffix(suffix));
    }
    settings
        .name_prefixes
        .iter()
        .find(|prefix| name.starts_with(prefix.as_str()))
        .map(|prefix| Selection::NamePrefix(prefix))
}

/// Whether the old version of an updated Service was of type ExternalName.
fn was_external_name(request: &Request<'_>) -> bool {
    request.old_object_at::<String>("/spec/type").ok().flatten().as_deref() == Some("ExternalName")
}

/// The first cluster IP that is an address (not `None`, not empty).
fn concrete_cluster_ip(spec: &SpecView) -> Option<String> {
    spec.cluster_ip
        .iter()
        .chain(spec.cluster_ips.iter().flatten())
        .find(|ip| !ip.is_empty() && ip.as_str() != "None")
        .cloned()
}

#[cfg(test)]
mod tests;
