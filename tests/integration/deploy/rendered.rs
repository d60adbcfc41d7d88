//! `kubectl kustomize` of a directory under `deploy/`, parsed: every object
//! of the stream as JSON, read back through its k8s-openapi type on demand.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, ValidatingWebhook, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wasmhook::builtin::ModuleSource;
use wasmhook::config::PolicySet;
use wasmhook::engine::EngineConfig;
use wasmhook_tests::validate_settings_native;

use super::{NAMESPACE, SERVICE};

/// The output of `kubectl kustomize` for one directory under `deploy/`.
pub(super) struct Rendered {
    dir: String,
    /// Every object, in output order.
    pub(super) objects: Vec<Value>,
}

impl Rendered {
    /// Renders `deploy/<dir>` and parses every document of the stream.
    pub(super) fn of(dir: &str) -> Self {
        let path = deploy_dir().join(dir);
        let kubectl = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
        let output = Command::new(&kubectl)
            .arg("kustomize")
            .arg(&path)
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `{} kustomize {}`: {error}. These tests render deploy/ with kubectl (kustomize v5); \
                     install kubectl or set KUBECTL to its path",
                    kubectl.to_string_lossy(),
                    path.display()
                )
            });
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "`kubectl kustomize {}` failed ({}):\n{stderr}",
            path.display(),
            output.status
        );
        let text = String::from_utf8(output.stdout).expect("kubectl writes UTF-8");
        Self::parse(dir, &text)
    }

    /// The objects of the YAML file `deploy/<file>`, as they are (no kustomize).
    pub(super) fn file(file: &str) -> Self {
        let path = deploy_dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        Self::parse(file, &text)
    }

    fn parse(dir: &str, text: &str) -> Self {
        let objects = split_documents(text)
            .into_iter()
            .map(|document| {
                serde_saphyr::from_str::<Value>(document)
                    .unwrap_or_else(|error| panic!("deploy/{dir}: a document is not YAML: {error}\n{document}"))
            })
            .collect();
        Self {
            dir: dir.to_owned(),
            objects,
        }
    }

    /// The object of `kind` named `name`, if rendered.
    pub(super) fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
    }

    /// The object of `kind` named `name` as its k8s-openapi type.
    pub(super) fn get<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        let object = self
            .find(kind, name)
            .unwrap_or_else(|| panic!("deploy/{}: no {kind} {name}", self.dir));
        serde_json::from_value(object.clone()).unwrap_or_else(|error| panic!("{kind} {name}: {error}"))
    }

    /// The only object of `kind` (for generated names).
    pub(super) fn only(&self, kind: &str) -> &Value {
        let matching: Vec<&Value> = self.objects.iter().filter(|object| object["kind"] == kind).collect();
        assert_eq!(matching.len(), 1, "deploy/{}: expected one {kind}", self.dir);
        matching[0]
    }

    /// `kind/name` of every object, in output order.
    pub(super) fn names(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|object| format!("{}/{}", str_at(object, "/kind"), str_at(object, "/metadata/name")))
            .collect()
    }

    /// Every object parses as its type without losing a field; cert-manager
    /// objects (no k8s-openapi type) are checked as JSON.
    pub(super) fn assert_every_object_parses(&self) {
        assert!(!self.objects.is_empty(), "deploy/{}: nothing rendered", self.dir);
        for object in &self.objects {
            let label = format!("deploy/{}: {}", self.dir, str_at(object, "/kind"));
            match (str_at(object, "/apiVersion"), str_at(object, "/kind")) {
                (_, "Namespace") => round_trip::<Namespace>(object, &label),
                (_, "ServiceAccount") => round_trip::<ServiceAccount>(object, &label),
                (_, "ClusterRole") => round_trip::<ClusterRole>(object, &label),
                (_, "ClusterRoleBinding") => round_trip::<ClusterRoleBinding>(object, &label),
                (_, "Role") => round_trip::<Role>(object, &label),
                (_, "RoleBinding") => round_trip::<RoleBinding>(object, &label),
                (_, "ConfigMap") => round_trip::<ConfigMap>(object, &label),
                (_, "Deployment") => round_trip::<Deployment>(object, &label),
                (_, "CronJob") => round_trip::<k8s_openapi::api::batch::v1::CronJob>(object, &label),
                (_, "CustomResourceDefinition") => round_trip::<
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
                >(object, &label),
                (_, "Service") => round_trip::<Service>(object, &label),
                (_, "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>(object, &label),
                (_, "NetworkPolicy") => round_trip::<k8s_openapi::api::networking::v1::NetworkPolicy>(object, &label),
                (_, "MutatingWebhookConfiguration") => round_trip::<MutatingWebhookConfiguration>(object, &label),
                (_, "ValidatingWebhookConfiguration") => round_trip::<ValidatingWebhookConfiguration>(object, &label),
                (_, "ValidatingAdmissionPolicy") => {
                    round_trip::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy>(object, &label)
                }
                (_, "ValidatingAdmissionPolicyBinding") => round_trip::<
                    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
                >(object, &label),
                ("cert-manager.io/v1", "Issuer" | "Certificate") => {
                    assert!(object["spec"].is_object(), "{label}: no spec");
                    assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{label}");
                }
                (api_version, kind) => panic!("{label}: unexpected object {api_version} {kind}"),
            }
        }
    }

    /// The policy set in the rendered ConfigMap, through the server's own
    /// validation (modules, settings, rules) — as `wasmhook serve` reads it.
    pub(super) fn policy_set(&self) -> PolicySet {
        let text = str_at(self.only("ConfigMap"), "/data/policies.yaml");
        let set = PolicySet::from_yaml(
            "ConfigMap policies.yaml",
            text,
            &deploy_dir().join("base"),
            EngineConfig::default().max_memory_limit,
        )
        .unwrap_or_else(|error| panic!("deploy/{}: the policy set is rejected: {error}", self.dir));
        for policy in &set.policies {
            let ModuleSource::Builtin(builtin) = &policy.module else {
                panic!("policy {}: expected a built-in module", policy.name);
            };
            validate_settings_native(builtin, &policy.settings_json())
                .unwrap_or_else(|error| panic!("policy {}: settings rejected by {builtin}: {error}", policy.name));
        }
        set
    }

    pub(super) fn deployment(&self) -> Deployment {
        self.get("Deployment", SERVICE)
    }

    /// Both webhook configurations' webhooks, each with its mode.
    pub(super) fn webhooks(&self) -> Vec<(&'static str, ValidatingWebhook, Option<String>)> {
        let mutating: MutatingWebhookConfiguration = self.get("MutatingWebhookConfiguration", SERVICE);
        let validating: ValidatingWebhookConfiguration = self.get("ValidatingWebhookConfiguration", SERVICE);
        let mutating = mutating.webhooks.unwrap_or_default().into_iter().map(|webhook| {
            let reinvocation = webhook.reinvocation_policy.clone();
            ("mutate", as_validating(webhook), reinvocation)
        });
        let validating = validating
            .webhooks
            .unwrap_or_default()
            .into_iter()
            .map(|webhook| ("validate", webhook, None));
        mutating.chain(validating).collect()
    }
}

