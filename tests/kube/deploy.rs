//! `deploy/` on the oldest supported Kubernetes: every object accepted by the
//! API server's strict field validation, and no install — complete, failed
//! halfway, or with pods that never become ready — blocking a write; the
//! PolicyReport CRDs accepted, checking reports as their schema says, and
//! never applied over another tool's; the audit overlay's account allowed
//! exactly to read what the policies select and to write its reports.

use serde_json::{Value, json};
use wasmhook_tests::kube::KubeApi;

use super::{create_service, render, start_api, webhook_configurations};

#[test]
fn the_base_installs_and_blocks_no_write_while_no_pod_is_ready() {
    let api = start_api();
    let applied = api
        .kubectl_ok(&["apply", "-k", super::deploy_dir().join("base").to_str().unwrap()])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(applied.contains("deployment.apps/wasmhook created"), "{applied}");
    // No kubelet here: the pods never run, as when an image cannot be pulled.
    // Nothing registered, so nothing refuses the cluster's writes.
    for resource in ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"] {
        assert!(
            !webhook_configurations(&api, resource).contains(&"wasmhook".to_owned()),
            "{resource}: nothing may be registered before a pod is ready"
        );
    }
    create_service(&api, "web-headless").expect("a Service write goes through");

    let deleted = api
        .kubectl_ok(&[
            "delete",
            "-k",
            super::deploy_dir().join("base").to_str().unwrap(),
            "--wait=false",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        deleted.contains("clusterrole.rbac.authorization.k8s.io \"wasmhook-register\" deleted"),
        "{deleted}"
    );
}

#[test]
fn an_install_that_fails_halfway_blocks_no_write() {
    // The failure reported in issue #25: the Deployment refused by a 1.28 API
    // server (a preStop `sleep` handler, unknown before 1.29), everything else
    // created. It once left fail-closed webhooks with no server behind them.
    let api = start_api();
    let rendered = render("base");
    let anchor = "        imagePullPolicy: IfNotPresent\n";
    assert!(
        rendered.contains(anchor),
        "the rendered Deployment changed: update this test"
    );
    let broken = rendered.replace(
        anchor,
        &format!("{anchor}        lifecycle:\n          preStop:\n            sleep:\n              seconds: 5\n"),
    );
    let output = api
        .kubectl_with_input(&["apply", "-f", "-"], &broken)
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the broken Deployment must be refused");
    assert!(
        stderr.contains("unknown field \"spec.template.spec.containers[0].lifecycle.preStop.sleep\""),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("service/wasmhook created"),
        "the rest was applied: {stdout}"
    );
    create_service(&api, "db-headless").expect("a Service write goes through");
}

#[test]
fn every_rendering_passes_a_server_side_dry_run() {
    let api = start_api();
    // Namespaced objects need their namespace to exist for a dry run.
    api.kubectl_ok(&["create", "namespace", "wasmhook-system"])
        .unwrap_or_else(|error| panic!("{error}"));
    for dir in [
        "base",
        "overlays/cert-manager",
        "overlays/dev",
        "overlays/registry",
        "overlays/audit",
    ] {
        // cert-manager's kinds need its CRDs, which this API server does not
        // have; they are checked offline (tests/integration/deploy).
        let rendered = render(dir);
        let documents: Vec<&str> = rendered
            .split("\n---\n")
            .filter(|document| !document.contains("apiVersion: cert-manager.io/"))
            .filter(|document| !document.contains("kind: Namespace\n"))
            .collect();
        let output = api
            .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &documents.join("\n---\n"))
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "deploy/{dir}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("(server dry run)"), "deploy/{dir}: {stdout}");
    }
}

/// The two CRDs `wasmhook audit --report` writes to.
const REPORT_CRDS: [&str; 2] = [
    "crd/policyreports.wgpolicyk8s.io",
    "crd/clusterpolicyreports.wgpolicyk8s.io",
];

