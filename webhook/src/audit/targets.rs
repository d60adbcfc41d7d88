//! What an audit lists: each policy's `rules`, read as the API server reads a
//! webhook's, against the resources the cluster serves (from discovery).
//!
//! Every resource is listed once, in one version, and its objects are given
//! to every policy that selects it. An audit evaluates each object as the
//! request that created it, so only rules with `CREATE` (or `*`) count; a
//! policy whose rules select a resource for other operations only, or only
//! subresources, is not audited there, and the plan says so — never silently.
//!
//! Planning is pure (discovery's answer in, a [`Plan`] out) so that it is
//! tested offline.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::RuleWithOperations;

/// A resource the cluster serves, as discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedResource {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version.
    pub version: String,
    /// Whether `version` is the group's preferred version.
    pub preferred: bool,
    /// Plural resource name (`services`).
    pub plural: String,
    /// Kind (`Service`).
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the resource can be listed.
    pub listable: bool,
}

impl ServedResource {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services`, `statefulsets.apps`: how RBAC and `kubectl` name it.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// One policy's interest in a listed resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// The policy's index in the audited policies.
    pub policy: usize,
    /// Whether its rules also select the resource's UPDATEs: a change it
    /// wants is then made by the object's next update.
    pub on_update: bool,
}

/// A resource to list and the policies that judge its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The resource.
    pub resource: ServedResource,
    /// The policies, in policy-set order.
    pub interests: Vec<Interest>,
}

/// What an audit lists, and why some policies are not (fully) audited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The resources to list, ordered by group, version and resource.
    pub targets: Vec<Target>,
    /// Per policy index: what the audit leaves out of it, one sentence each.
    pub notes: BTreeMap<usize, Vec<String>>,
}

impl Plan {
    /// Whether the policy at `index` judges any listed resource.
    pub fn audits(&self, index: usize) -> bool {
        self.targets
            .iter()
            .any(|target| target.interests.iter().any(|interest| interest.policy == index))
    }
}

/// The plan for `policies` (each given as its rules) over what the cluster
/// `served`.
pub fn plan(policies: &[&[RuleWithOperations]], served: &[ServedResource]) -> Plan {
    let mut targets: BTreeMap<(String, String, String), Target> = BTreeMap::new();
    let mut notes: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (index, rules) in policies.iter().enumerate() {
        let mut not_on_create: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut unlistable = Vec::new();
        let mut selected_any = false;
        for rule in *rules {
            for resource in served.iter().filter(|resource| selects(rule, resource)) {
                selected_any = true;
                if !has_operation(rule, "CREATE") {
                    not_on_create
                        .entry(resource.qualified_name())
                        .or_default()
                        .extend(rule.operations.iter().flatten().cloned());
                    continue;
                }
                if !resource.listable {
                    // Named: say so. Under `*`: the many review kinds
                    // (TokenReview…) that cannot be listed are no news.
                    if rule.resources.iter().flatten().any(|name| *name == resource.plural) {
                        unlistable.push(resource.qualified_name());
                    }
                    continue;
                }
                let on_update = rules
                    .iter()
                    .any(|other| has_operation(other, "UPDATE") && selects(other, resource));
                let key = (
                    resource.group.clone(),
                    resource.version.clone(),
                    resource.plural.clone(),
                );
                let target = targets.entry(key).or_insert_with(|| Target {
                    resource: resource.clone(),
                    interests: Vec::new(),
                });
                if !target.interests.iter().any(|interest| interest.policy == index) {
                    target.interests.push(Interest {
                        policy: index,
                        on_update,
                    });
                }
            }
        }
        let policy_notes = notes.entry(index).or_default();
        for (resource, mut operations) in not_on_create {
            // Selected on CREATE by another rule: audited after all.
            if targets.values().any(|target| {
                target.resource.qualified_name() == resource
                    && target.interests.iter().any(|interest| interest.policy == index)
            }) {
                continue;
            }
            operations.sort();
            operations.dedup();
            policy_notes.push(format!(
                "{resource} not audited: its rules select {} only, and an audit evaluates each object as the \
                 CREATE that made it",
                operations.join(", ")
            ));
        }
        unlistable.sort();
        unlistable.dedup();
        for resource in unlistable {
            policy_notes.push(format!("{resource} not audited: the API server does not list it"));
        }
        let subresources: Vec<&str> = rules
            .iter()
            .flat_map(|rule| rule.resources.iter().flatten())
            .filter(|name| name.contains('/') && name.as_str() != "*/*")
            .map(String::as_str)
            .collect();
        if !subresources.is_empty() {
            policy_notes.push(format!(
                "subresources not audited ({}): an audit evaluates whole objects",
                subresources.join(", ")
            ));
        }
        if !selected_any {
            policy_notes.push("its rules select no resource this cluster serves".to_owned());
        }
        if policy_notes.is_empty() {
            notes.remove(&index);
        }
    }
    Plan {
        targets: targets.into_values().collect(),
        notes,
    }
}

/// Whether `rule` selects whole objects of `resource` (operations aside).
/// A rule naming versions selects those; `*` selects the group's preferred
/// version only, so that no object is listed twice.
fn selects(rule: &RuleWithOperations, resource: &ServedResource) -> bool {
    let any_or = |values: &Option<Vec<String>>, wanted: &str| {
        values.iter().flatten().any(|value| value == "*" || value == wanted)
    };
    let version_selected = match &rule.api_versions {
        Some(versions) if versions.iter().any(|version| version == "*") => resource.preferred,
        Some(versions) => versions.contains(&resource.version),
        None => false,
    };
    let resource_selected = rule
        .resources
        .iter()
        .flatten()
        .any(|name| name == "*" || name == "*/*" || *name == resource.plural);
    let scope_selected = match rule.scope.as_deref() {
        Some("Namespaced") => resource.namespaced,
        Some("Cluster") => !resource.namespaced,
        _ => true,
    };
    any_or(&rule.api_groups, &resource.group) && version_selected && resource_selected && scope_selected
}

fn has_operation(rule: &RuleWithOperations, operation: &str) -> bool {
    rule.operations
        .iter()
        .flatten()
        .any(|value| value == "*" || value == operation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> ServedResource {
        ServedResource {
            group: group.into(),
            version: version.into(),
            preferred: true,
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            listable: true,
        }
    }

    fn rule(operations: &[&str], groups: &[&str], versions: &[&str], resources: &[&str]) -> RuleWithOperations {
        let strings = |values: &[&str]| Some(values.iter().map(|value| (*value).to_owned()).collect());
        RuleWithOperations {
            operations: strings(operations),
            api_groups: strings(groups),
            api_versions: strings(versions),
            resources: strings(resources),
            scope: None,
        }
    }

    fn cluster() -> Vec<ServedResource> {
        let mut beta = served("apps", "v1beta9", "statefulsets", "StatefulSet", true);
        beta.preferred = false;
        vec![
            served("", "v1", "services", "Service", true),
            served("", "v1", "namespaces", "Namespace", false),
            served("apps", "v1", "statefulsets", "StatefulSet", true),
            beta,
            served("apps", "v1", "deployments", "Deployment", true),
        ]
    }

    #[test]
    fn each_resource_is_listed_once_for_every_policy_that_selects_it_on_create() {
        let services = [rule(&["CREATE", "UPDATE"], &[""], &["v1"], &["services"])];
        let everything = [rule(&["*"], &["*"], &["*"], &["*"])];
        let plan = plan(&[&services, &everything], &cluster());
        let listed: Vec<(String, Vec<Interest>)> = plan
            .targets
            .iter()
            .map(|target| (target.resource.qualified_name(), target.interests.clone()))
            .collect();
        let both = vec![
            Interest {
                policy: 0,
                on_update: true,
            },
            Interest {
                policy: 1,
                on_update: true,
            },
        ];
        let only_everything = vec![Interest {
            policy: 1,
            on_update: true,
        }];
        assert_eq!(
            listed,
            vec![
                ("namespaces".to_owned(), only_everything.clone()),
                ("services".to_owned(), both),
                ("deployments.apps".to_owned(), only_everything.clone()),
                // `*` versions: the preferred one only, never v1beta9 too.
                ("statefulsets.apps".to_owned(), only_everything),
            ]
        );
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    }

    #[test]
    fn rules_without_create_are_reported_not_audited() {
        let dependents = [rule(&["UPDATE", "DELETE"], &[""], &["v1"], &["services"])];
        let plan = plan(&[&dependents], &cluster());
        assert!(plan.targets.is_empty());
        assert!(!plan.audits(0));
        assert_eq!(
            plan.notes[&0],
            vec![
                "services not audited: its rules select DELETE, UPDATE only, and an audit evaluates each object \
                 as the CREATE that made it"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn a_create_rule_elsewhere_in_the_policy_wins_over_an_update_only_one() {
        let rules = [
            rule(&["UPDATE"], &[""], &["v1"], &["services"]),
            rule(&["CREATE"], &[""], &["v1"], &["services"]),
        ];
        let plan = plan(&[&rules], &cluster());
        assert_eq!(plan.targets.len(), 1);
        assert_eq!(
            plan.targets[0].interests,
            vec![Interest {
                policy: 0,
                on_update: true
            }]
        );
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    }

    #[test]
    fn scope_versions_subresources_and_unserved_resources() {
        let mut cluster_scoped = rule(&["CREATE"], &["*"], &["*"], &["*"]);
        cluster_scoped.scope = Some("Cluster".into());
        let plan_cluster = plan(&[&[cluster_scoped]], &cluster());
        let names: Vec<String> = plan_cluster
            .targets
            .iter()
            .map(|target| target.resource.qualified_name())
            .collect();
        assert_eq!(names, vec!["namespaces"]);

        let beta = [rule(&["CREATE"], &["apps"], &["v1beta9"], &["statefulsets"])];
        let plan_beta = plan(&[&beta], &cluster());
        assert_eq!(plan_beta.targets[0].resource.version, "v1beta9");

        let status = [rule(&["CREATE"], &[""], &["v1"], &["pods/status"])];
        let plan_status = plan(&[&status], &cluster());
        assert!(plan_status.targets.is_empty());
        assert_eq!(
            plan_status.notes[&0],
            vec![
                "subresources not audited (pods/status): an audit evaluates whole objects".to_owned(),
                "its rules select no resource this cluster serves".to_owned(),
            ]
        );
    }

    #[test]
    fn a_resource_that_cannot_be_listed_is_named() {
        let mut reviews = served("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", false);
        reviews.listable = false;
        let everything = [rule(&["CREATE"], &["*"], &["*"], &["*"])];
        let plan_everything = plan(&[&everything], &[reviews.clone()]);
        assert!(plan_everything.targets.is_empty());
        assert!(plan_everything.notes.is_empty(), "{:?}", plan_everything.notes);

        let named = [rule(&["CREATE"], &["*"], &["*"], &["tokenreviews"])];
        let plan = plan(&[&named], &[reviews]);
        assert!(plan.targets.is_empty());
        assert_eq!(
            plan.notes[&0],
            vec!["tokenreviews.authentication.k8s.io not audited: the API server does not list it".to_owned()]
        );
    }
}
