//! Every mistake in a policy set is reported with the file, the policy (by
//! name and index, or by index alone) and the field.

use std::path::Path;

use super::*;

// ------------------------------------------------------------ the document

#[test]
fn the_file_must_exist_and_be_yaml() {
    let missing = Path::new(BASE).join("policies.yaml");
    let message = PolicySet::from_file(&missing, MAX).unwrap_err().to_string();
    assert_contains(
        &message,
        &["cannot read policy set /nonexistent/wasmhook-config/policies.yaml: "],
    );

    let message = error("apiVersion: wasmhook.dev/v1alpha1\npolicies: [\n");
    assert_contains(
        &message,
        &[
            "policies.yaml: not valid YAML: ",
            "unclosed bracket '[' at line 2, column 11",
        ],
    );
    assert!(!message.contains('\n'), "one line for the logs: {message}");
    assert_message(
        &error("apiVersion: a\napiVersion: b\n"),
        "policies.yaml: not valid YAML: duplicate mapping key: apiVersion at line 2, column 1",
    );
}

#[test]
fn errors_name_the_file_they_come_from() {
    let path = fixture("invalid-typo.yaml");
    let message = PolicySet::from_file(&path, MAX).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "{}: policy \"web\" (policies[0]): unknown field `timout`",
            path.display()
        )),
        "{message}"
    );
}

#[test]
fn the_document_must_be_a_policy_set() {
    assert_message(
        &error(""),
        "policies.yaml: the file is empty: expected apiVersion: wasmhook.dev/v1alpha1, kind: PolicySet and policies",
    );
    assert_contains(
        &error("- a\n- b\n"),
        &["policies.yaml: ", "expected a PolicySet mapping"],
    );
    assert_message(
        &error("apiVersion: wasmhook.dev/v1\nkind: PolicySet\npolicies: []\n"),
        "policies.yaml: field apiVersion: expected \"wasmhook.dev/v1alpha1\", found \"wasmhook.dev/v1\"",
    );
    assert_message(
        &error("apiVersion: wasmhook.dev/v1alpha1\nkind: Policies\npolicies: []\n"),
        "policies.yaml: field kind: expected \"PolicySet\", found \"Policies\"",
    );
    assert_message(
        &error("apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\npolicies: []\n"),
        "policies.yaml: field policies: at least one policy is required",
    );
    assert_contains(
        &error("kind: PolicySet\npolicies: []\n"),
        &["policies.yaml: ", "missing field `apiVersion`"],
    );
    assert_contains(
        &error("apiVersion: wasmhook.dev/v1alpha1\nkind: PolicySet\n"),
        &["policies.yaml: ", "missing field `policies`"],
    );
}

#[test]
fn unknown_top_level_keys_are_errors() {
    let message = error(&format!("metadata: {{name: x}}\n{}", set_of_builtins()));
    assert_contains(
        &message,
        &["policies.yaml: unknown field `metadata`, expected one of `apiVersion`, `kind`, `policies`"],
    );
}

#[test]
fn unknown_policy_keys_are_errors() {
    let message = entry_error("  - name: web\n    module: builtin:headless-service\n    timout: 2s\n");
    assert!(
        message.starts_with("policies.yaml: policy \"web\" (policies[1]): unknown field `timout`, expected one of"),
        "{message}"
    );
    assert_contains(&message, &["`timeout`", "`memoryLimit`"]);
}

#[test]
fn unknown_keys_inside_rules_and_selectors_are_errors() {
    let message = entry_error(
        "  - name: web\n    module: builtin:headless-service\n    rules: [{operation: [CREATE], apiGroups: [\"\"], \
         apiVersions: [v1], resources: [services]}]\n",
    );
    assert_contains(
        &message,
        &["policies.yaml: policy \"web\" (policies[1]): field rules[0]: unknown field `operation`"],
    );
    // A misspelt selector would otherwise select every object.
    let message =
        entry_error("  - name: web\n    module: builtin:headless-service\n    objectSelector: {matchLabel: {a: b}}\n");
    assert_contains(
        &message,
        &["policies.yaml: policy \"web\" (policies[1]): field objectSelector: unknown field `matchLabel`"],
    );
}