pub(super) fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .join("deploy")
}

/// The documents of a `---`-separated YAML stream.
fn split_documents(stream: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    for (offset, line) in line_offsets(stream) {
        if line.trim_end() == "---" {
            documents.push(&stream[start..offset]);
            start = offset + line.len();
        }
    }
    documents.push(&stream[start..]);
    documents.retain(|document| !document.trim().is_empty());
    documents
}

fn line_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n').scan(0, |offset, line| {
        let start = *offset;
        *offset += line.len();
        Some((start, line))
    })
}

pub(super) fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Parses `object` as `T` and checks that serializing it gives the object
/// back: k8s-openapi ignores unknown fields, so a typo would otherwise pass.
/// (`null` members are dropped first: they mean "absent" to the API server.)
fn round_trip<T: Serialize + DeserializeOwned>(object: &Value, label: &str) {
    let typed: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|error| panic!("{label} does not parse as {}: {error}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).expect("k8s-openapi types serialize");
    let original = without_nulls(object.clone());
    assert!(
        back == original,
        "{label}: fields lost reading it as {} (a misspelt or misplaced field?): {}",
        std::any::type_name::<T>(),
        serde_json::to_string(&json_patch::diff(&original, &back)).expect("a patch serializes")
    );
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(members) => members
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (key, without_nulls(value)))
            .collect(),
        Value::Array(items) => items.into_iter().map(without_nulls).collect(),
        other => other,
    }
}

/// A mutating webhook without its one extra field, to check both kinds alike.
fn as_validating(webhook: MutatingWebhook) -> ValidatingWebhook {
    ValidatingWebhook {
        admission_review_versions: webhook.admission_review_versions,
        client_config: webhook.client_config,
        failure_policy: webhook.failure_policy,
        match_conditions: webhook.match_conditions,
        match_policy: webhook.match_policy,
        name: webhook.name,
        namespace_selector: webhook.namespace_selector,
        object_selector: webhook.object_selector,
        rules: webhook.rules,
        side_effects: webhook.side_effects,
        timeout_seconds: webhook.timeout_seconds,
    }
}
