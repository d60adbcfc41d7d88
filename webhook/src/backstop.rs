//! The backstop: the built-in policies' validating rules as Kubernetes
//! ValidatingAdmissionPolicies (`wasmhook manifests --backstop`), which the
//! API server evaluates itself — so they hold while no wasmhook pod answers.
//!
//! Operators must pick a webhook `failurePolicy`. `Fail` blocks every
//! Service and StatefulSet write the webhooks match while wasmhook is
//! unreachable; `Ignore` lets through exactly the objects the built-ins
//! exist to stop, whose wrong fields (`clusterIP`, `serviceName`) are
//! immutable. A ValidatingAdmissionPolicy cannot mutate, but it cannot be
//! unreachable either: generated from the same policy set, it refuses what
//! the webhook would have refused or fixed, with the same words, so
//! `Ignore` becomes a safe choice. With the webhook up it changes nothing:
//! the API server runs validating admission after every mutating webhook,
//! so the backstop sees the object wasmhook already fixed.
//!
//! One ValidatingAdmissionPolicy (and its binding) per built-in policy of
//! the set whose rules CEL can express; a policy whose backstop another
//! already is (a `-verify` twin with the same settings and rules) adds none.
//! Each carries the policy's settings as CEL constants, its rules (the
//! operations the backstop checks), its `namespaceSelector` with the
//! exclusions every wasmhook webhook has, its `objectSelector` and its
//! `matchConditions`. Its one validation is `variables.problem == ''`, where
//! `problem` is the policy's first denial in the built-in's own words
//! (`headless`, `service_name`), and its
//! `failurePolicy` is `Fail`: an expression that cannot be evaluated must
//! not let an object through.

mod cel;
mod headless;
mod service_name;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    NamedRuleWithOperations, RuleWithOperations, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::builtin::ModuleSource;
use crate::config::{PolicyConfig, PolicySet};
use crate::policy::Action;
use crate::registration::{self, RegistrationError};

/// The annotation that names the policies of the set a backstop stands for.
pub const POLICIES_ANNOTATION: &str = "wasmhook.dev/backstop-for";

/// The API version of the generated objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiVersion {
    /// `admissionregistration.k8s.io/v1`: Kubernetes 1.30 and later.
    #[default]
    V1,
    /// `admissionregistration.k8s.io/v1beta1`: Kubernetes 1.28 and 1.29,
    /// with the `ValidatingAdmissionPolicy` feature gate and the API version
    /// enabled (`--runtime-config=admissionregistration.k8s.io/v1beta1=true`).
    V1beta1,
}

impl ApiVersion {
    /// The `apiVersion` of the objects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "admissionregistration.k8s.io/v1",
            Self::V1beta1 => "admissionregistration.k8s.io/v1beta1",
        }
    }
}

/// Why a backstop cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BackstopError {
    /// A built-in policy's settings are not what the policy accepts.
    #[error("policy {policy:?}: invalid settings for {module}: {message}")]
    Settings {
        /// The policy.
        policy: String,
        /// The built-in.
        module: String,
        /// What is wrong.
        message: String,
    },
    /// The namespace or Service name is not valid, or the objects could not
    /// be written.
    #[error(transparent)]
    Registration(#[from] RegistrationError),
}

/// The backstop of a policy set.
#[derive(Debug, Clone, PartialEq)]
pub struct Backstop {
    /// One per built-in policy whose rules CEL can express, in policy-set
    /// order.
    pub policies: Vec<BackstopPolicy>,
    /// The policies without one, and why.
    pub left_out: Vec<LeftOut>,
}

/// A ValidatingAdmissionPolicy and its binding.
#[derive(Debug, Clone, PartialEq)]
pub struct BackstopPolicy {
    /// The name of both objects: `<service>-<policy>`.
    pub name: String,
    /// The policies of the set it stands for: the first, then those with
    /// the same checks and no wider rules (a `-verify` twin), which have no
    /// backstop of their own.
    pub covers: Vec<String>,
    /// The policy's spec.
    pub spec: ValidatingAdmissionPolicySpec,
}