// -------------------------------------------------------------- the policies

#[test]
fn names_must_be_dns_labels() {
    for (name, problem) in [
        ("Web", "\"Web\" is not a DNS-1123 label"),
        ("web_1", "\"web_1\" is not a DNS-1123 label"),
        ("-web", "\"-web\" is not a DNS-1123 label"),
        ("web-", "\"web-\" is not a DNS-1123 label"),
        (&"a".repeat(64), "is not a DNS-1123 label"),
        ("\"\"", "must not be empty"),
    ] {
        let message = entry_error(&format!("  - name: {name}\n    module: builtin:headless-service\n"));
        assert!(
            message.starts_with("policies.yaml: policies[1]: field name: "),
            "{message}"
        );
        assert_contains(&message, &[problem, "at most 63 characters"]);
    }
    assert_message(
        &entry_error("  - module: builtin:headless-service\n"),
        "policies.yaml: policies[1]: missing field `name`",
    );
    assert_contains(
        &entry_error("  - name: [web]\n    module: builtin:headless-service\n"),
        &["policies.yaml: policies[1]: field name: invalid type: sequence"],
    );
    assert_contains(
        &entry_error("  - web\n"),
        &["policies.yaml: policies[1]: ", "expected a policy mapping"],
    );
}

#[test]
fn names_are_unique() {
    let message = error(&set("  - name: x\n    module: builtin:headless-service\n  \
         - name: y\n    module: builtin:headless-service\n  \
         - name: x\n    module: builtin:statefulset-service-name\n"));
    assert_message(
        &message,
        "policies.yaml: duplicate policy name \"x\" (policies[0] and policies[2])",
    );
}

#[test]
fn modules_must_exist() {
    assert_message(
        &entry_error("  - name: web\n    module: builtin:nope\n"),
        "policies.yaml: policy \"web\" (policies[1]): field module: \"nope\" is not a built-in policy \
         (built-in: headless-service, statefulset-service-name)",
    );
    assert_contains(
        &entry_error("  - name: web\n    module: \"\"\n"),
        &["policies.yaml: policy \"web\" (policies[1]): field module: must not be empty"],
    );
    let message = entry_error(
        "  - name: web\n    module: ./missing.wasm\n    rules: [{operations: [CREATE], apiGroups: [\"\"], \
         apiVersions: [v1], resources: [pods]}]\n",
    );
    assert!(
        message.starts_with(
            "policies.yaml: policy \"web\" (policies[1]): cannot read policy module \
             /nonexistent/wasmhook-config/missing.wasm: "
        ),
        "{message}"
    );
}

#[test]
fn sha256_pins_must_be_lowercase_hex_digests() {
    for pin in ["abc", &"A".repeat(64), &"g".repeat(64)] {
        assert_message(
            &entry_error(&format!(
                "  - name: web\n    module: builtin:headless-service\n    sha256: \"{pin}\"\n"
            )),
            &format!(
                "policies.yaml: policy \"web\" (policies[1]): field sha256: \"{pin}\" is not a sha256 digest \
                 (64 lowercase hex digits)"
            ),
        );
    }
}

#[test]
fn a_digest_yaml_reads_as_a_number_must_be_quoted() {
    assert_message(
        &with_field("sha256", &"0".repeat(64)),
        "policies.yaml: policy \"web\" (policies[1]): field sha256: YAML read the digest as the number 0.0: \
         write it in quotes",
    );
}

