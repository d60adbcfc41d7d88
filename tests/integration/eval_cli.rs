//! `wasmhook eval`, the policy author's inner loop, run in-process through the
//! same entry point as the binary: YAML manifests, recorded reviews, modes,
//! actions, exit codes and error messages.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};
use wasmhook_policy_artifacts::MISBEHAVING_POLICY_PATH;
use wasmhook_tests::reviews_dir;

/// What a run printed and returned.
struct Run {
    status: u8,
    stdout: String,
    stderr: String,
}

fn eval(args: &[&str]) -> Run {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let argv = ["wasmhook", "eval", "--no-cache"].iter().chain(args).copied();
    let status = wasmhook::cli::run(argv, &mut stdout, &mut stderr);
    Run {
        status,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// Writes `contents` to `name` in a fresh directory that lives as long as the test.
fn file(dir: &tempfile::TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: x-headless
  labels:
    app: x
spec:
  selector:
    app: x
  ports:
  - port: 80
    targetPort: 8080
";

fn review(fixture: &str) -> String {
    reviews_dir().join(fixture).display().to_string()
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_manifest_gets_the_clusterip_patch_and_the_resulting_object() {
    let dir = tempfile::tempdir().unwrap();
    let service = file(&dir, "service.yaml", SERVICE);
    let run = eval(&["--policy", "headless-service", "--object", path(&service)]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("request:  CREATE Service default/x-headless"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("verdict:  ALLOWED with a patch"), "{}", run.stdout);
    assert!(run.stdout.contains(r#""path": "/spec/clusterIP""#), "{}", run.stdout);
    assert!(run.stdout.contains(r#""path": "/spec/clusterIPs""#), "{}", run.stdout);
    assert!(run.stdout.contains("resulting object:\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  clusterIP: None\n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("    targetPort: 8080\n"),
        "untouched fields are kept: {}",
        run.stdout
    );
}

#[test]
fn json_output_is_the_admission_review_response() {
    let dir = tempfile::tempdir().unwrap();
    let service = file(&dir, "service.yaml", SERVICE);
    let run = eval(&[
        "--policy",
        "headless-service",
        "--object",
        path(&service),
        "--output",
        "json",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let review: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["uid"].as_str().unwrap().len(), 36);
    assert_eq!(review["response"]["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(review["response"]["patch"].as_str().expect("a base64 string"))
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&patch).unwrap(),
        json!([
            {"op": "add", "path": "/spec/clusterIP", "value": "None"},
            {"op": "add", "path": "/spec/clusterIPs", "value": ["None"]},
        ])
    );
}

#[test]
fn a_recorded_review_is_evaluated_as_sent() {
    let run = eval(&[
        "--policy",
        "statefulset-service-name",
        "--review",
        &review("mutating-create-statefulset-mysql.json"),
        "--output",
        "json",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let review: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(review["response"]["uid"], "0e1bfc53-b09e-46cd-9fad-ef8e5b5c7c83");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(review["response"]["patch"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&patch).unwrap(),
        json!([{"op": "replace", "path": "/spec/serviceName", "value": "mysql-headless"}])
    );
}

#[test]
fn an_object_nested_deeper_than_serde_json_builds_is_patched_and_said_unrenderable() {
    // The API server accepts far deeper JSON than serde_json's 128 levels
    // (custom resources with preserved unknown fields): the patch is still
    // computed (the deep part is unchanged, compared as text), and the
    // resulting object is reported as not renderable instead of a crash.
    let mut review: Value =
        serde_json::from_str(&std::fs::read_to_string(review("mutating-create-statefulset-mysql.json")).unwrap())
            .unwrap();
    let mut deep = json!("leaf");
    for _ in 0..200 {
        deep = json!({ "nested": deep });
    }
    review["request"]["object"]["spec"]["template"]["spec"]["deep"] = deep;
    let dir = tempfile::tempdir().unwrap();
    let deep_review = file(&dir, "deep.json", &review.to_string());
    let run = eval(&["--policy", "statefulset-service-name", "--review", path(&deep_review)]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains(r#""path": "/spec/serviceName""#), "{}", run.stdout);
    assert!(
        run.stdout.contains("<cannot render: recursion limit exceeded"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_denial_exits_1_with_the_message() {
    let run = eval(&[
        "--policy",
        "headless-service",
        "--settings",
        r#"{"selector": {"matchLabels": {"app.kubernetes.io/name": "hello"}}}"#,
        "--review",
        &review("mutating-update-service-headless-demo.json"),
    ]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(run.stdout.contains("verdict:  DENIED"), "{}", run.stdout);
    assert!(run.stdout.contains("status:   403 Forbidden"), "{}", run.stdout);
    assert!(run.stdout.contains("delete and re-create"), "{}", run.stdout);
}

#[test]
fn validate_mode_denies_what_mutate_mode_would_fix() {
    let dir = tempfile::tempdir().unwrap();
    let service = file(&dir, "service.yaml", SERVICE);
    let run = eval(&[
        "--policy",
        "headless-service",
        "--object",
        path(&service),
        "--mode",
        "validate",
    ]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("would change it: add /spec/clusterIP"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("wanted patch (not applied):"), "{}", run.stdout);

    let monitored = eval(&[
        "--policy",
        "headless-service",
        "--object",
        path(&service),
        "--mode",
        "validate",
        "--action",
        "monitor",
    ]);
    assert_eq!(monitored.status, 0, "{}", monitored.stderr);
    assert!(
        monitored.stdout.contains("ALLOWED (monitor: would deny)"),
        "{}",
        monitored.stdout
    );
    assert!(
        monitored
            .stdout
            .contains("warning:  [monitor] headless-service would deny"),
        "{}",
        monitored.stdout
    );
}

#[test]
fn old_makes_an_update_and_operation_delete_moves_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let with_ip = SERVICE.replace("spec:\n", "spec:\n  clusterIP: 10.96.0.9\n");
    let old = file(&dir, "old.yaml", &with_ip);
    let new = file(
        &dir,
        "new.yaml",
        &with_ip.replace("app: x\nspec", "app: x\n    tier: web\nspec"),
    );
    let update = eval(&[
        "--policy",
        "headless-service",
        "--object",
        path(&new),
        "--old",
        path(&old),
    ]);
    assert_eq!(update.status, 1, "{}", update.stderr);
    assert!(update.stdout.contains("request:  UPDATE Service"), "{}", update.stdout);
    assert!(
        update.stdout.contains("cluster IPs cannot be changed"),
        "{}",
        update.stdout
    );

    let delete = eval(&[
        "--policy",
        "headless-service",
        "--object",
        path(&old),
        "--operation",
        "DELETE",
    ]);
    assert_eq!(delete.status, 0, "{}", delete.stderr);
    assert!(
        delete.stdout.contains("request:  DELETE Service default/x-headless"),
        "{}",
        delete.stdout
    );
}

#[test]
fn settings_come_inline_or_from_a_yaml_file() {
    let dir = tempfile::tempdir().unwrap();
    let statefulset = file(
        &dir,
        "sts.yaml",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: data\nspec:\n  \
         selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n",
    );
    let settings = file(&dir, "settings.yaml", "serviceNameTemplate: \"{name}-peers\"\n");
    let run = eval(&[
        "--policy",
        "statefulset-service-name",
        "--object",
        path(&statefulset),
        "--settings",
        &format!("@{}", path(&settings)),
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains(r#""value": "db-peers""#), "{}", run.stdout);
    assert!(
        run.stdout.contains("request:  CREATE StatefulSet data/db"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_failing_policy_follows_the_failure_policy() {
    let settings = r#"{"behaviour": "loop"}"#;
    let dir = tempfile::tempdir().unwrap();
    let service = file(&dir, "service.yaml", SERVICE);
    let common = [
        "--policy",
        MISBEHAVING_POLICY_PATH,
        "--settings",
        settings,
        "--timeout",
        "100ms",
    ];
    let failed = eval(&[&common[..], &["--object", path(&service)]].concat());
    assert_eq!(failed.status, 1, "{}", failed.stderr);
    assert!(
        failed.stdout.contains("DENIED (the policy failed)"),
        "{}",
        failed.stdout
    );
    assert!(
        failed.stdout.contains("failure:  timed out after 100ms"),
        "{}",
        failed.stdout
    );

    let ignored = eval(&[&common[..], &["--object", path(&service), "--failure-policy", "Ignore"]].concat());
    assert_eq!(ignored.status, 0, "{}", ignored.stderr);
    assert!(
        ignored.stdout.contains("ALLOWED (the policy failed)"),
        "{}",
        ignored.stdout
    );
}

#[test]
fn errors_exit_2_and_say_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let service = file(&dir, "service.yaml", SERVICE);
    let broken = file(&dir, "broken.yaml", "apiVersion: v1\nkind: [Service\n");

    let cases: [(Vec<&str>, &str); 6] = [
        (
            vec!["--policy", "/nowhere/policy.wasm", "--object", path(&service)],
            "cannot read policy module /nowhere/policy.wasm",
        ),
        (
            vec!["--policy", "builtin:nope", "--object", path(&service)],
            "\"nope\" is not a built-in policy",
        ),
        (
            vec![
                "--policy",
                "headless-service",
                "--settings",
                r#"{"nameSufixes": []}"#,
                "--object",
                path(&service),
            ],
            "unknown field `nameSufixes`",
        ),
        (
            vec!["--policy", "headless-service", "--object", path(&broken)],
            "broken.yaml: not valid YAML",
        ),
        (
            vec![
                "--policy",
                "headless-service",
                "--settings",
                "@/nowhere/settings.yaml",
                "--object",
                path(&service),
            ],
            "cannot read settings file /nowhere/settings.yaml",
        ),
        (vec!["--policy", "headless-service"], "--review"),
    ];
    for (args, expected) in cases {
        let run = eval(&args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}

const STATEFULSET: &str = "\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: shop}
spec:
  serviceName: web-headless
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
";

#[test]
fn eval_reads_cluster_objects_from_context_files() {
    let dir = tempfile::tempdir().unwrap();
    let statefulset = file(&dir, "sts.yaml", STATEFULSET);
    // `kubectl get -o yaml` writes a List.
    let cluster = file(
        &dir,
        "cluster.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  \
         metadata: {name: web-headless, namespace: shop}\n  spec: {clusterIP: 10.96.0.9, selector: {app: web}}\n",
    );
    let run = eval(&[
        "--policy",
        "statefulset-service-name",
        "--object",
        path(&statefulset),
        "--context",
        path(&cluster),
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("is not headless (clusterIP 10.96.0.9)"),
        "{}",
        run.stdout
    );

    // Declared but absent: the Service is missing, as in a cluster without it.
    let run = eval(&[
        "--policy",
        "statefulset-service-name",
        "--object",
        path(&statefulset),
        "--context-kind",
        "v1/Service",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("does not exist"), "{}", run.stdout);

    // No context: the policy behaves as without cluster access (no finding).
    let run = eval(&["--policy", "statefulset-service-name", "--object", path(&statefulset)]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("spec.serviceName) "), "{}", run.stdout);

    // A broken context file is a usage error naming the file and document.
    let broken = file(&dir, "broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\n");
    let run = eval(&[
        "--policy",
        "statefulset-service-name",
        "--object",
        path(&statefulset),
        "--context",
        path(&broken),
    ]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("broken.yaml, document 1: no metadata.name"),
        "{}",
        run.stderr
    );
    let run = eval(&[
        "--policy",
        "statefulset-service-name",
        "--object",
        path(&statefulset),
        "--context-kind",
        "Service",
    ]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("is not APIVERSION/KIND"), "{}", run.stderr);
}