/// A policy of the set that has no backstop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The policy.
    pub policy: String,
    /// Why.
    pub reason: String,
}

/// A CEL variable of a ValidatingAdmissionPolicy.
#[derive(Debug, Clone, PartialEq)]
struct Variable {
    name: &'static str,
    expression: String,
}

impl Variable {
    fn new(name: &'static str, expression: impl Into<String>) -> Self {
        Self {
            name,
            expression: expression.into(),
        }
    }
}

/// What a built-in's backstop checks: the operations it judges, and the
/// variables, the last of which is `problem` (the denial, or `''`).
#[derive(Debug, Clone, PartialEq)]
struct Checks {
    operations: &'static [&'static str],
    variables: Vec<Variable>,
}

impl Backstop {
    /// The backstop of `set`, for wasmhook running as `service` in
    /// `namespace` (excluded from every policy, as from every webhook).
    pub fn build(set: &PolicySet, namespace: &str, service: &str) -> Result<Self, BackstopError> {
        registration::check_namespace(namespace)?;
        registration::check_service_name(service)?;
        let mut backstop = Self {
            policies: Vec::new(),
            left_out: Vec::new(),
        };
        for policy in &set.policies {
            let leave_out = |reason: String| LeftOut {
                policy: policy.name.clone(),
                reason,
            };
            let (module, checks) = match checks(policy)? {
                Ok(checks) => checks,
                Err(reason) => {
                    backstop.left_out.push(leave_out(reason));
                    continue;
                }
            };
            let rules = resource_rules(&policy.rules, checks.operations);
            if rules.is_empty() {
                backstop.left_out.push(leave_out(format!(
                    "its rules select no {} of a resource: nothing the backstop can judge (the rest needs the \
                     cluster, and stays with the webhook)",
                    checks.operations.join(" or ")
                )));
                continue;
            }
            let candidate = BackstopPolicy {
                name: format!("{service}-{}", policy.name),
                covers: vec![policy.name.clone()],
                spec: spec(policy, module, namespace, checks, rules),
            };
            match backstop
                .policies
                .iter_mut()
                .find(|earlier| earlier.includes(&candidate))
            {
                Some(earlier) => earlier.covers.push(policy.name.clone()),
                None => backstop.policies.push(candidate),
            }
        }
        Ok(backstop)
    }

    /// The objects as a YAML stream for `kubectl apply -f`: a comment that
    /// names `source`, what each backstop stands for and what has none, then
    /// each ValidatingAdmissionPolicy followed by its binding.
    pub fn to_yaml(&self, source: &str, version: ApiVersion) -> Result<String, BackstopError> {
        let mut yaml = format!(
            "# The built-in policies' backstop, generated by `wasmhook manifests --backstop` from {source}:\n\
             # ValidatingAdmissionPolicies ({}) that the API server evaluates\n\
             # itself, so the built-ins' rules hold while wasmhook does not answer.\n",
            version.as_str()
        );
        for policy in &self.policies {
            yaml.push_str(&format!("#   {}: {}\n", policy.name, policy.covers.join(", ")));
        }
        if self.policies.is_empty() {
            yaml.push_str("# No policy of the set can be backed up: nothing to apply.\n");
        }
        yaml.push_str(
            "# Only the webhook checks what reads the cluster (context:), warns, or concerns a subresource.\n\
             # Where a built-in would fix an object, its backstop refuses it and says what to write.\n",
        );
        for left_out in &self.left_out {
            yaml.push_str(&format!(
                "#   no backstop for {}: {}\n",
                left_out.policy, left_out.reason
            ));
        }
        for policy in &self.policies {
            let (definition, binding) = policy.objects();
            for (what, object) in [
                ("a ValidatingAdmissionPolicy", to_value(&definition, version)),
                ("a ValidatingAdmissionPolicyBinding", to_value(&binding, version)),
            ] {
                yaml.push_str("---\n");
                yaml.push_str(&registration::yaml_document(what, &object)?);
            }
        }
        Ok(yaml)
    }
}

