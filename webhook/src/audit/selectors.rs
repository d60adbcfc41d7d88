//! Which listed objects a policy would have seen: its `namespaceSelector`
//! and `objectSelector`, evaluated as the API server evaluates a webhook's.
//!
//! The namespace selector is the one wasmhook registers, not only the one the
//! policy set writes: the policy's, plus wasmhook's exclusions (its own
//! namespace, `kube-system`, namespaces labelled `wasmhook.dev/ignore`), so
//! the audit judges exactly the objects admission would. As in the API
//! server, a Namespace is matched by its own labels, and any other
//! cluster-scoped object is never excluded by a namespace selector.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt as _};

use crate::config::PolicyConfig;

/// Labels of every namespace, by name.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// A policy's selectors, parsed.
#[derive(Debug, Clone)]
pub struct Selection {
    namespace: Selector,
    object: Option<Selector>,
}

/// Why an object is not judged by a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// The namespace (or the Namespace itself) does not match.
    Namespace,
    /// The object's labels do not match.
    Object,
    /// The object's namespace was not listed (created after the list).
    UnknownNamespace,
}

impl Selection {
    /// The selectors `policy` is registered with when wasmhook runs in
    /// `webhook_namespace`. The error says which selector is invalid.
    pub fn of(policy: &PolicyConfig, webhook_namespace: &str) -> Result<Self, String> {
        let registered = crate::registration::namespace_selector(policy.namespace_selector.as_ref(), webhook_namespace);
        let parse = |selector: LabelSelector, field: &str| {
            Selector::try_from(selector).map_err(|error| format!("policy {:?}: {field}: {error}", policy.name))
        };
        Ok(Self {
            namespace: parse(registered, "namespaceSelector")?,
            object: policy
                .object_selector
                .clone()
                .map(|selector| parse(selector, "objectSelector"))
                .transpose()?,
        })
    }

    /// Whether the policy judges an object with `labels` in `namespace`
    /// (`None`: cluster-scoped; `is_namespace`: the object is a Namespace).
    pub fn admits(
        &self,
        namespace: Option<&str>,
        is_namespace: bool,
        labels: &BTreeMap<String, String>,
        namespaces: &NamespaceLabels,
    ) -> Result<(), Excluded> {
        let namespace_matches = match namespace {
            Some(namespace) => {
                let labels = namespaces.get(namespace).ok_or(Excluded::UnknownNamespace)?;
                self.namespace.matches(labels)
            }
            None if is_namespace => self.namespace.matches(labels),
            None => true,
        };
        if !namespace_matches {
            return Err(Excluded::Namespace);
        }
        if let Some(object) = &self.object
            && !object.matches(labels)
        {
            return Err(Excluded::Object);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicySet;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn selection(extra: &str) -> Selection {
        let yaml = format!(
            "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies:\n  - name: p\n    module: \
             builtin:headless-service\n{extra}"
        );
        let set = PolicySet::from_yaml("test.yaml", &yaml, std::path::Path::new("."), 1 << 30).expect("valid");
        Selection::of(&set.policies[0], "wasmhook-system").expect("valid selectors")
    }

    fn namespaces() -> NamespaceLabels {
        let named = |name: &str, extra: &[(&str, &str)]| {
            let mut labels = labels(extra);
            labels.insert("kubernetes.io/metadata.name".into(), name.into());
            (name.to_owned(), labels)
        };
        [
            named("default", &[]),
            named("shop", &[("team", "shop")]),
            named("kube-system", &[]),
            named("wasmhook-system", &[]),
            named("legacy", &[("wasmhook.dev/ignore", "true")]),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn wasmhooks_own_exclusions_apply_as_registered() {
        let selection = selection("");
        let namespaces = namespaces();
        let none = BTreeMap::new();
        assert_eq!(selection.admits(Some("default"), false, &none, &namespaces), Ok(()));
        for excluded in ["kube-system", "wasmhook-system", "legacy"] {
            assert_eq!(
                selection.admits(Some(excluded), false, &none, &namespaces),
                Err(Excluded::Namespace),
                "{excluded}"
            );
        }
        assert_eq!(
            selection.admits(Some("created-later"), false, &none, &namespaces),
            Err(Excluded::UnknownNamespace)
        );
    }

    #[test]
    fn the_policys_namespace_selector_is_anded_with_the_exclusions() {
        let selection = selection("    namespaceSelector:\n      matchLabels: {team: shop}\n");
        let namespaces = namespaces();
        let none = BTreeMap::new();
        assert_eq!(selection.admits(Some("shop"), false, &none, &namespaces), Ok(()));
        assert_eq!(
            selection.admits(Some("default"), false, &none, &namespaces),
            Err(Excluded::Namespace)
        );
        // A Namespace is matched by its own labels; other cluster-scoped
        // objects are never excluded by a namespace selector.
        let shop_labels = namespaces["shop"].clone();
        assert_eq!(selection.admits(None, true, &shop_labels, &namespaces), Ok(()));
        assert_eq!(
            selection.admits(None, true, &namespaces["default"], &namespaces),
            Err(Excluded::Namespace)
        );
        assert_eq!(selection.admits(None, false, &none, &namespaces), Ok(()));
    }

    #[test]
    fn the_object_selector_matches_the_objects_labels() {
        let selection = selection(
            "    objectSelector:\n      matchExpressions:\n        - {key: tier, operator: In, values: [db, \
             cache]}\n",
        );
        let namespaces = namespaces();
        assert_eq!(
            selection.admits(Some("default"), false, &labels(&[("tier", "db")]), &namespaces),
            Ok(())
        );
        assert_eq!(
            selection.admits(Some("default"), false, &labels(&[("tier", "web")]), &namespaces),
            Err(Excluded::Object)
        );
        assert_eq!(
            selection.admits(Some("default"), false, &BTreeMap::new(), &namespaces),
            Err(Excluded::Object)
        );
    }
}
