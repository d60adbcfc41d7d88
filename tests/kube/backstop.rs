//! The backstop (`wasmhook manifests --backstop`) on a real API server:
//! ValidatingAdmissionPolicies that kube-apiserver 1.28 evaluates itself
//! (v1beta1, behind its feature gate), with no wasmhook running.
//!
//! - Every case of `fixtures/expected.json` — each recorded or crafted
//!   review, with the policy and settings of the case — is sent to the API
//!   server as the request it records, under a backstop generated from a
//!   policy set holding that policy in validate mode: what the validate-mode
//!   built-in denies is refused with the built-in's words, the rest is
//!   allowed. A few more StatefulSets and Services, for the denials no
//!   fixture reaches, are compared word for word with the built-in run
//!   natively on the same request.
//! - deploy/overlays/backstop's policy set: with the webhook down the
//!   objects the built-ins would fix or deny are refused and the rest is
//!   stored; with the webhook registered (failurePolicy Ignore) a
//!   "-headless" Service without `clusterIP` is made headless by the webhook
//!   and passes the backstop; with the server stopped again the backstop
//!   holds while other Services are still written.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmhook::backstop::{ApiVersion, Backstop};
use wasmhook::config::PolicySet;
use wasmhook_tests::kube::KubeApi;
use wasmhook_tests::{Case, cases, evaluate_native, request};

use super::{deploy_dir, statefulset};

/// kube-apiserver 1.28 serves ValidatingAdmissionPolicy (beta) only with
/// its feature gate and API version on. The recorded fixtures' cluster IPs
/// are in 10.96.0.0/12, the range of the cluster they were recorded in.
const API_FLAGS: &[&str] = &[
    "--feature-gates=ValidatingAdmissionPolicy=true",
    "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
    "--service-cluster-ip-range=10.96.0.0/12",
];

/// wasmhook's namespace and Service in the generated objects.
const NAMESPACE: &str = "wasmhook-system";
const SERVICE: &str = "wasmhook";

/// The fixtures the API server refuses itself, before any validating
/// admission, and its words:
/// - a StatefulSet whose selector does not match its template (the built-in
///   denies it in the mutating phase, which runs before the API server's
///   validation; the backstop, validating, never sees it, so it has no check
///   of its own for it);
/// - the validating phase of a recorded dry run, whose cluster IP is the
///   placeholder a dry run allocates (the range's network address), which a
///   request may not ask for. Its mutating phase is sent.
const REFUSED_BEFORE_THE_BACKSTOP: &[(&str, &str)] = &[
    (
        "crafted-mutating-create-statefulset-mysql-mismatch.json",
        "`selector` does not match template `labels`",
    ),
    (
        "validating-create-service-dry-svc.json",
        "failed to allocate IP 10.96.0.0: the provided IP (10.96.0.0) is not in the valid range",
    ),
];

fn start() -> KubeApi {
    KubeApi::start(API_FLAGS).unwrap_or_else(|error| panic!("cannot start the test API server: {error}"))
}

/// What the API server answered a request.
#[derive(Debug)]
enum Outcome {
    Allowed,
    Refused(String),
}

/// Runs kubectl as `user` (impersonated, with cluster-admin's group), with
/// `input` on its standard input.
fn as_user(api: &KubeApi, user: &str, args: &[&str], input: &str) -> Outcome {
    let mut all = vec!["--as", user, "--as-group", "system:masters"];
    all.extend_from_slice(args);
    kubectl(api, &all, input)
}