#[test]
fn mode_action_and_failure_policy_are_spelt_as_documented() {
    for (field, value, expected) in [
        ("mode", "enforce", "expected `mutate` or `validate`"),
        ("action", "Monitor", "expected `enforce` or `monitor`"),
        ("failurePolicy", "fail", "expected `Fail` or `Ignore`"),
    ] {
        let message = entry_error(&format!(
            "  - name: web\n    module: builtin:headless-service\n    {field}: {value}\n"
        ));
        assert_contains(
            &message,
            &[
                &format!("policies.yaml: policy \"web\" (policies[1]): field {field}: unknown variant `{value}`"),
                expected,
            ],
        );
    }
}

#[test]
fn timeouts_must_parse_and_be_within_the_api_servers_range() {
    let at = "policies.yaml: policy \"web\" (policies[1]): field timeout: ";
    assert_message(
        &with_field("timeout", "50ms"),
        &format!(
            "{at}\"50ms\" is out of range: must be between 100ms and 30s (the API server waits at most 30s for a webhook)"
        ),
    );
    assert_contains(&with_field("timeout", "31s"), &[at, "\"31s\" is out of range"]);
    assert_contains(&with_field("timeout", "1m"), &[at, "\"1m\" is out of range"]);
    assert_contains(&with_field("timeout", "2x"), &[at, "unknown unit \"x\""]);
    assert_contains(&with_field("timeout", "2"), &[at, "\"2\" has no unit"]);
    assert_contains(
        &with_field("timeout", "fast"),
        &[at, "\"fast\" does not start with a number"],
    );
    assert_contains(&with_field("timeout", "[2s]"), &[at, "expected a duration such as 2s"]);
}

#[test]
fn memory_limits_must_be_quantities_within_range() {
    let at = "policies.yaml: policy \"web\" (policies[1]): field memoryLimit: ";
    assert_message(
        &with_field("memoryLimit", "12Qi"),
        &format!("{at}\"12Qi\" is not a quantity (use e.g. 64Mi)"),
    );
    assert_message(
        &with_field("memoryLimit", "512Ki"),
        &format!("{at}\"512Ki\" is below the minimum, 1Mi"),
    );
    assert_message(
        &with_field("memoryLimit", "1000"),
        &format!("{at}1000 is below the minimum, 1Mi"),
    );
    assert_message(
        &with_field("memoryLimit", "513Mi"),
        &format!("{at}\"513Mi\" is above the engine's maximum memory limit, 512Mi"),
    );
    assert_contains(
        &with_field("memoryLimit", "99999Ti"),
        &[at, "above the engine's maximum"],
    );
    assert_contains(&with_field("memoryLimit", "-1Mi"), &[at, "is not a quantity"]);
    assert_contains(&with_field("memoryLimit", "1.5"), &[at, "1.5 is not a quantity"]);
}

#[test]
fn rules_are_checked() {
    let at = "policies.yaml: policy \"web\" (policies[1]): field ";
    let rules = |rule: &str| with_field("rules", &format!("[{rule}]"));
    assert_message(
        &rules("{operations: [CREATE, PATCH], apiGroups: [\"\"], apiVersions: [v1], resources: [services]}"),
        &format!(
            "{at}rules[0].operations[1]: \"PATCH\" is not an operation (expected CREATE, UPDATE, DELETE, CONNECT or *)"
        ),
    );
    assert_contains(
        &rules("{operations: [], apiGroups: [\"\"], apiVersions: [v1], resources: [services]}"),
        &[&format!("{at}rules[0].operations: must list at least one operation")],
    );
    assert_contains(
        &rules("{operations: [CREATE], apiVersions: [v1], resources: [services]}"),
        &[&format!("{at}rules[0].apiGroups: must list at least one group")],
    );
    assert_contains(
        &rules("{operations: [CREATE], apiGroups: [\"\"], apiVersions: [], resources: [services]}"),
        &[&format!("{at}rules[0].apiVersions: must list at least one version")],
    );
    assert_contains(
        &rules("{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: []}"),
        &[&format!("{at}rules[0].resources: must list at least one resource")],
    );
    assert_message(
        &rules("{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [services, \"\"]}"),
        &format!("{at}rules[0].resources[1]: must not be empty"),
    );
    assert_message(
        &rules("{operations: [\"*\", CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [services]}"),
        &format!("{at}rules[0].operations: \"*\" must be the only entry"),
    );
    assert_message(
        &rules("{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [services], scope: Global}"),
        &format!("{at}rules[0].scope: \"Global\" is not a scope (expected Cluster, Namespaced or *)"),
    );
    assert_message(
        &with_field("rules", "[]"),
        &format!("{at}rules: must list at least one rule"),
    );
}