impl BackstopPolicy {
    /// The ValidatingAdmissionPolicy and the binding that makes it deny.
    pub fn objects(&self) -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
        let metadata = ObjectMeta {
            name: Some(self.name.clone()),
            labels: Some(labels()),
            annotations: Some(BTreeMap::from([(
                POLICIES_ANNOTATION.to_owned(),
                self.covers.join(","),
            )])),
            ..ObjectMeta::default()
        };
        let definition = ValidatingAdmissionPolicy {
            metadata: metadata.clone(),
            spec: Some(self.spec.clone()),
            status: None,
        };
        let binding = ValidatingAdmissionPolicyBinding {
            metadata,
            spec: Some(ValidatingAdmissionPolicyBindingSpec {
                policy_name: Some(self.name.clone()),
                validation_actions: Some(vec!["Deny".to_owned()]),
                ..ValidatingAdmissionPolicyBindingSpec::default()
            }),
        };
        (definition, binding)
    }

    /// The requests it judges (`matchConstraints.resourceRules`).
    pub fn resource_rules(&self) -> Vec<NamedRuleWithOperations> {
        self.spec
            .match_constraints
            .as_ref()
            .and_then(|constraints| constraints.resource_rules.clone())
            .unwrap_or_default()
    }

    /// Whether this backstop already judges everything `other` would: the
    /// same checks and selectors, and rules at least as wide.
    fn includes(&self, other: &BackstopPolicy) -> bool {
        let without_rules = |policy: &BackstopPolicy| {
            let mut spec = policy.spec.clone();
            if let Some(constraints) = &mut spec.match_constraints {
                constraints.resource_rules = None;
            }
            spec
        };
        without_rules(self) == without_rules(other)
            && other
                .resource_rules()
                .iter()
                .all(|inner| covered(inner, &self.resource_rules()))
    }
}

/// The built-in of `policy` and its checks, or why it has none.
fn checks(policy: &PolicyConfig) -> Result<Result<(&'static str, Checks), String>, BackstopError> {
    let ModuleSource::Builtin(module) = &policy.module else {
        return Ok(Err(format!(
            "{} is not a built-in policy: its decisions are Wasm code, which CEL cannot express",
            policy.module.display_name()
        )));
    };
    if policy.enforcement.action == Action::Monitor {
        return Ok(Err(
            "action monitor: it never denies, so there is nothing to back up".to_owned()
        ));
    }
    let checks = match *module {
        "headless-service" => headless::checks(&settings::<::headless_service::HeadlessService>(policy)?),
        "statefulset-service-name" => {
            service_name::checks(&settings::<::statefulset_service_name::StatefulSetServiceName>(policy)?)
        }
        other => return Ok(Err(format!("built-in {other} has no CEL form"))),
    };
    Ok(Ok((module, checks)))
}

/// The built-in `P`'s settings of `policy`, parsed and validated by the
/// SDK's own path — the one the component's `validate-settings` takes — so a
/// backstop is never made of settings the webhook would refuse.
fn settings<P: wasmhook_policy::Policy>(policy: &PolicyConfig) -> Result<P::Settings, BackstopError> {
    wasmhook_policy::guest::run_validate_settings::<P>(&policy.settings_json()).map_err(|message| {
        BackstopError::Settings {
            policy: policy.name.clone(),
            module: policy.module.display_name(),
            message,
        }
    })
}

/// The policy's rules, narrowed to `operations` (a wildcard becomes them)
/// and to whole resources (the built-ins judge no subresource): rules left
/// with no operation or resource are dropped.
fn resource_rules(rules: &[RuleWithOperations], operations: &[&str]) -> Vec<NamedRuleWithOperations> {
    rules
        .iter()
        .filter_map(|rule| {
            let selected: Vec<String> = operations
                .iter()
                .filter(|operation| rule.operations.iter().flatten().any(|op| op == "*" || op == *operation))
                .map(|operation| (*operation).to_owned())
                .collect();
            let resources: Vec<String> = rule
                .resources
                .iter()
                .flatten()
                .filter_map(|resource| match resource.as_str() {
                    "*/*" => Some("*".to_owned()),
                    resource if resource.contains('/') => None,
                    resource => Some(resource.to_owned()),
                })
                .collect();
            (!selected.is_empty() && !resources.is_empty()).then(|| NamedRuleWithOperations {
                api_groups: rule.api_groups.clone(),
                api_versions: rule.api_versions.clone(),
                operations: Some(selected),
                resources: Some(resources),
                scope: rule.scope.clone(),
                resource_names: None,
            })
        })
        .collect()
}

