//! `wasmhook audit` against a real API server, with the policy set deploy/
//! ships: objects that pass and fail each built-in, seeded with `kubectl`;
//! the table and the JSON compared exactly; PolicyReports written, read back
//! with `kubectl`, updated in place after a fix and pruned after a delete.

use serde_json::Value;
use wasmhook_tests::kube::KubeApi;

use super::{deploy_dir, start_api};

/// Objects before wasmhook: in `shop`, a "headless" Service with a cluster
/// IP, a real headless one, an ordinary Service, and StatefulSets whose
/// Service is not headless, fine, unnamed, or missing; in `kube-system` and
/// in a namespace labelled `wasmhook.dev/ignore`, objects the registered
/// webhooks would never see.
const SEED: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy, labels: {wasmhook.dev/ignore: "true"}}
---
apiVersion: v1
kind: Service
metadata: {name: web-headless, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db-headless, namespace: shop}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: old-headless, namespace: legacy}
spec: {selector: {app: old}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: dns-headless, namespace: kube-system}
spec: {selector: {app: dns}, ports: [{port: 53}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: shop}
spec:
  serviceName: web-headless
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db-headless
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: postgres}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: cache, namespace: shop}
spec:
  serviceName: ""
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec: {containers: [{name: c, image: redis}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: queue, namespace: shop}
spec:
  serviceName: queue-headless
  selector: {matchLabels: {app: queue}}
  template:
    metadata: {labels: {app: queue}}
    spec: {containers: [{name: c, image: rabbitmq}]}
"#;

/// `wasmhook audit` in process with deploy/base's policy set, as
/// cluster-admin: exit status, stdout, stderr.
fn audit(api: &KubeApi, extra: &[&str]) -> (u8, String, String) {
    audit_as(api, &api.kubeconfig, extra)
}

/// [`audit`] with the credentials of `kubeconfig`.
fn audit_as(api: &KubeApi, kubeconfig: &std::path::Path, extra: &[&str]) -> (u8, String, String) {
    let config = deploy_dir().join("base/policies.yaml");
    let cache = api.dir().join("audit-cache");
    let mut args = vec![
        "wasmhook".to_owned(),
        "audit".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
        "--kubeconfig".to_owned(),
        kubeconfig.display().to_string(),
        "--cache-dir".to_owned(),
        cache.display().to_string(),
        "--progress".to_owned(),
        "never".to_owned(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = wasmhook::cli::run(args, &mut out, &mut err);
    (
        status,
        String::from_utf8(out).expect("UTF-8"),
        String::from_utf8(err).expect("UTF-8"),
    )
}

fn seed(api: &KubeApi, yaml: &str) {
    let output = api
        .kubectl_with_input(&["apply", "-f", "-"], yaml)
        .expect("kubectl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The `shop` PolicyReport's results as (policy, kind/name, result), sorted.
fn report_results(api: &KubeApi) -> Vec<(String, String, String)> {
    let json = api
        .kubectl_ok(&["-n", "shop", "get", "policyreport", "wasmhook-audit", "-o", "json"])
        .unwrap_or_else(|error| panic!("{error}"));
    let report: Value = serde_json::from_str(&json).expect("JSON");
    let mut results: Vec<(String, String, String)> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| {
            (
                result["policy"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}/{}",
                    result["resources"][0]["kind"].as_str().unwrap_or_default(),
                    result["resources"][0]["name"].as_str().unwrap_or_default()
                ),
                result["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    results.sort();
    results
}

fn triple(policy: &str, object: &str, result: &str) -> (String, String, String) {
    (policy.to_owned(), object.to_owned(), result.to_owned())
}

/// The table for SEED, with `<IP>` for web-headless's cluster IP.
const EXPECTED_TABLE: &str = "\
headless-service (mutate): services
  NAMESPACE  OBJECT                RESULT  MESSAGE
  shop       Service/web-headless  fail    refused: Service shop/web-headless must be headless (its name ends with \"-headless\"), but it has cluster IP <IP>, and cluster IPs cannot be changed: delete and re-create it as headless (spec.clusterIP: None).
  4 objects: 3 pass, 0 warn, 1 fail, 0 error

statefulset-service-name (mutate): statefulsets.apps
  NAMESPACE  OBJECT             RESULT  MESSAGE
  shop       StatefulSet/cache  fail    would set spec.serviceName to cache-headless: a StatefulSet's spec.serviceName cannot be changed after creation: delete it with `kubectl delete statefulset cache --cascade=orphan` (its pods keep running) and re-create it; warnings: Service \"cache-headless\" (spec.serviceName) does not exist: create it with clusterIP: None, selecting app=cache
             StatefulSet/queue  warn    Service \"queue-headless\" (spec.serviceName) does not exist: create it with clusterIP: None, selecting app=queue
             StatefulSet/web    warn    Service \"web-headless\" (spec.serviceName) is not headless (clusterIP <IP>): re-create it with clusterIP: None
  4 objects: 1 pass, 2 warn, 1 fail, 0 error

headless-service-verify (validate): services
  NAMESPACE  OBJECT                RESULT  MESSAGE
  shop       Service/web-headless  fail    refused: Service shop/web-headless must be headless (its name ends with \"-headless\"), but it has cluster IP <IP>, and cluster IPs cannot be changed: delete and re-create it as headless (spec.clusterIP: None).
  4 objects: 3 pass, 0 warn, 1 fail, 0 error

statefulset-service-name-verify (validate): statefulsets.apps
  NAMESPACE  OBJECT             RESULT  MESSAGE
  shop       StatefulSet/cache  fail    refused: the policy would set spec.serviceName to cache-headless: a StatefulSet's spec.serviceName cannot be changed after creation: delete it with `kubectl delete statefulset cache --cascade=orphan` (its pods keep running) and re-create it
  4 objects: 3 pass, 0 warn, 1 fail, 0 error

headless-service-dependents (validate): not audited
  note: services not audited: its rules select DELETE, UPDATE only, and an audit evaluates each object as the CREATE that made it

8 objects judged, 16 results: 10 pass, 2 warn, 4 fail, 0 error
";

/// Every result of the JSON output as (policy, namespace, kind/name, result).
fn json_results(json: &str) -> Vec<(String, String, String, String)> {
    let document: Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(document["apiVersion"], "wasmhook.dev/v1alpha1");
    assert_eq!(document["kind"], "AuditReport");
    document["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| {
            let text = |pointer: &str| {
                result
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_owned()
            };
            (
                text("/policy"),
                text("/object/namespace"),
                format!("{}/{}", text("/object/kind"), text("/object/name")),
                text("/result"),
            )
        })
        .collect()
}

#[test]
fn audit_reports_every_existing_object_the_policy_set_would_refuse_or_change() {
    let api = start_api();
    seed(&api, SEED);
    let ip = api
        .kubectl_ok(&[
            "-n",
            "shop",
            "get",
            "service",
            "web-headless",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));

    // The table, exactly; failures exit 1.
    let (status, table, err) = audit(&api, &[]);
    assert_eq!(status, 1, "failures exit 1\n{table}\n{err}");
    assert_eq!(table.replace(&ip, "<IP>"), EXPECTED_TABLE, "{err}");

    // JSON: every result, passes included, in policy-set order.
    let (status, json, err) = audit(&api, &["--output", "json", "--fail-on", "never"]);
    assert_eq!(status, 0, "--fail-on never\n{err}");
    let row = |policy: &str, namespace: &str, object: &str, result: &str| {
        (
            policy.to_owned(),
            namespace.to_owned(),
            object.to_owned(),
            result.to_owned(),
        )
    };
    let mut expected = Vec::new();
    for policy in ["headless-service", "headless-service-verify"] {
        expected.extend([
            row(policy, "default", "Service/kubernetes", "pass"),
            row(policy, "shop", "Service/api", "pass"),
            row(policy, "shop", "Service/db-headless", "pass"),
            row(policy, "shop", "Service/web-headless", "fail"),
        ]);
    }
    let statefulsets = |policy: &str, warn: &str| {
        vec![
            row(policy, "shop", "StatefulSet/cache", "fail"),
            row(policy, "shop", "StatefulSet/db", "pass"),
            row(policy, "shop", "StatefulSet/queue", warn),
            row(policy, "shop", "StatefulSet/web", warn),
        ]
    };
    // Policy-set order: headless-service, statefulset-service-name, then the verify steps.
    let mut ordered = expected[..4].to_vec();
    ordered.extend(statefulsets("statefulset-service-name", "warn"));
    ordered.extend(expected[4..].to_vec());
    // The verify step reads no context: nothing to warn about.
    ordered.extend(statefulsets("statefulset-service-name-verify", "pass"));
    assert_eq!(json_results(&json), ordered);
    let document: Value = serde_json::from_str(&json).expect("JSON");
    let fix = &document["results"][3];
    assert_eq!(fix["patch"], Value::Null, "a denial carries no patch: {fix}");
    let cache = &document["results"][4];
    assert_eq!(
        cache["patch"],
        serde_json::json!([{"op": "replace", "path": "/spec/serviceName", "value": "cache-headless"}])
    );

    // One namespace, one policy: only what was asked.
    let (status, table, err) = audit(&api, &["--namespace", "default", "--policy", "headless-service"]);
    assert_eq!(status, 0, "{table}\n{err}");
    assert_eq!(
        table,
        "headless-service (mutate): services\n  the one object selected passes\n\n1 object judged, 1 result: 1 pass, 0 \
         warn, 0 fail, 0 error\n"
    );

    // Usage and connection errors exit 2.
    let (status, _, err) = audit(&api, &["--namespace", "nowhere"]);
    assert_eq!(status, 2);
    assert!(err.contains("namespace \"nowhere\" does not exist"), "{err}");
    let (status, _, err) = audit(&api, &["--report"]);
    assert_eq!(status, 2, "no CRD, no report");
    assert!(
        err.contains("wgpolicyk8s.io/v1alpha2 PolicyReport is not served")
            && err.contains("kubectl apply --server-side -k deploy/crds"),
        "{err}"
    );
}

#[test]
fn policy_reports_are_written_updated_in_place_and_pruned() {
    let api = start_api();
    api.install_policy_report_crds()
        .unwrap_or_else(|error| panic!("{error}"));
    seed(&api, SEED);

    let (status, _, err) = audit(&api, &["--report"]);
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("PolicyReports: 2 applied, 0 stale deleted"), "{err}");
    let shop = report_results(&api);
    assert_eq!(shop.len(), 14, "{shop:?}");
    for expected in [
        triple("headless-service", "Service/web-headless", "fail"),
        triple("statefulset-service-name", "StatefulSet/web", "warn"),
        triple("statefulset-service-name", "StatefulSet/queue", "warn"),
        triple("statefulset-service-name", "StatefulSet/cache", "fail"),
        triple("headless-service-verify", "Service/db-headless", "pass"),
    ] {
        assert!(shop.contains(&expected), "{expected:?} in {shop:?}");
    }
    let summary = api
        .kubectl_ok(&[
            "-n",
            "shop",
            "get",
            "polr",
            "wasmhook-audit",
            "-o",
            "jsonpath={.summary}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    let summary: Value = serde_json::from_str(&summary).expect("JSON");
    assert_eq!(
        summary,
        serde_json::json!({"pass": 8, "warn": 2, "fail": 4, "error": 0, "skip": 0})
    );
    // `default`'s kubernetes Service passes: its own report.
    let default = api
        .kubectl_ok(&[
            "-n",
            "default",
            "get",
            "polr",
            "wasmhook-audit",
            "-o",
            "jsonpath={.summary.pass}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(default, "2");
    let uid_before = api
        .kubectl_ok(&[
            "-n",
            "shop",
            "get",
            "polr",
            "wasmhook-audit",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));

    // Fix web-headless as the finding says (delete, re-create headless), and
    // delete the StatefulSet queue: the report changes in place.
    api.kubectl_ok(&["-n", "shop", "delete", "service", "web-headless"])
        .unwrap_or_else(|error| panic!("{error}"));
    seed(
        &api,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-headless, namespace: shop}\nspec: {clusterIP: None, \
         selector: {app: web}, ports: [{port: 80}]}\n",
    );
    api.kubectl_ok(&["-n", "shop", "delete", "statefulset", "queue"])
        .unwrap_or_else(|error| panic!("{error}"));
    let (status, _, err) = audit(&api, &["--report"]);
    assert_eq!(status, 1, "cache still fails\n{err}");
    let shop = report_results(&api);
    assert!(
        shop.contains(&triple("headless-service", "Service/web-headless", "pass")),
        "{shop:?}"
    );
    assert!(
        shop.contains(&triple("statefulset-service-name", "StatefulSet/web", "pass")),
        "{shop:?}"
    );
    assert!(
        !shop.iter().any(|(_, object, _)| object == "StatefulSet/queue"),
        "a deleted object's results are pruned: {shop:?}"
    );
    assert_eq!(shop.len(), 12, "{shop:?}");
    let uid_after = api
        .kubectl_ok(&[
            "-n",
            "shop",
            "get",
            "polr",
            "wasmhook-audit",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(uid_before, uid_after, "updated in place, not re-created");

    // A partial run (one policy) keeps the other policies' results.
    let (_, _, err) = audit(&api, &["--report", "--policy", "headless-service"]);
    assert!(err.contains("PolicyReports: 2 applied"), "{err}");
    assert_eq!(report_results(&api), shop);

    // Everything in `default` gone from the audit's view (labelled ignore):
    // its report is pruned.
    api.kubectl_ok(&["label", "namespace", "default", "wasmhook.dev/ignore=true"])
        .unwrap_or_else(|error| panic!("{error}"));
    let (_, _, err) = audit(&api, &["--report"]);
    assert!(err.contains("PolicyReports: 1 applied, 1 stale deleted"), "{err}");
    let remaining = api
        .kubectl_ok(&["get", "polr", "-A", "-o", "jsonpath={.items[*].metadata.namespace}"])
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(remaining, "shop");
}

/// The CronJob's identity: the ServiceAccount and RBAC of
/// deploy/components/audit, through a real service-account token — the
/// generated read-only grants are enough to audit and to write reports.
#[test]
fn the_audit_components_rbac_is_enough_to_audit_and_report() {
    let api = start_api();
    api.install_policy_report_crds()
        .unwrap_or_else(|error| panic!("{error}"));
    seed(&api, SEED);
    let component = deploy_dir().join("components/audit");
    api.kubectl_ok(&["create", "namespace", "wasmhook-system"])
        .unwrap_or_else(|error| panic!("{error}"));
    for file in ["serviceaccount.yaml", "rbac-audit.yaml"] {
        api.kubectl_ok(&["apply", "-f", component.join(file).to_str().expect("UTF-8")])
            .unwrap_or_else(|error| panic!("{error}"));
    }
    let token = api
        .kubectl_ok(&["-n", "wasmhook-system", "create", "token", "wasmhook-audit"])
        .unwrap_or_else(|error| panic!("{error}"));
    let kubeconfig = api
        .kubeconfig_for_token("wasmhook-audit", token.trim())
        .expect("a kubeconfig");

    let (status, _, err) = audit_as(&api, &kubeconfig, &["--report", "--fail-on", "never"]);
    assert_eq!(status, 0, "{err}");
    assert!(err.contains("PolicyReports: 2 applied"), "{err}");
    assert_eq!(report_results(&api).len(), 14);

    // Without the grant, the audit stops with what to do, and writes nothing.
    api.kubectl_ok(&["delete", "clusterrolebinding", "wasmhook-audit"])
        .unwrap_or_else(|error| panic!("{error}"));
    let (status, out, err) = audit_as(&api, &kubeconfig, &[]);
    assert_eq!(status, 2, "{out}\n{err}");
    assert!(err.contains("forbidden") || err.contains("Forbidden"), "{err}");
    assert!(out.is_empty(), "an incomplete audit reports nothing: {out}");
}

/// A policy's own selectors, and match conditions the audit cannot evaluate.
#[test]
fn selectors_narrow_the_audit_and_unevaluated_conditions_are_said() {
    let api = start_api();
    seed(
        &api,
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: db-headless, namespace: shop, labels: {tier: db}}
spec: {selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-headless, namespace: shop, labels: {tier: web}}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db-headless, namespace: other, labels: {tier: db}}
spec: {selector: {app: db}, ports: [{port: 5432}]}
"#,
    );
    let config = api.dir().join("selectors.yaml");
    std::fs::write(
        &config,
        r#"apiVersion: wasmhook.dev/v1alpha1
kind: PolicySet
policies:
  - name: db-services
    module: builtin:headless-service
    namespaceSelector: {matchLabels: {team: shop}}
    objectSelector: {matchLabels: {tier: db}}
    matchConditions:
      - {name: not-a-dry-run, expression: "!request.dryRun"}
"#,
    )
    .expect("writes");
    let config = config.to_str().expect("UTF-8");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = wasmhook::cli::run(
        [
            "wasmhook",
            "audit",
            "--config",
            config,
            "--kubeconfig",
            api.kubeconfig.to_str().expect("UTF-8"),
            "--no-cache",
            "-o",
            "json",
        ],
        &mut out,
        &mut err,
    );
    let err = String::from_utf8_lossy(&err);
    assert_eq!(status, 1, "{err}");
    let document: Value = serde_json::from_slice(&out).expect("JSON");
    let judged: Vec<(&str, &str, &str)> = document["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| {
            (
                result["object"]["namespace"].as_str().unwrap_or_default(),
                result["object"]["name"].as_str().unwrap_or_default(),
                result["result"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        judged,
        vec![("shop", "db-headless", "fail")],
        "only what both selectors select"
    );
    assert_eq!(document["policies"][0]["conditionsNotEvaluated"], true);
}
