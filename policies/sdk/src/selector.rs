//! Kubernetes label selectors (`matchLabels` + `matchExpressions`), evaluated
//! the way the API server evaluates them, for policies that select objects by
//! label in their settings.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Checks that a selector is well-formed: known operators, values present for
/// `In`/`NotIn` and absent for `Exists`/`DoesNotExist`.
pub fn validate(selector: &LabelSelector) -> Result<(), String> {
    for (index, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let values = requirement.values.as_deref().unwrap_or_default();
        let at = format!("matchExpressions[{index}] (key {:?})", requirement.key);
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "{at}: operator {} needs at least one value",
                    requirement.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!("{at}: operator {} takes no values", requirement.operator));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "{at}: unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"
                ));
            }
        }
    }
    Ok(())
}

/// Whether `labels` satisfy `selector`. An empty selector matches everything;
/// an unknown operator matches nothing (see [`validate`]).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    labels_match
        && selector.match_expressions.iter().flatten().all(|requirement| {
            let values = requirement.values.as_deref().unwrap_or_default();
            let actual = labels.get(&requirement.key);
            match requirement.operator.as_str() {
                "In" => actual.is_some_and(|value| values.contains(value)),
                "NotIn" => actual.is_none_or(|value| !values.contains(value)),
                "Exists" => actual.is_some(),
                "DoesNotExist" => actual.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_must_all_match() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("a", "1"), ("b", "2")])),
            ..Default::default()
        };
        assert!(matches(&selector, &labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!matches(&selector, &labels(&[("a", "1")])));
        assert!(matches(&LabelSelector::default(), &labels(&[])), "empty selects all");
    }

    #[test]
    fn expressions_follow_kubernetes_semantics() {
        let selector = LabelSelector {
            match_expressions: Some(vec![
                requirement("tier", "In", &["db", "cache"]),
                requirement("env", "NotIn", &["dev"]),
                requirement("team", "Exists", &[]),
                requirement("legacy", "DoesNotExist", &[]),
            ]),
            ..Default::default()
        };
        assert!(matches(&selector, &labels(&[("tier", "db"), ("team", "x")])));
        assert!(!matches(&selector, &labels(&[("tier", "web"), ("team", "x")])));
        assert!(!matches(
            &selector,
            &labels(&[("tier", "db"), ("team", "x"), ("env", "dev")])
        ));
        assert!(!matches(&selector, &labels(&[("tier", "db")])));
        assert!(!matches(
            &selector,
            &labels(&[("tier", "db"), ("team", "x"), ("legacy", "")])
        ));
    }

    #[test]
    fn malformed_requirements_are_reported() {
        let bad = |r| LabelSelector {
            match_expressions: Some(vec![r]),
            ..Default::default()
        };
        assert!(
            validate(&bad(requirement("a", "In", &[])))
                .unwrap_err()
                .contains("needs at least one value")
        );
        assert!(
            validate(&bad(requirement("a", "Exists", &["x"])))
                .unwrap_err()
                .contains("takes no values")
        );
        assert!(
            validate(&bad(requirement("a", "Has", &[])))
                .unwrap_err()
                .contains("unknown operator")
        );
        assert!(validate(&bad(requirement("a", "NotIn", &["x"]))).is_ok());
    }
}
