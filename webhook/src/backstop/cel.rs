//! CEL text for the backstop: literals that say exactly the settings' values,
//! label selectors as Kubernetes evaluates them, and messages made from the
//! built-ins' own message functions.
//!
//! Everything here produces expressions for the API server's CEL
//! environment, in which `object` and `oldObject` are dynamically typed: a
//! field that is absent is an error when read, so every read of an optional
//! field is guarded by `has()`.

use std::fmt::{self, Display, Write as _};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A CEL string literal for `value`: single-quoted, with backslashes, quotes
/// and control characters escaped, so any setting reads back unchanged.
pub fn string(value: &str) -> String {
    let mut literal = String::with_capacity(value.len() + 2);
    literal.push('\'');
    for c in value.chars() {
        match c {
            '\\' => literal.push_str("\\\\"),
            '\'' => literal.push_str("\\'"),
            '\n' => literal.push_str("\\n"),
            '\r' => literal.push_str("\\r"),
            '\t' => literal.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(literal, "\\u{:04x}", u32::from(c));
            }
            c => literal.push(c),
        }
    }
    literal.push('\'');
    literal
}

/// A CEL list of string literals.
pub fn string_list<S: AsRef<str>>(values: &[S]) -> String {
    let items: Vec<String> = values.iter().map(|value| string(value.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// Whether `labels` (a CEL expression of a `map(string, string)`) match
/// `selector`, as Kubernetes matches label selectors: every `matchLabels`
/// pair and every requirement (`NotIn` and `DoesNotExist` match an absent
/// key). `true` for an empty selector.
pub fn label_selector(selector: &LabelSelector, labels: &str) -> String {
    let mut terms = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        let key = string(key);
        terms.push(format!("({key} in {labels} && {labels}[{key}] == {})", string(value)));
    }
    for requirement in selector.match_expressions.iter().flatten() {
        let key = string(&requirement.key);
        let values = string_list(requirement.values.as_deref().unwrap_or_default());
        terms.push(match requirement.operator.as_str() {
            "In" => format!("({key} in {labels} && {labels}[{key}] in {values})"),
            "NotIn" => format!("(!({key} in {labels}) || !({labels}[{key}] in {values}))"),
            "Exists" => format!("({key} in {labels})"),
            // DoesNotExist; the policy's settings were validated, so there is
            // no other operator.
            _ => format!("!({key} in {labels})"),
        });
    }
    if terms.is_empty() {
        return "true".to_owned();
    }
    terms.join(" && ")
}

/// A placeholder for a CEL expression in a message: the built-ins' message
/// functions take `Display` arguments, and given placeholders they write a
/// template that [`message`] turns into a CEL string expression.
#[derive(Debug, Clone, Copy)]
pub struct Placeholder(pub usize);

/// Starts and ends a placeholder in a message template: characters of
/// Unicode's private use area, which no built-in message contains.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

impl Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{OPEN}{}{CLOSE}", self.0)
    }
}

/// The CEL string expression for a message `template` written with
/// [`Placeholder`]s: its text as literals, each placeholder `i` replaced by
/// the string expression `values[i]`, joined with `+`.
///
/// # Panics
/// If the template names a placeholder that `values` does not have: the
/// templates are the built-ins' messages, called with placeholders below
/// `values.len()`.
pub fn message(template: &str, values: &[&str]) -> String {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        if start > 0 {
            parts.push(string(&rest[..start]));
        }
        let after = &rest[start + OPEN.len_utf8()..];
        let end = after.find(CLOSE).expect("a placeholder is closed");
        let index: usize = after[..end].parse().expect("a placeholder holds its index");
        parts.push(values[index].to_owned());
        rest = &after[end + CLOSE.len_utf8()..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(string(rest));
    }
    parts.join(" + ")
}

/// `'"' + value + '"'`: a string expression quoted as Rust's `{:?}` quotes
/// the names the built-ins write (label values and DNS names, which have no
/// character `{:?}` would escape).
pub fn quoted(value: &str) -> String {
    format!("'\"' + {value} + '\"'")
}

/// The reason a string expression is not a DNS-1035 label (a Service name),
/// in the words of the SDK's `validation::dns1035_label`, or `''` when it is
/// one. `size` counts characters where the SDK counts bytes: they differ
/// only for names that also fail for their characters.
pub fn dns1035_problem(value: &str) -> String {
    format!(
        "size({value}) == 0 ? 'must not be empty' \
         : size({value}) > 63 ? 'must be no more than 63 characters (it has ' + string(size({value})) + ')' \
         : {value}.matches('[^-a-z0-9]') ? 'must consist of lower case alphanumeric characters or \\'-\\' (found \\'' + {value}.find('[^-a-z0-9]') + '\\')' \
         : !{value}.matches('^[a-z]') ? 'must start with an alphabetic character' \
         : {value}.endsWith('-') ? 'must end with an alphanumeric character' \
         : ''"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn string_literals_escape_what_cel_would_read_otherwise() {
        assert_eq!(string("-headless"), "'-headless'");
        assert_eq!(string(r"it's a \ path"), r"'it\'s a \\ path'");
        assert_eq!(string("a\nb\u{7}"), "'a\\nb\\u0007'");
        assert_eq!(string_list(&["a", "b'"]), r"['a', 'b\'']");
        assert_eq!(string_list::<&str>(&[]), "[]");
    }

    #[test]
    fn selectors_become_one_conjunction_with_kubernetes_semantics() {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_owned(), "db".to_owned())])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "zone".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["x".into()]),
                },
                LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "Exists".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "gone".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            label_selector(&selector, "L"),
            "('app' in L && L['app'] == 'db') && ('tier' in L && L['tier'] in ['a', 'b']) && \
             (!('zone' in L) || !(L['zone'] in ['x'])) && ('k' in L) && !('gone' in L)"
        );
        assert_eq!(label_selector(&LabelSelector::default(), "L"), "true");
    }

    #[test]
    fn a_message_template_becomes_a_concatenation_of_literals_and_expressions() {
        let template = format!("Service {} has type {}: fix it's type", Placeholder(0), Placeholder(1));
        assert_eq!(
            message(&template, &["variables.service", "variables.type"]),
            r"'Service ' + variables.service + ' has type ' + variables.type + ': fix it\'s type'"
        );
        assert_eq!(message(&Placeholder(0).to_string(), &["x"]), "x");
        assert_eq!(message("plain", &[]), "'plain'");
        assert_eq!(message("", &[]), "''");
    }
}
