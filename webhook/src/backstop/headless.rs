//! The headless-service built-in in CEL: which Services its settings select,
//! and what it denies — or, in validate mode, what it would change — on
//! CREATE and UPDATE, in the order the policy decides.
//!
//! Not expressible, and left to the webhook: the checks of the StatefulSets
//! that name a Service (on DELETE and on selector changes), which read the
//! cluster.

use headless_service::Settings;
use headless_service::messages::{self, Selection};

use super::cel::{self, Placeholder};
use super::{Checks, Variable};

/// The operations the backstop checks: DELETE is only judged with cluster
/// context.
pub const OPERATIONS: &[&str] = &["CREATE", "UPDATE"];

/// The checks for a policy with `settings`.
pub fn checks(settings: &Settings) -> Checks {
    let mut variables = vec![
        Variable::new("name", "has(object.metadata.name) ? object.metadata.name : ''"),
        Variable::new("service", "request.namespace + '/' + variables.name"),
        Variable::new("labels", "has(object.metadata.labels) ? object.metadata.labels : {}"),
        Variable::new("selection", selection(settings)),
        Variable::new(
            "type",
            "has(object.spec) && has(object.spec.type) ? object.spec.type : 'ClusterIP'",
        ),
        Variable::new(
            "headless",
            "has(object.spec) && has(object.spec.clusterIP) && object.spec.clusterIP == 'None'",
        ),
        // The addresses of the Service, then (on UPDATE, which may omit them)
        // of its stored version: the first is the one the policy names.
        Variable::new(
            "clusterIPs",
            format!(
                "({} + (request.operation == 'UPDATE' && oldObject != null ? {} : []))\
                 .filter(ip, ip != '' && ip != 'None')",
                cluster_ips("object"),
                cluster_ips("oldObject"),
            ),
        ),
    ];
    variables.push(Variable::new("problem", problem(settings)));
    Checks {
        operations: OPERATIONS,
        variables,
    }
}

/// Every address an object's spec names, `clusterIP` first.
fn cluster_ips(object: &str) -> String {
    format!(
        "(has({object}.spec) && has({object}.spec.clusterIP) ? [{object}.spec.clusterIP] : []) + \
         (has({object}.spec) && has({object}.spec.clusterIPs) ? {object}.spec.clusterIPs : [])"
    )
}

/// Why the settings select the Service, as the policy says it (the first
/// suffix, then the first prefix, then the labels), or `''`.
fn selection(settings: &Settings) -> String {
    let mut chain = String::new();
    for suffix in &settings.name_suffixes {
        chain.push_str(&format!(
            "variables.name.endsWith({}) ? {}\n: ",
            cel::string(suffix),
            cel::string(&Selection::NameSuffix(suffix).to_string())
        ));
    }
    for prefix in &settings.name_prefixes {
        chain.push_str(&format!(
            "variables.name.startsWith({}) ? {}\n: ",
            cel::string(prefix),
            cel::string(&Selection::NamePrefix(prefix).to_string())
        ));
    }
    if let Some(selector) = &settings.selector {
        chain.push_str(&format!(
            "{} ? {}\n: ",
            cel::label_selector(selector, "variables.labels"),
            cel::string(&Selection::Labels.to_string())
        ));
    }
    chain.push_str("''");
    chain
}

/// The first problem with the Service, in the words of the policy's
/// denials, or `''`.
fn problem(settings: &Settings) -> String {
    let (service, reason, third) = (Placeholder(0), Placeholder(1), Placeholder(2));
    let values = |third_value: &'static str| ["variables.service", "variables.selection", third_value];
    let wrong_type = cel::message(
        &messages::wrong_type(&service, &reason, &third),
        &values("variables.type"),
    );
    let requested = cel::message(
        &messages::cluster_ip_requested(&service, &reason, &third),
        &values("variables.clusterIPs[0]"),
    );
    let allocated = cel::message(
        &messages::cluster_ip_allocated(&service, &reason, &third),
        &values("variables.clusterIPs[0]"),
    );
    let from_external_name = cel::message(&messages::external_name_to_cluster_ip(&service, &reason), &values("''"));

    let applies = {
        let mut applies =
            "request.kind.group == '' && request.kind.kind == 'Service' && !has(request.subResource)".to_owned();
        if !settings.skip_namespaces.is_empty() {
            applies.push_str(&format!(
                " && !(request.namespace in {})",
                cel::string_list(&settings.skip_namespaces)
            ));
        }
        applies
    };
    // What the mutating policy would have set is said as what to write:
    // with the webhook down, the author writes it.
    let set_headless = "'Service ' + variables.service + ' must be headless (' + variables.selection + \
                        '): set spec.clusterIP: None";
    let mut branches = vec![
        format!("!({applies}) || variables.selection == '' || variables.type == 'ExternalName' ? ''"),
        format!("variables.type != 'ClusterIP' ? {wrong_type}"),
        format!(
            "size(variables.clusterIPs) > 0 && request.operation == 'CREATE' \
             && !(has(object.metadata.resourceVersion) && object.metadata.resourceVersion != '') ? {requested}"
        ),
        format!("size(variables.clusterIPs) > 0 ? {allocated}"),
        format!(
            "request.operation == 'UPDATE' && !variables.headless && oldObject != null && has(oldObject.spec) \
             && has(oldObject.spec.type) && oldObject.spec.type == 'ExternalName' ? {from_external_name}"
        ),
    ];
    if settings.publish_not_ready_addresses {
        let publishes =
            "has(object.spec) && has(object.spec.publishNotReadyAddresses) && object.spec.publishNotReadyAddresses";
        branches.push(format!(
            "request.operation == 'CREATE' && !variables.headless ? {set_headless}' + \
             ({publishes} ? '' : ' and spec.publishNotReadyAddresses: true') + '.'"
        ));
        branches.push(format!(
            "!({publishes}) ? 'Service ' + variables.service + ' must publish not-ready addresses (' + \
             variables.selection + '): set spec.publishNotReadyAddresses: true.'"
        ));
    } else {
        branches.push(format!(
            "request.operation == 'CREATE' && !variables.headless ? {set_headless}.'"
        ));
    }
    branches.push("''".to_owned());
    // One branch a line: the generated YAML shows it as a block.
    branches.join("\n: ")
}