/// Runs kubectl with `input` on its standard input: what the API server
/// answered.
fn kubectl(api: &KubeApi, args: &[&str], input: &str) -> Outcome {
    let output = api.kubectl_with_input(args, input).expect("kubectl runs");
    if output.status.success() {
        Outcome::Allowed
    } else {
        Outcome::Refused(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// An object of a review as a client would send it: without what the API
/// server sets on storing it.
fn as_sent(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            metadata.remove(field);
        }
    }
    if let Some(object) = object.as_object_mut() {
        object.remove("status");
    }
    object
}

/// One policy of the cases' policy set: a built-in with one case's
/// settings, whose backstop applies only to requests of its own user.
struct Group {
    policy: String,
    settings: Value,
}

impl Group {
    fn name(index: usize) -> String {
        format!("case-{index}")
    }

    fn user(index: usize) -> String {
        format!("backstop-{}", Self::name(index))
    }
}

/// The policy set of `groups`, in validate mode, each policy seeing Services
/// and StatefulSets (so the backstops' own kind checks are exercised) and,
/// through `matchConditions`, only its own user's requests.
fn policy_set(groups: &[Group]) -> String {
    let policies: Vec<Value> = groups
        .iter()
        .enumerate()
        .map(|(index, group)| {
            json!({
                "name": Group::name(index),
                "module": format!("builtin:{}", group.policy),
                "mode": "validate",
                "failurePolicy": "Ignore",
                "settings": group.settings,
                "rules": [{
                    "operations": ["CREATE", "UPDATE", "DELETE"],
                    "apiGroups": ["", "apps"],
                    "apiVersions": ["v1"],
                    "resources": ["services", "statefulsets"],
                }],
                "matchConditions": [{
                    "name": "case",
                    "expression": format!("request.userInfo.username == '{}'", Group::user(index)),
                }],
            })
        })
        .collect();
    json!({"apiVersion": "wasmhook.dev/v1alpha1", "kind": "PolicySet", "policies": policies}).to_string()
}

/// The backstop of a policy set file's text, as v1beta1 YAML.
fn backstop_yaml(api: &KubeApi, file: &str, policy_set: &str) -> String {
    let path = api.dir().join(file);
    std::fs::write(&path, policy_set).unwrap();
    let set = PolicySet::from_file(&path, usize::MAX).unwrap_or_else(|error| panic!("{error}"));
    Backstop::build(&set, NAMESPACE, SERVICE)
        .and_then(|backstop| backstop.to_yaml(file, ApiVersion::V1beta1))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Applies `yaml`, then waits until the API server enforces it: a probe
/// policy applied after it denies. The server reads policies and bindings
/// through one watch each and reconciles them with one worker, in order, so
/// once the probe is in force everything applied before it is too.
fn apply_and_wait(api: &KubeApi, yaml: &str, probe: &str) {
    let output = api.kubectl_with_input(&["apply", "-f", "-"], yaml).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let probe_yaml = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1beta1
kind: ValidatingAdmissionPolicy
metadata: {{name: {probe}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}}]
  validations: [{{expression: "object.metadata.name != '{probe}'", message: probe}}]
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {probe}}}
spec: {{policyName: {probe}, validationActions: [Deny]}}
"#
    );
    let output = api.kubectl_with_input(&["apply", "-f", "-"], &probe_yaml).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = api
            .kubectl(&["-n", "default", "create", "configmap", probe, "--dry-run=server"])
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains(&format!("ValidatingAdmissionPolicy '{probe}'")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the policies never came into force: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl create namespace` for each name that does not exist yet.
fn create_namespaces<'a>(api: &KubeApi, namespaces: impl IntoIterator<Item = &'a str>) {
    for namespace in namespaces.into_iter().collect::<BTreeSet<_>>() {
        if api.kubectl(&["get", "namespace", namespace]).unwrap().status.success() {
            continue;
        }
        api.kubectl_ok(&["create", "namespace", namespace]).unwrap();
    }
}

/// The request a case's fixture records, sent as `user` as a server-side
/// dry run (nothing is stored, so the same object serves every case).
fn send(api: &KubeApi, user: &str, request: &Value) -> Outcome {
    let namespace = request["namespace"].as_str().unwrap_or("default");
    match request["operation"].as_str() {
        Some("CREATE") => as_user(
            api,
            user,
            &[
                "-n",
                namespace,
                "create",
                "--dry-run=server",
                "--validate=false",
                "-f",
                "-",
            ],
            &as_sent(&request["object"]).to_string(),
        ),
        Some("UPDATE") => as_user(
            api,
            user,
            &[
                "-n",
                namespace,
                "replace",
                "--dry-run=server",
                "--validate=false",
                "-f",
                "-",
            ],
            &as_sent(&request["object"]).to_string(),
        ),
        Some("DELETE") => {
            let resource = request["resource"]["resource"].as_str().unwrap();
            let name = request["name"].as_str().unwrap();
            as_user(
                api,
                user,
                &["-n", namespace, "delete", resource, name, "--dry-run=server"],
                "",
            )
        }
        other => panic!("no operation {other:?}"),
    }
}

/// What the backstop must say where the validate-mode built-in denies a
/// would-be mutation: what to write, named by the patch's first operation
/// (`spec.clusterIP: None`, `spec.serviceName: mysql-headless`).
fn what_to_write(case: &Case) -> String {
    let patch = serde_json::to_value(&case.patch).unwrap();
    let first = &patch[0];
    let field = first["path"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .replace('/', ".");
    let value = match &first["value"] {
        Value::String(value) => value.clone(),
        value => value.to_string(),
    };
    format!("{field}: {value}")
}

/// Checks the API server's answer to a case against the validate-mode
/// built-in's: the same verdict, in the built-in's words.
fn check_case(case: &Case, policy: &str, outcome: &Outcome) -> Result<(), String> {
    if let Some((_, refusal)) = REFUSED_BEFORE_THE_BACKSTOP
        .iter()
        .find(|(fixture, _)| *fixture == case.fixture)
    {
        return match outcome {
            Outcome::Refused(message)
                if message.contains(refusal) && !message.contains("ValidatingAdmissionPolicy") =>
            {
                Ok(())
            }
            outcome => Err(format!(
                "expected the API server's own refusal ({refusal}), got {outcome:?}"
            )),
        };
    }
    let denied = !case.allowed || !case.patch.0.is_empty();
    let from_backstop = format!("ValidatingAdmissionPolicy '{policy}' with binding '{policy}' denied request: ");
    match (denied, outcome) {
        (false, Outcome::Allowed) => Ok(()),
        (false, Outcome::Refused(message)) => Err(format!("allowed by the built-in, refused: {message}")),
        (true, Outcome::Allowed) => Err("denied by the built-in, allowed".to_owned()),
        (true, Outcome::Refused(message)) => {
            let expected = match &case.message_contains {
                Some(words) if !case.allowed => words.clone(),
                _ => what_to_write(case),
            };
            if message.contains(&from_backstop) && message.contains(&expected) {
                Ok(())
            } else {
                Err(format!("expected {from_backstop}…{expected}…, got: {message}"))
            }
        }
    }
}

#[test]
fn the_backstop_agrees_with_the_validate_mode_built_ins_on_every_fixture() {
    let api = start();
    let cases = cases();

    let mut groups: Vec<Group> = Vec::new();
    let mut group_of = Vec::new();
    for case in &cases {
        let index = match groups
            .iter()
            .position(|group| group.policy == case.policy && group.settings == case.settings)
        {
            Some(index) => index,
            None => {
                groups.push(Group {
                    policy: case.policy.clone(),
                    settings: case.settings.clone(),
                });
                groups.len() - 1
            }
        };
        group_of.push(index);
    }
    let requests: Vec<Value> = cases.iter().map(|case| request(&case.fixture)).collect();
    create_namespaces(
        &api,
        requests.iter().filter_map(|request| request["namespace"].as_str()),
    );

    let yaml = backstop_yaml(&api, "cases.json", &policy_set(&groups));
    apply_and_wait(&api, &yaml, "probe-cases");
    let backstop = |index: usize| format!("{SERVICE}-{}", Group::name(index));

    // CREATE first: the objects an UPDATE or DELETE needs are stored next,
    // and a CREATE of the same object would then meet it.
    let mut failures = Vec::new();
    let mut sent = 0;
    let operation = |request: &Value| request["operation"].as_str().unwrap_or_default().to_owned();
    for ((case, request), &group) in cases.iter().zip(&requests).zip(&group_of) {
        if operation(request) != "CREATE" {
            continue;
        }
        let outcome = send(&api, &Group::user(group), request);
        sent += 1;
        if let Err(problem) = check_case(case, &backstop(group), &outcome) {
            failures.push(format!("{}: {problem}", case.label()));
        }
    }
    // The stored versions, as cluster-admin (no backstop applies to it).
    let mut stored: BTreeSet<(String, String)> = BTreeSet::new();
    for request in requests.iter().filter(|request| operation(request) != "CREATE") {
        let key = (request["namespace"].to_string(), request["name"].to_string());
        if stored.insert(key) {
            let namespace = request["namespace"].as_str().unwrap();
            let old = as_sent(&request["oldObject"]).to_string();
            let output = api
                .kubectl_with_input(&["-n", namespace, "create", "-f", "-"], &old)
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        }
    }
    for ((case, request), &group) in cases.iter().zip(&requests).zip(&group_of) {
        if operation(request) == "CREATE" {
            continue;
        }
        let outcome = send(&api, &Group::user(group), request);
        sent += 1;
        if let Err(problem) = check_case(case, &backstop(group), &outcome) {
            failures.push(format!("{}: {problem}", case.label()));
        }
    }
    assert_eq!(sent, cases.len());

    // Stored, not only admitted: the objects the deployed policy set (the
    // defaults) allows, created for real as its users, are in the cluster.
    let mut created = 0;
    for ((case, request), &group) in cases.iter().zip(&requests).zip(&group_of) {
        let (namespace, name) = (
            request["namespace"].as_str().unwrap(),
            request["name"].as_str().unwrap(),
        );
        let fresh = stored.insert((request["namespace"].to_string(), request["name"].to_string()));
        let refused_before = REFUSED_BEFORE_THE_BACKSTOP
            .iter()
            .any(|(fixture, _)| *fixture == case.fixture);
        if operation(request) != "CREATE" || !case.settings.is_null() || !fresh || refused_before {
            continue;
        }
        let denied = !case.allowed || !case.patch.0.is_empty();
        let object = as_sent(&request["object"]).to_string();
        let outcome = as_user(
            &api,
            &Group::user(group),
            &["-n", namespace, "create", "--validate=false", "-f", "-"],
            &object,
        );
        let kind = request["resource"]["resource"].as_str().unwrap();
        let found = api
            .kubectl(&["-n", namespace, "get", kind, name])
            .unwrap()
            .status
            .success();
        match (denied, outcome, found) {
            (false, Outcome::Allowed, true) | (true, Outcome::Refused(_), false) => created += usize::from(!denied),
            (_, outcome, found) => failures.push(format!(
                "{}: created for real: {outcome:?}, stored: {found}",
                case.label()
            )),
        }
    }
    assert!(created >= 5, "only {created} objects stored");
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A request like `fixture`'s with its object changed by `change`, as the
/// built-in receives it.
fn changed_request(fixture: &str, change: impl Fn(&mut Value)) -> Value {
    let mut request = request(fixture);
    change(&mut request["object"]);
    let name = request["object"]["metadata"]["name"].clone();
    request["name"] = name;
    request
}

#[test]
fn the_backstop_says_what_the_built_ins_say_for_each_denial() {
    let api = start();
    const STATEFULSET: &str = "validating-create-statefulset-mysql.json";
    const SERVICE_FIXTURE: &str = "validating-create-service-sample-headless.json";
    let service_name = |name: &'static str, service: &'static str| {
        changed_request(STATEFULSET, move |object| {
            object["metadata"]["name"] = json!(name);
            object["spec"]["serviceName"] = json!(service);
        })
    };
    // Each denial the built-ins write, on objects the API server itself
    // accepts: the backstop must write the same words.
    let requests = [
        ("statefulset-service-name", service_name("starts-with-digit", "1db")),
        ("statefulset-service-name", service_name("ends-with-dash", "db-")),
        ("statefulset-service-name", service_name("has-a-dot", "db.peers")),
        ("statefulset-service-name", service_name("upper-case", "Peers")),
        (
            "statefulset-service-name",
            service_name("x", "a-service-name-longer-than-the-sixty-three-characters-dns-allows"),
        ),
        (
            "statefulset-service-name",
            service_name("generated-name-too-long-for-a-service-name-of-this-template", ""),
        ),
        (
            "headless-service",
            changed_request(SERVICE_FIXTURE, |object| {
                object["metadata"]["name"] = json!("lb-headless");
                object["spec"] = json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
            }),
        ),
        (
            "headless-service",
            changed_request(SERVICE_FIXTURE, |object| {
                object["metadata"]["name"] = json!("pinned-headless");
                object["spec"] = json!({"clusterIP": "10.96.7.7", "ports": [{"port": 80}]});
            }),
        ),
    ];
    let set = json!({
        "apiVersion": "wasmhook.dev/v1alpha1",
        "kind": "PolicySet",
        "policies": [
            {"name": "headless-service", "module": "builtin:headless-service", "mode": "validate"},
            {"name": "statefulset-service-name", "module": "builtin:statefulset-service-name", "mode": "validate"},
        ],
    });
    let yaml = backstop_yaml(&api, "denials.json", &set.to_string());
    apply_and_wait(&api, &yaml, "probe-denials");
    create_namespaces(&api, ["handson", "default"]);

    let mut failures = Vec::new();
    for (policy, request) in &requests {
        let verdict = evaluate_native(policy, &request.to_string(), "null").unwrap();
        let name = request["name"].as_str().unwrap();
        let Some(expected) = verdict.message().filter(|_| !verdict.is_allowed()) else {
            failures.push(format!("{name}: the built-in allows it; the case is wrong"));
            continue;
        };
        let backstop = format!("{SERVICE}-{policy}");
        let wanted =
            format!("ValidatingAdmissionPolicy '{backstop}' with binding '{backstop}' denied request: {expected}");
        match send(&api, "backstop-denials", request) {
            Outcome::Refused(message) if message.contains(&wanted) => {}
            outcome => failures.push(format!("{name}: expected …{wanted}, got {outcome:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// --- deploy/overlays/backstop with and without the webhook ----------------

/// `kubectl create` of `yaml` as cluster-admin.
fn create(api: &KubeApi, yaml: &str) -> Outcome {
    kubectl(api, &["create", "-f", "-"], yaml)
}

fn service(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec: {{selector: {{app: {name}}}, ports: [{{port: 80}}]{spec}}}\n"
    )
}

fn get(api: &KubeApi, resource: &str, name: &str, path: &str) -> String {
    api.kubectl_ok(&["-n", "shop", "get", resource, name, "-o", &format!("jsonpath={path}")])
        .unwrap_or_else(|error| panic!("{error}"))
}

fn assert_refused_by(outcome: Outcome, backstop: &str, words: &str) {
    match outcome {
        Outcome::Refused(message) => assert!(
            message.contains(&format!("ValidatingAdmissionPolicy '{backstop}'")) && message.contains(words),
            "expected {backstop} to refuse with …{words}…: {message}"
        ),
        Outcome::Allowed => panic!("expected {backstop} to refuse with …{words}…, it was stored"),
    }
}

fn assert_stored(outcome: Outcome) {
    if let Outcome::Refused(message) = outcome {
        panic!("expected it stored: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_webhook_the_object_is_fixed_and_without_it_the_backstop_holds() {
    let api = start();
    let policies = deploy_dir().join("overlays/backstop/policies.yaml");
    let policy_set_text = std::fs::read_to_string(&policies).unwrap();
    let yaml = backstop_yaml(&api, "overlay-policies.yaml", &policy_set_text);
    apply_and_wait(&api, &yaml, "probe-overlay");
    create_namespaces(&api, ["shop"]);
    let headless = format!("{SERVICE}-headless-service");
    let service_name = format!("{SERVICE}-statefulset-service-name");

    // No webhook registered, none running: the built-ins' floor.
    assert_refused_by(
        create(&api, &service("db-headless", "")),
        &headless,
        "Service shop/db-headless must be headless (its name ends with \"-headless\"), but it has cluster IP ",
    );
    assert_refused_by(
        create(&api, &service("np-headless", ", type: NodePort")),
        &headless,
        "but it has type NodePort",
    );
    assert_refused_by(
        create(&api, &statefulset("db", None, "db")),
        &service_name,
        "StatefulSet shop/db has no spec.serviceName: set spec.serviceName: db-headless",
    );
    assert_refused_by(
        create(&api, &statefulset("db", Some("DB"), "db")),
        &service_name,
        "spec.serviceName \"DB\" is not a valid Service name (DNS-1035 label): it must consist of lower case",
    );
    assert_stored(create(&api, &service("db-headless", ", clusterIP: None")));
    assert_stored(create(&api, &service("web", "")));
    assert_stored(create(&api, &statefulset("db", Some("db-headless"), "db")));
    assert_eq!(get(&api, "service", "db-headless", "{.spec.clusterIP}"), "None");

    // The webhook up and registered, failing open: it fixes, the backstop passes.
    let server = super::serve_and_register(&api, &policies, "backstop").await;
    create_eventually_stored(&api, &service("cache-headless", "")).await;
    assert_eq!(get(&api, "service", "cache-headless", "{.spec.clusterIP}"), "None");
    assert_stored(create(&api, &statefulset("cache", None, "cache")));
    assert_eq!(
        get(&api, "statefulset", "cache", "{.spec.serviceName}"),
        "cache-headless"
    );

    // The webhook down (still registered, failurePolicy Ignore): other
    // Services are written, the selected ones are held by the backstop.
    server.shutdown().await;
    assert_stored(create(&api, &service("api", "")));
    assert_refused_by(
        create(&api, &service("queue-headless", "")),
        &headless,
        "set spec.clusterIP: None and remove spec.clusterIPs.",
    );
    let webhooks: Vec<String> = serde_json::from_str::<Value>(
        &api.kubectl_ok(&["get", "mutatingwebhookconfigurations", "-o", "json"])
            .unwrap(),
    )
    .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|item| item["webhooks"].as_array().cloned().unwrap_or_default())
        .map(|webhook| webhook["failurePolicy"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(webhooks, ["Ignore", "Ignore"], "the overlay's webhooks fail open");
}

/// Creates `yaml` until it is stored: the first requests after registration
/// may reach the API server before its webhook configuration cache has the
/// new webhooks (then the backstop refuses the unfixed object).
async fn create_eventually_stored(api: &KubeApi, yaml: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match create(api, yaml) {
            Outcome::Allowed => return,
            Outcome::Refused(message) => {
                assert!(Instant::now() < deadline, "never stored: {message}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// deploy/overlays/backstop as a 1.28 API server takes it: every object in a
/// server-side dry run, the backstop as v1beta1 (what
/// `BACKSTOP_API_VERSION=v1beta1 generate-backstop.sh` writes; the fields are
/// v1's), its CEL compiled by the API server.
#[test]
fn the_backstop_overlay_passes_a_server_side_dry_run() {
    let api = start();
    create_namespaces(&api, [NAMESPACE]);
    let rendered = super::render("overlays/backstop");
    let documents: Vec<String> = rendered
        .split("\n---\n")
        .filter(|document| !document.contains("kind: Namespace\n"))
        .map(|document| {
            document.replace(
                "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy",
                "apiVersion: admissionregistration.k8s.io/v1beta1\nkind: ValidatingAdmissionPolicy",
            )
        })
        .collect();
    let backstops = documents
        .iter()
        .filter(|document| document.contains("admissionregistration.k8s.io/v1beta1"))
        .count();
    assert_eq!(backstops, 4, "two policies and their bindings");
    let output = api
        .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &documents.join("\n---\n"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "validatingadmissionpolicy.admissionregistration.k8s.io/wasmhook-headless-service created (server dry run)"
        ),
        "{stdout}"
    );
}