#[test]
fn file_modules_must_say_which_requests_they_see() {
    let message = entry_error("  - name: web\n    module: policy.wasm\n");
    assert!(
        message
            .starts_with("policies.yaml: policy \"web\" (policies[1]): field rules: required for a policy from a file"),
        "{message}"
    );
}

#[test]
fn selectors_are_checked() {
    let at = "policies.yaml: policy \"web\" (policies[1]): field ";
    assert_message(
        &with_field(
            "namespaceSelector",
            "{matchExpressions: [{key: team, operator: Equals, values: [a]}]}",
        ),
        &format!(
            "{at}namespaceSelector.matchExpressions[0].operator: \"Equals\" is not an operator \
             (expected In, NotIn, Exists or DoesNotExist)"
        ),
    );
    assert_message(
        &with_field(
            "objectSelector",
            "{matchExpressions: [{key: a, operator: Exists}, {key: b, operator: In}]}",
        ),
        &format!("{at}objectSelector.matchExpressions[1].values: operator In needs at least one value"),
    );
    assert_message(
        &with_field(
            "objectSelector",
            "{matchExpressions: [{key: a, operator: DoesNotExist, values: [x]}]}",
        ),
        &format!("{at}objectSelector.matchExpressions[0].values: operator DoesNotExist takes no values"),
    );
    assert_message(
        &with_field("objectSelector", "{matchExpressions: [{key: \"\", operator: Exists}]}"),
        &format!("{at}objectSelector.matchExpressions[0].key: must not be empty"),
    );
}

#[test]
fn match_conditions_are_checked() {
    let at = "policies.yaml: policy \"web\" (policies[1]): field ";
    assert_message(
        &with_field(
            "matchConditions",
            "[{name: a, expression: \"true\"}, {name: b, expression: \"true\"}, {name: a, expression: \"false\"}]",
        ),
        &format!("{at}matchConditions[2].name: \"a\" is also the name of matchConditions[0]"),
    );
    assert_contains(
        &with_field("matchConditions", "[{name: \"\", expression: \"true\"}]"),
        &[&format!("{at}matchConditions[0].name: \"\" is not a valid name")],
    );
    assert_contains(
        &with_field(
            "matchConditions",
            &format!("[{{name: {}, expression: \"true\"}}]", "n".repeat(64)),
        ),
        &[&format!("{at}matchConditions[0].name: "), "is not a valid name"],
    );
    assert_message(
        &with_field("matchConditions", "[{name: a, expression: \" \"}]"),
        &format!("{at}matchConditions[0].expression: must not be empty"),
    );
    assert_contains(
        &with_field("matchConditions", "[{name: a}]"),
        &[&format!("{at}matchConditions[0]: missing field `expression`")],
    );
    let many: Vec<String> = (0..65)
        .map(|i| format!("{{name: c{i}, expression: \"true\"}}"))
        .collect();
    assert_message(
        &with_field("matchConditions", &format!("[{}]", many.join(", "))),
        &format!("{at}matchConditions: at most 64 are allowed, found 65"),
    );
    let sixty_four = only(&format!(
        "  - name: web\n    module: builtin:headless-service\n    matchConditions: [{}]\n",
        many[..64].join(", ")
    ));
    assert_eq!(sixty_four.match_conditions.len(), 64);
}