/// Whether every request `inner` matches, one of `outer` matches too.
fn covered(inner: &NamedRuleWithOperations, outer: &[NamedRuleWithOperations]) -> bool {
    let values = |list: &Option<Vec<String>>| list.clone().unwrap_or_default();
    let within =
        |wide: &Option<Vec<String>>, value: &String| values(wide).iter().any(|item| item == "*" || item == value);
    let scope_within = |wide: &Option<String>, narrow: &Option<String>| match wide.as_deref() {
        None | Some("*") => true,
        wide => wide == narrow.as_deref(),
    };
    let mut requests = Vec::new();
    for operation in values(&inner.operations) {
        for group in values(&inner.api_groups) {
            for version in values(&inner.api_versions) {
                for resource in values(&inner.resources) {
                    requests.push((operation.clone(), group.clone(), version.clone(), resource));
                }
            }
        }
    }
    requests.iter().all(|(operation, group, version, resource)| {
        outer.iter().any(|rule| {
            within(&rule.operations, operation)
                && within(&rule.api_groups, group)
                && within(&rule.api_versions, version)
                && within(&rule.resources, resource)
                && scope_within(&rule.scope, &inner.scope)
        })
    })
}

/// The ValidatingAdmissionPolicy's spec for `policy`.
fn spec(
    policy: &PolicyConfig,
    module: &str,
    namespace: &str,
    checks: Checks,
    rules: Vec<NamedRuleWithOperations>,
) -> ValidatingAdmissionPolicySpec {
    use k8s_openapi::api::admissionregistration::v1::{MatchResources, Variable as CelVariable};

    ValidatingAdmissionPolicySpec {
        failure_policy: Some("Fail".to_owned()),
        match_constraints: Some(MatchResources {
            resource_rules: Some(rules),
            namespace_selector: Some(registration::namespace_selector(
                policy.namespace_selector.as_ref(),
                namespace,
            )),
            object_selector: policy.object_selector.clone(),
            match_policy: Some("Equivalent".to_owned()),
            exclude_resource_rules: None,
        }),
        match_conditions: (!policy.match_conditions.is_empty()).then(|| policy.match_conditions.clone()),
        variables: Some(
            checks
                .variables
                .into_iter()
                .map(|variable| CelVariable {
                    name: variable.name.to_owned(),
                    expression: variable.expression,
                })
                .collect(),
        ),
        validations: Some(vec![Validation {
            expression: "variables.problem == ''".to_owned(),
            // `string()`: the variables read `object`, whose type is dynamic.
            message_expression: Some("string(variables.problem)".to_owned()),
            // Said only if the message cannot be evaluated; the same for
            // every policy of a built-in, so twins share one backstop.
            message: Some(format!(
                "the object does not satisfy wasmhook's built-in policy {module}"
            )),
            reason: Some("Forbidden".to_owned()),
        }]),
        param_kind: None,
        audit_annotations: None,
    }
}

/// The labels of the generated objects.
fn labels() -> BTreeMap<String, String> {
    let mut labels = registration::labels();
    labels.insert("app.kubernetes.io/component".to_owned(), "backstop".to_owned());
    labels
}

/// An object as JSON, with `apiVersion` set to `version`: the objects of
/// v1beta1 and v1 have the same fields.
fn to_value<T: serde::Serialize>(object: &T, version: ApiVersion) -> Value {
    let mut value = serde_json::to_value(object).expect("k8s-openapi objects serialize");
    value["apiVersion"] = Value::from(version.as_str());
    value
}