/// `kubectl apply --server-side -k deploy/crds`, as deploy/README.md says.
fn apply_report_crds(api: &KubeApi) -> std::process::Output {
    let crds = super::deploy_dir().join("crds");
    api.kubectl(&["apply", "--server-side", "-k", crds.to_str().unwrap()])
        .expect("kubectl runs")
}

fn wait_established(api: &KubeApi) {
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    args.extend(REPORT_CRDS);
    api.kubectl_ok(&args).unwrap_or_else(|error| panic!("{error}"));
}

/// A report shaped as `wasmhook audit --report` writes one: a failing and a
/// passing result, each naming its object; `result` is the first's outcome.
fn report(kind: &str, namespace: Option<&str>, result: &str) -> Value {
    let (object_kind, object_name) = if namespace.is_some() {
        ("Service", "web")
    } else {
        ("Namespace", "team-a")
    };
    // No `null`s: the schema's fields are not nullable (a cluster-scoped
    // object's reference has no namespace at all).
    let mut object = json!({"apiVersion": "v1", "kind": object_kind, "name": object_name,
        "uid": "0f7c1c1e-6f0a-4c55-9d3b-3e2b1f6f0a11"});
    let mut metadata = json!({"name": "wasmhook-audit", "labels": {"app.kubernetes.io/managed-by": "wasmhook"}});
    if let Some(namespace) = namespace {
        object["namespace"] = json!(namespace);
        metadata["namespace"] = json!(namespace);
    }
    json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": kind,
        "metadata": metadata,
        "summary": {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0},
        "results": [
            {"source": "wasmhook", "policy": "headless-service-verify", "result": result, "scored": true,
             "severity": "medium", "category": "Services",
             "timestamp": {"seconds": 1_700_000_000, "nanos": 250_000_000},
             "message": "a Service named *-headless must be headless (clusterIP: None)",
             "resources": [object], "properties": {"mode": "validate", "action": "enforce"}},
            {"source": "wasmhook", "policy": "statefulset-service-name-verify", "rule": "serviceName",
             "result": "pass", "timestamp": {"seconds": 1_700_000_000, "nanos": 0}, "resources": [object]},
        ],
    })
}

/// `kubectl <verb> -f -` of `object`: its output, or what the API server said.
fn submit(api: &KubeApi, args: &[&str], object: &Value) -> Result<String, String> {
    let output = api.kubectl_with_input(args, &object.to_string()).expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{stderr}"))
    }
}

