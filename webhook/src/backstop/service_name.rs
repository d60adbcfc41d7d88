//! The statefulset-service-name built-in in CEL: on CREATE, a
//! `spec.serviceName` that is a valid Service name, or — where the policy
//! would fill it in — a denial that says which name to write.
//!
//! Not in the backstop:
//! - the selector / template-labels check: the API server's own validation
//!   of a StatefulSet refuses a selector that does not match its template
//!   before any validating admission runs, so a CEL check could never fire;
//! - the checks of the Service `serviceName` names, which read the cluster;
//! - the warning about names longer than 52 characters (a warning, not a
//!   denial: the backstop only denies).

use statefulset_service_name::messages;
use statefulset_service_name::{Settings, render};

use super::cel::{self, Placeholder};
use super::{Checks, Variable};

/// The operations the backstop checks: the policy judges only CREATE
/// (`serviceName` is immutable).
pub const OPERATIONS: &[&str] = &["CREATE"];

/// The checks for a policy with `settings`.
pub fn checks(settings: &Settings) -> Checks {
    let variables = vec![
        Variable::new("name", "has(object.metadata.name) ? object.metadata.name : ''"),
        Variable::new("statefulSet", "request.namespace + '/' + variables.name"),
        Variable::new(
            "serviceName",
            "has(object.spec) && has(object.spec.serviceName) ? object.spec.serviceName : ''",
        ),
        Variable::new("serviceNameProblem", cel::dns1035_problem("variables.serviceName")),
        Variable::new("generated", generated(&settings.service_name_template)),
        Variable::new("generatedProblem", cel::dns1035_problem("variables.generated")),
        Variable::new("problem", problem(settings)),
    ];
    Checks {
        operations: OPERATIONS,
        variables,
    }
}

/// The service name the policy would fill in: its template rendered by the
/// policy's own `render`, with CEL where the name and namespace go.
fn generated(template: &str) -> String {
    let rendered = render(template, &Placeholder(0).to_string(), &Placeholder(1).to_string())
        .expect("the settings were validated: the template renders");
    cel::message(&rendered, &["variables.name", "request.namespace"])
}

/// The first problem with the StatefulSet, in the words of the policy's
/// denials, or `''`.
fn problem(settings: &Settings) -> String {
    let (first, second, third) = (Placeholder(0), Placeholder(1), Placeholder(2));
    let invalid = cel::message(
        &messages::invalid_service_name(&first, &second, &third),
        &[
            "variables.statefulSet",
            &cel::quoted("variables.serviceName"),
            "variables.serviceNameProblem",
        ],
    );
    let unnamed = cel::message(
        &messages::generated_name_without_service_name(&first),
        &[&cel::quoted("request.namespace")],
    );
    let generated_invalid = cel::message(
        &messages::generated_service_name_invalid(&first, &second, &third),
        &[
            "variables.statefulSet",
            &cel::quoted("variables.generated"),
            "variables.generatedProblem",
        ],
    );
    let mut applies =
        "request.kind.group == 'apps' && request.kind.kind == 'StatefulSet' && !has(request.subResource) \
         && request.operation == 'CREATE'"
            .to_owned();
    if !settings.skip_namespaces.is_empty() {
        applies.push_str(&format!(
            " && !(request.namespace in {})",
            cel::string_list(&settings.skip_namespaces)
        ));
    }
    // Where the mutating policy would have filled the name in, the author
    // is told the name to write.
    let fill_in = "'StatefulSet ' + variables.statefulSet + ' has no spec.serviceName: set spec.serviceName: ' + \
                   variables.generated + ', the name of its headless Service.'";
    // One branch a line: the generated YAML shows it as a block.
    [
        format!("!({applies}) ? ''"),
        format!("variables.serviceName != '' ? (variables.serviceNameProblem != '' ? {invalid} : '')"),
        format!("variables.name == '' ? {unnamed}"),
        format!("variables.generatedProblem != '' ? {generated_invalid}"),
        fill_in.to_owned(),
    ]
    .join("\n: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_becomes_a_concatenation() {
        assert_eq!(generated("{name}-headless"), "variables.name + '-headless'");
        assert_eq!(
            generated("{namespace}-{name}"),
            "request.namespace + '-' + variables.name"
        );
        assert_eq!(generated("{name}"), "variables.name");
        assert_eq!(
            generated("svc-{name}-{namespace}-x"),
            "'svc-' + variables.name + '-' + request.namespace + '-x'"
        );
    }
}
