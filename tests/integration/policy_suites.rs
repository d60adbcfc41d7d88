//! `wasmhook test`: the suites shipped with the policies pass; a failing case
//! says what differs; a broken suite stops the run with the file and field;
//! a policy's expected failure is checked like any other expectation.

use std::path::{Path, PathBuf};

use wasmhook::testsuite::{self, Runner, Suite};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `wasmhook test` in-process with `args`; exit status, stdout, stderr.
fn wasmhook_test(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut argv = vec!["wasmhook", "test", "--no-cache"];
    argv.extend_from_slice(args);
    let status = wasmhook::cli::run(argv, &mut out, &mut err);
    (status, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

fn write_suite(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_suite_shipped_with_the_policies_passes() {
    let suites = testsuite::discover(&[repository().join("policies")]).unwrap();
    assert!(
        suites.len() >= 3,
        "expected the built-in policies' suites, found {suites:?}"
    );
    let mut runner = Runner::new(None).unwrap();
    let mut cases = 0;
    for path in &suites {
        let suite = Suite::read(path).unwrap_or_else(|error| panic!("{error}"));
        for case in runner.run(&suite).cases {
            assert!(case.passed(), "{}: {}: {:?}", path.display(), case.name, case.problems);
            cases += 1;
        }
    }
    assert!(cases >= 15, "only {cases} cases");
}

#[test]
fn the_command_prints_a_table_and_exits_zero_when_everything_passes() {
    let suite = repository().join("policies/headless-service/tests/headless-service.test.yaml");
    let (status, out, err) = wasmhook_test(&[suite.to_str().unwrap()]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(
        out.contains("ok    a Service named *-headless becomes headless"),
        "{out}"
    );
    assert!(out.contains("1 suite, 10 passed, 0 failed"), "{out}");
}

#[test]
fn a_failing_case_shows_what_differs_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = repository().join("policies/headless-service/tests/manifests/db-headless.yaml");
    write_suite(
        dir.path(),
        "wrong.test.yaml",
        &format!(
            r#"apiVersion: wasmhook.dev/v1alpha1
kind: PolicyTestSuite
policy:
  module: builtin:headless-service
tests:
  - name: right
    object: {manifest}
    expect:
      allowed: true
      patch:
        - {{op: add, path: /spec/clusterIP, value: None}}
        - {{op: add, path: /spec/clusterIPs, value: [None]}}
  - name: wrong
    object: {manifest}
    expect:
      allowed: false
      message: must be headless
      patch: [{{op: add, path: /spec/clusterIP, value: "10.0.0.1"}}]
      object: {{apiVersion: v1, kind: Service, metadata: {{name: db-headless, namespace: shop, labels: {{app: db}}}}, spec: {{clusterIP: None, clusterIPs: [None], selector: {{app: db}}}}}}
"#,
            manifest = manifest.display()
        ),
    );
    let (status, out, _) = wasmhook_test(&[dir.path().to_str().unwrap()]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("ok    right"), "{out}");
    assert!(out.contains("FAIL  wrong"), "{out}");
    for expected in [
        "expected denied, got allowed",
        "expected a message containing \"must be headless\", got None",
        r#"expected: [{"op":"add","path":"/spec/clusterIP","value":"10.0.0.1"}]"#,
        r#"actual:   [{"op":"add","path":"/spec/clusterIP","value":"None"},{"op":"add","path":"/spec/clusterIPs","value":["None"]}]"#,
        r#"/spec/ports: expected absent, got [{"name":"postgres","port":5432}]"#,
        "1 suite, 1 passed, 1 failed",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn a_broken_suite_stops_the_run_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(
        dir.path(),
        "typo.test.yaml",
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicyTestSuite\npolicy: {module: builtin:headless-service}\n\
         tests:\n  - name: x\n    objekt: a.yaml\n    expect: {allowed: true}\n",
    );
    let (status, out, err) = wasmhook_test(&[suite.to_str().unwrap()]);
    assert_eq!(status, 2, "{out}{err}");
    assert!(out.is_empty(), "nothing runs before every suite is read: {out}");
    assert!(
        err.contains("typo.test.yaml") && err.contains("unknown field `objekt`"),
        "{err}"
    );

    let contradiction = write_suite(
        dir.path(),
        "contradiction.test.yaml",
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicyTestSuite\npolicy: {module: builtin:headless-service}\n\
         tests:\n  - name: both\n    object: {apiVersion: v1, kind: Service, metadata: {name: a}}\n    \
         expect: {allowed: true, unchanged: true, patch: []}\n",
    );
    let (status, _, err) = wasmhook_test(&[contradiction.to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(
        err.contains(r#"tests[0] ("both"): expect: `unchanged` contradicts"#),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let (status, _, err) = wasmhook_test(&[empty.path().to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(err.contains("no *.test.yaml file in this directory"), "{err}");
}

#[test]
fn an_expected_policy_failure_is_an_expectation_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let policy = wasmhook_policy_artifacts::MISBEHAVING_POLICY_PATH;
    let object = "{apiVersion: v1, kind: Service, metadata: {name: a}}";
    let suite = write_suite(
        dir.path(),
        "failures.test.yaml",
        &format!(
            "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicyTestSuite\n\
             policy: {{module: {policy}, settings: {{behaviour: loop}}, timeout: 100ms}}\ntests:\n\
             \x20 - name: it times out\n    object: {object}\n    \
             expect: {{allowed: false, failure: timed out after 100ms, message: failed}}\n\
             \x20 - name: a failure nobody expected\n    object: {object}\n    expect: {{allowed: true}}\n\
             \x20 - name: an error, not a timeout\n    object: {object}\n    settings: {{behaviour: error}}\n    \
             expect: {{allowed: false, failure: timed out}}\n"
        ),
    );
    let (status, out, _) = wasmhook_test(&[suite.to_str().unwrap()]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("ok    it times out"), "{out}");
    assert!(out.contains("the policy failed: timed out after 100ms"), "{out}");
    assert!(
        out.contains(r#"the policy failed with "reported an error: deliberate policy error", which lacks "timed out""#),
        "{out}"
    );
}

#[test]
fn a_suite_naming_a_registry_module_says_to_pull_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(
        dir.path(),
        "registry.test.yaml",
        "apiVersion: wasmhook.dev/v1alpha1\nkind: PolicyTestSuite\n\
         policy: {module: \"oci://ghcr.io/acme/policies/require-team:1.0.0\"}\ntests:\n\
         \x20 - name: any\n    object: {apiVersion: v1, kind: Service, metadata: {name: a}}\n    expect: {allowed: true}\n",
    );
    let (status, out, err) = wasmhook_test(&[suite.to_str().unwrap()]);
    assert_ne!(status, 0, "{out}");
    let said = format!("{out}{err}");
    assert!(
        said.contains("oci://ghcr.io/acme/policies/require-team:1.0.0"),
        "{said}"
    );
    assert!(said.contains("wasmhook pull it to a file first"), "{said}");
}