#[test]
fn the_policy_report_crds_are_accepted_and_check_every_report() {
    let api = start_api();
    let output = apply_report_crds(&api);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for crd in REPORT_CRDS {
        let name = crd.trim_start_matches("crd/");
        assert!(
            stdout.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{name} serverside-applied"
            )),
            "{stdout}"
        );
    }
    wait_established(&api);
    // Applying again changes nothing: the step is safe to repeat.
    let again = apply_report_crds(&api);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    for crd in REPORT_CRDS {
        let generation = api
            .kubectl_ok(&["get", crd, "-o", "jsonpath={.metadata.generation}"])
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(generation, "1", "{crd}: unchanged by the second apply");
    }

    // Reports as audit writes them (server-side apply, its field manager).
    let apply = ["apply", "--server-side", "--field-manager", "wasmhook-audit", "-f", "-"];
    submit(&api, &apply, &report("PolicyReport", Some("default"), "fail")).unwrap_or_else(|error| panic!("{error}"));
    submit(&api, &apply, &report("ClusterPolicyReport", None, "fail")).unwrap_or_else(|error| panic!("{error}"));
    let listed = api
        .kubectl_ok(&["get", "polr", "--all-namespaces"])
        .unwrap_or_else(|error| panic!("{error}"));
    let header: Vec<&str> = listed.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "PASS", "FAIL", "WARN", "ERROR", "SKIP", "AGE"],
        "{listed}"
    );
    let row: Vec<&str> = listed.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        row.get(..7),
        Some(&["default", "wasmhook-audit", "1", "1", "0", "0", "0"][..]),
        "{listed}"
    );
    let wide = api
        .kubectl_ok(&["get", "cpolr", "-o", "wide"])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(wide.lines().next().unwrap_or_default().starts_with("NAME"), "{wide}");
    assert!(wide.contains("KIND") && wide.contains("wasmhook-audit"), "{wide}");
    let kept = api
        .kubectl_ok(&[
            "get",
            "polr",
            "-n",
            "default",
            "wasmhook-audit",
            "-o",
            "jsonpath={.results[0].timestamp.nanos} {.results[0].resources[0].kind} {.results[0].properties.mode}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(kept, "250000000 Service validate", "nothing pruned");

    // What the schema refuses: an outcome outside the enum, a v1alpha1-shaped
    // result (`status` instead of `result`), a result without its policy.
    let create = ["create", "-f", "-"];
    let mut bogus = report("PolicyReport", Some("default"), "bogus");
    bogus["metadata"]["name"] = json!("bogus");
    let refused = submit(&api, &create, &bogus).expect_err("an unknown result is refused");
    assert!(refused.contains(r#"Unsupported value: "bogus""#), "{refused}");
    assert!(refused.contains("results[0].result"), "{refused}");
    let mut old_shape = report("ClusterPolicyReport", None, "fail");
    old_shape["metadata"]["name"] = json!("old-shape");
    let result = old_shape["results"][0].as_object_mut().unwrap();
    result.remove("result");
    result.insert("status".to_owned(), json!("fail"));
    let refused = submit(&api, &create, &old_shape).expect_err("an unknown field is refused");
    assert!(refused.contains(r#"unknown field "results[0].status""#), "{refused}");
    let mut anonymous = report("PolicyReport", Some("default"), "pass");
    anonymous["metadata"]["name"] = json!("anonymous");
    anonymous["results"][1].as_object_mut().unwrap().remove("policy");
    let refused = submit(&api, &create, &anonymous).expect_err("a result names its policy");
    assert!(refused.contains("results[1].policy: Required value"), "{refused}");
    let names = api
        .kubectl_ok(&["get", "polr,cpolr", "--all-namespaces", "-o", "name"])
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "policyreport.wgpolicyk8s.io/wasmhook-audit",
            "clusterpolicyreport.wgpolicyk8s.io/wasmhook-audit"
        ]
    );
}

#[test]
fn the_crds_are_never_applied_over_another_tools() {
    // Another tool installed them first: PolicyReport exactly as ours,
    // ClusterPolicyReport with the older severities (high, low, medium).
    let api = start_api();
    let file = |name: &str| {
        std::fs::read_to_string(super::deploy_dir().join("crds").join(name)).unwrap_or_else(|error| panic!("{error}"))
    };
    let same = file("wgpolicyk8s.io_policyreports.yaml");
    let severities = "                    enum:\n                      - critical\n                      - high\n                      - low\n                      - medium\n                      - info\n";
    let cluster = file("wgpolicyk8s.io_clusterpolicyreports.yaml");
    assert!(
        cluster.contains(severities),
        "the severity enum moved: update this test"
    );
    let older = cluster.replace(
        severities,
        "                    enum:\n                      - high\n                      - low\n                      - medium\n",
    );
    for text in [&same, &older] {
        let output = api
            .kubectl_with_input(&["create", "-f", "-"], text)
            .expect("kubectl runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    wait_established(&api);

    let output = apply_report_crds(&api);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a differing CRD must not be overwritten: {stdout}"
    );
    // The equal one is shared, not a conflict; the other is left as it was.
    assert!(
        stdout
            .contains("customresourcedefinition.apiextensions.k8s.io/policyreports.wgpolicyk8s.io serverside-applied"),
        "{stdout}{stderr}"
    );
    assert!(stderr.contains(r#"conflict with "kubectl-create""#), "{stderr}");
    assert!(stderr.contains(".spec.versions"), "{stderr}");
    let enum_ = api
        .kubectl_ok(&[
            "get",
            "crd/clusterpolicyreports.wgpolicyk8s.io",
            "-o",
            "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.results.items.properties.severity.enum}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(enum_, r#"["high","low","medium"]"#, "the other tool's CRD is unchanged");
}

#[test]
fn the_audit_overlay_lets_its_account_read_and_report_but_change_nothing_else() {
    let api = start_api();
    let output = apply_report_crds(&api);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    wait_established(&api);
    let overlay = super::deploy_dir().join("overlays/audit");
    let applied = api
        .kubectl_ok(&["apply", "-k", overlay.to_str().unwrap()])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(applied.contains("cronjob.batch/wasmhook-audit created"), "{applied}");
    // The CronJob mounts the ConfigMap that exists, by its hashed name.
    let config_map = api
        .kubectl_ok(&[
            "-n",
            "wasmhook-system",
            "get",
            "cronjob",
            "wasmhook-audit",
            "-o",
            "jsonpath={.spec.jobTemplate.spec.template.spec.volumes[?(@.name==\"policies\")].configMap.name}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(config_map.starts_with("wasmhook-policies-"), "{config_map}");
    api.kubectl_ok(&["-n", "wasmhook-system", "get", "configmap", &config_map])
        .unwrap_or_else(|error| panic!("{error}"));

    let can = |account: &str, args: &[&str]| {
        let user = format!("--as=system:serviceaccount:wasmhook-system:{account}");
        let mut command = vec!["auth", "can-i"];
        command.extend(args);
        command.push(&user);
        let output = api.kubectl(&command).expect("kubectl runs");
        let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            answer == "yes" || answer == "no",
            "{command:?}: {answer} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        answer == "yes"
    };
    for allowed in [
        &["list", "services", "--all-namespaces"][..],
        &["get", "services", "-n", "default"],
        &["list", "statefulsets.apps", "--all-namespaces"],
        &["list", "namespaces"],
        &["list", "policyreports.wgpolicyk8s.io", "--all-namespaces"],
        &["create", "policyreports.wgpolicyk8s.io", "-n", "default"],
        &["patch", "policyreports.wgpolicyk8s.io", "-n", "default"],
        &["delete", "policyreports.wgpolicyk8s.io", "-n", "default"],
        &["patch", "clusterpolicyreports.wgpolicyk8s.io"],
        &["delete", "clusterpolicyreports.wgpolicyk8s.io"],
    ] {
        assert!(can("wasmhook-audit", allowed), "wasmhook-audit may {allowed:?}");
    }
    for refused in [
        &["delete", "services", "-n", "default"][..],
        &["create", "services", "-n", "default"],
        &["patch", "statefulsets.apps", "-n", "default"],
        &["watch", "services", "--all-namespaces"],
        &["list", "secrets", "--all-namespaces"],
        &["list", "pods", "--all-namespaces"],
        &["patch", "mutatingwebhookconfigurations/wasmhook"],
    ] {
        assert!(!can("wasmhook-audit", refused), "wasmhook-audit may not {refused:?}");
    }
    // The admission server's own account never writes reports.
    assert!(!can(
        "wasmhook",
        &["patch", "policyreports.wgpolicyk8s.io", "-n", "default"]
    ));

    // Uninstalling the overlay leaves the CRDs, and so every tool's reports.
    api.kubectl_ok(&["delete", "-k", overlay.to_str().unwrap(), "--wait=false"])
        .unwrap_or_else(|error| panic!("{error}"));
    for crd in REPORT_CRDS {
        api.kubectl_ok(&["get", crd]).unwrap_or_else(|error| panic!("{error}"));
    }
}
