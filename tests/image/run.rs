//! `make image`'s image run under podman exactly as deploy/base's Deployment runs the
//! container, so that what an operator's first `kubectl apply -k` would find is found here: a
//! binary that needs a shell or a libc, a write to the read-only root, a file the non-root
//! user cannot read.
//!
//! The podman flags are derived from the rendered Deployment (`kubectl kustomize
//! deploy/base`), never written down here, so the two cannot drift apart: the container's
//! image, args, user and group, `readOnlyRootFilesystem`, dropped capabilities,
//! `allowPrivilegeEscalation`, memory and CPU limits, and one host directory per volume
//! mount at its mount path — the policy-set ConfigMap's data (from the rendered,
//! hash-named ConfigMap), the TLS Secret laid out as the kubelet lays it out (`..data`
//! symlinks, the volume's `defaultMode`, group `fsGroup`; tls.crt/tls.key from a test CA,
//! and its ca.crt), the emptyDirs as empty world-writable directories (as the kubelet
//! makes them). A field of the container or its securityContext this file does not
//! translate fails the test instead of being ignored.
//!
//! What differs from a pod, and why:
//! - `--network host`, and the two listen arguments (`--listen`, `--health-listen`) bound
//!   to `127.0.0.1` on free ports instead of `0.0.0.0:8443`/`0.0.0.0:9090`: tests talk
//!   only to loopback, and the API server the container reaches is on the host's loopback.
//!   Only the addresses change; the test checks that the Deployment's ports are the
//!   containerPorts it names (`https`, `health`). Every other argument is the
//!   Deployment's, `--register` and the policy set's `context:` watches included.
//! - Those two need a Kubernetes API: a real kube-apiserver v1.28 on loopback
//!   (`wasmhook_tests::kube`), with deploy/base applied, reached the way a pod reaches its
//!   cluster — the service-account token volume at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` (a token of the `wasmhook`
//!   ServiceAccount, the API server's CA, the namespace) and `KUBERNETES_SERVICE_HOST`/
//!   `_PORT`, as the kubelet injects them. So the tier needs the kube tier's binaries too.
//! - `--passwd=false`: podman would otherwise add the user to the image's /etc/passwd;
//!   the kubelet does not.
//! - The default seccomp profile is podman's, as RuntimeDefault is the runtime's.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use wasmhook_tests::certs::TestCerts;
use wasmhook_tests::kube::KubeApi;
use wasmhook_tests::process::free_port;

use super::podman;

/// Where the kubelet mounts a pod's service-account token.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The flags podman needs on these machines (../shared/NOTES-containers.md): crun refuses
/// hybrid cgroups, and podman's default rlimits exceed the hard limits.
const PODMAN_MACHINE_FLAGS: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
];
/// A recorded Service review the base's `headless-service` policy selects (the
/// `-headless` suffix) and mutates, and its expected answer in tests/fixtures/expected.json.
const FIXTURE: &str = "crafted-mutating-create-service-api-headless.json";

/// deploy/base rendered, and the parts of it the container is run from.
struct Rendered {
    /// `spec.template.spec` of the Deployment.
    pod: Value,
    /// Its one container.
    container: Value,
    /// Every rendered object.
    objects: Vec<Value>,
}

fn render() -> Rendered {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base");
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&base)
        .output()
        .expect("kubectl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let yaml = String::from_utf8(output.stdout).expect("UTF-8");
    let objects: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap_or_else(|error| panic!("{error}"));
    let deployment = objects
        .iter()
        .find(|object| object["kind"] == "Deployment")
        .expect("deploy/base has a Deployment");
    let pod = deployment["spec"]["template"]["spec"].clone();
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "the image test runs one container");
    let container = containers[0].clone();
    Rendered {
        pod,
        container,
        objects,
    }
}

/// The keys of `value` (an object) not in `known`: what this file would silently ignore.
fn untranslated(value: &Value, known: &[&str]) -> Vec<String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, _)| key.clone())
        .filter(|key| !known.contains(&key.as_str()))
        .collect()
}

/// The container's security settings as podman flags.
fn security_flags(pod: &Value, container: &Value) -> Vec<String> {
    let context = &container["securityContext"];
    let known = [
        "runAsNonRoot",
        "runAsUser",
        "runAsGroup",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "privileged",
        "capabilities",
        "seccompProfile",
    ];
    assert_eq!(
        untranslated(context, &known),
        Vec::<String>::new(),
        "securityContext fields the image test does not translate"
    );
    // The container's settings override the pod's.
    let field = |name: &str| match &context[name] {
        Value::Null => pod["securityContext"][name].clone(),
        value => value.clone(),
    };
    let user = field("runAsUser").as_u64().expect("runAsUser is set");
    let group = field("runAsGroup").as_u64().expect("runAsGroup is set");
    if field("runAsNonRoot") == true {
        assert_ne!(user, 0, "runAsNonRoot with runAsUser 0");
    }
    let mut flags = vec!["--user".to_owned(), format!("{user}:{group}")];
    if field("readOnlyRootFilesystem") == true {
        // No tmpfs on /tmp, /run, /var/tmp: a pod gets none.
        flags.extend(["--read-only".to_owned(), "--read-only-tmpfs=false".to_owned()]);
    }
    if field("allowPrivilegeEscalation") == false {
        flags.extend(["--security-opt".to_owned(), "no-new-privileges".to_owned()]);
    }
    assert_ne!(field("privileged"), true, "a privileged container");
    for capability in context["capabilities"]["drop"].as_array().into_iter().flatten() {
        flags.extend(["--cap-drop".to_owned(), capability.as_str().expect("a name").to_owned()]);
    }
    assert!(
        context["capabilities"]["add"].is_null(),
        "capabilities.add is not translated"
    );
    let seccomp = field("seccompProfile");
    assert_eq!(
        seccomp["type"], "RuntimeDefault",
        "podman's default profile stands for RuntimeDefault only"
    );
    flags
}

/// `resources.limits` as podman flags (`512Mi` → `--memory 512m`, `"1"` → `--cpus 1`).
fn resource_flags(container: &Value) -> Vec<String> {
    let limits = &container["resources"]["limits"];
    assert_eq!(
        untranslated(limits, &["cpu", "memory"]),
        Vec::<String>::new(),
        "resource limits"
    );
    let mut flags = Vec::new();
    if let Some(memory) = limits["memory"].as_str() {
        let megabytes = memory.strip_suffix("Mi").expect("a memory limit in Mi");
        flags.extend(["--memory".to_owned(), format!("{megabytes}m")]);
    }
    if let Some(cpu) = limits["cpu"].as_str() {
        let cpus = match cpu.strip_suffix('m') {
            Some(millis) => (millis.parse::<f64>().expect("millicores") / 1000.0).to_string(),
            None => cpu.to_owned(),
        };
        flags.extend(["--cpus".to_owned(), cpus]);
    }
    flags
}

/// The Deployment's args with the two listen addresses moved to loopback: the port the
/// Deployment gives each is checked against the containerPort of that name.
fn args_on_loopback(container: &Value, https: u16, health: u16) -> Vec<String> {
    let port_named = |name: &str| {
        container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|port| port["name"] == name)
            .and_then(|port| port["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no containerPort named {name}"))
    };
    let mut args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("a string").to_owned())
        .collect();
    for (flag, port_name, port) in [("--listen", "https", https), ("--health-listen", "health", health)] {
        let index = args
            .iter()
            .position(|arg| arg == flag)
            .unwrap_or_else(|| panic!("the Deployment's args have no {flag}"));
        let address = &args[index + 1];
        assert_eq!(
            address.rsplit_once(':').map(|(_, port)| port.to_owned()),
            Some(port_named(port_name).to_string()),
            "{flag} {address} is not the containerPort named {port_name}"
        );
        args[index + 1] = format!("127.0.0.1:{port}");
    }
    args
}

/// A host directory made to stand for one volume, and how it is mounted.
struct Volume {
    host: PathBuf,
    container: String,
    read_only: bool,
}

/// The pieces a run owns: its temporary directories, the API server, the certificates.
struct Fixture {
    api: KubeApi,
    certs: TestCerts,
    /// The Secret volume's `defaultMode` and the pod's `fsGroup`, applied to every file of
    /// the certificate directory after each rotation.
    secret_mode: (u32, u32),
    _dirs: Vec<tempfile::TempDir>,
    volumes: Vec<Volume>,
}

fn prepare(rendered: &Rendered) -> Fixture {
    let api = KubeApi::start(&[]).unwrap_or_else(|error| panic!("cannot start the test API server: {error}"));
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base");
    api.kubectl_ok(&["apply", "-k", base.to_str().expect("UTF-8")])
        .unwrap_or_else(|error| panic!("{error}"));
    let namespace = "wasmhook-system";
    let account = rendered.pod["serviceAccountName"].as_str().expect("serviceAccountName");
    let token = api
        .kubectl_ok(&["-n", namespace, "create", "token", account])
        .unwrap_or_else(|error| panic!("{error}"));

    let fs_group = rendered.pod["securityContext"]["fsGroup"].as_u64().expect("fsGroup") as u32;
    let mut dirs = Vec::new();
    let mut volumes = Vec::new();
    let mut certs = None;
    let mut secret_mode = (0o644, 0);
    for mount in rendered.container["volumeMounts"].as_array().expect("volumeMounts") {
        assert_eq!(
            untranslated(mount, &["name", "mountPath", "readOnly"]),
            Vec::<String>::new(),
            "volumeMount fields"
        );
        let name = mount["name"].as_str().expect("a name");
        let volume = rendered.pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|volume| volume["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        let host = if let Some(secret) = volume.get("secret") {
            assert_eq!(secret["secretName"], "wasmhook-tls", "the only Secret is the TLS one");
            let test_certs = TestCerts::new();
            std::fs::write(test_certs.dir.path().join("ca.crt"), &test_certs.ca.cert_pem).unwrap();
            let mode = secret["defaultMode"].as_u64().unwrap_or(0o644) as u32;
            secret_mode = (mode, fs_group);
            let path = test_certs.dir.path().to_owned();
            certs = Some(test_certs);
            path
        } else if let Some(config_map) = volume.get("configMap") {
            let map_name = config_map["name"].as_str().expect("a name");
            let object = rendered
                .objects
                .iter()
                .find(|object| object["kind"] == "ConfigMap" && object["metadata"]["name"] == map_name)
                .unwrap_or_else(|| panic!("no rendered ConfigMap {map_name}"));
            let dir = tempfile::tempdir().unwrap();
            for (file, text) in object["data"].as_object().expect("data") {
                std::fs::write(dir.path().join(file), text.as_str().expect("text")).unwrap();
            }
            let path = dir.path().to_owned();
            dirs.push(dir);
            path
        } else if volume.get("emptyDir").is_some() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_owned();
            dirs.push(dir);
            path
        } else {
            panic!("volume {name}: a kind the image test does not translate: {volume}");
        };
        // Every mounted directory is reachable by the container's user; emptyDirs are
        // world-writable, as the kubelet makes them.
        let mode = if volume.get("emptyDir").is_some() { 0o777 } else { 0o755 };
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode)).unwrap();
        volumes.push(Volume {
            host,
            container: mount["mountPath"].as_str().expect("mountPath").to_owned(),
            read_only: mount["readOnly"] == true,
        });
    }

    // The service-account token volume the kubelet adds to every pod.
    let account_dir = tempfile::tempdir().unwrap();
    std::fs::write(account_dir.path().join("token"), token.trim()).unwrap();
    std::fs::copy(&api.ca_file, account_dir.path().join("ca.crt")).unwrap();
    std::fs::write(account_dir.path().join("namespace"), namespace).unwrap();
    for file in ["token", "ca.crt", "namespace"] {
        std::fs::set_permissions(account_dir.path().join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(account_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    volumes.push(Volume {
        host: account_dir.path().to_owned(),
        container: SERVICE_ACCOUNT_DIR.to_owned(),
        read_only: true,
    });
    dirs.push(account_dir);

    let fixture = Fixture {
        api,
        certs: certs.expect("a TLS Secret volume"),
        secret_mode,
        _dirs: dirs,
        volumes,
    };
    fixture.apply_secret_mode();
    fixture
}

impl Fixture {
    /// The Secret volume's `defaultMode`, group `fsGroup`, on every file the kubelet would
    /// project (the timestamped directories' files and ca.crt).
    fn apply_secret_mode(&self) {
        let (mode, group) = self.secret_mode;
        let dir = self.certs.dir.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut files = vec![dir.join("ca.crt")];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
                files.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
            }
        }
        for file in files {
            std::os::unix::fs::chown(&file, Some(0), Some(group)).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

/// A container that is removed when dropped.
struct Container {
    name: String,
}

impl Container {
    fn logs(&self) -> String {
        let output = podman(&["logs", &self.name]);
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

/// The image to run: `IMAGE` (the Makefile passes what `make image` built), else the
/// Deployment's.
fn image(container: &Value) -> String {
    std::env::var("IMAGE").unwrap_or_else(|_| container["image"].as_str().expect("image").to_owned())
}

/// The leaf certificate a new TLS connection to `port` is served.
async fn served_certificate(certs: &TestCerts, port: u16) -> CertificateDer<'static> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(certs.client_config(&[b"http/1.1"])));
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let server = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(server, stream).await.expect("a TLS handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone()
}

/// Polls `url` until it answers 200, for at most `within`.
async fn wait_ok(url: &str, within: Duration, container: &Container) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {within:?}; logs:\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every path in `podman diff` must be a volume's mount point, a file podman itself
/// mounts into every container, or a directory above one of them.
fn unexpected_changes(diff: &str, volumes: &[Volume]) -> Vec<String> {
    let mut allowed: BTreeSet<String> = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    allowed.extend(volumes.iter().map(|volume| volume.container.clone()));
    for path in allowed.clone() {
        let mut ancestor = Path::new(&path);
        while let Some(parent) = ancestor.parent() {
            allowed.insert(parent.to_string_lossy().into_owned());
            ancestor = parent;
        }
    }
    diff.lines()
        .filter(|line| {
            let path = line.split_once(' ').map_or(*line, |(_, path)| path);
            !allowed.contains(path)
        })
        .map(str::to_owned)
        .collect()
}

/// deploy/base's container under podman: ready, a review answered over TLS, a rotated
/// certificate served to new connections, SIGTERM ending it with 0 within the grace
/// period, nothing written outside its volumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_the_deployment_runs_it() {
    wasmhook_tests::certs::install_crypto_provider();
    let rendered = render();
    let container = &rendered.container;
    assert_eq!(
        untranslated(
            container,
            &[
                "name",
                "image",
                "imagePullPolicy",
                "args",
                "ports",
                "startupProbe",
                "livenessProbe",
                "readinessProbe",
                "resources",
                "securityContext",
                "volumeMounts",
            ]
        ),
        Vec::<String>::new(),
        "container fields the image test does not translate (env, command, …)"
    );
    let mut fixture = prepare(&rendered);
    let https = free_port().unwrap();
    let health = free_port().unwrap();
    let api_port = fixture.api.url.rsplit_once(':').expect("a port").1.to_owned();

    let name = format!("wasmhook-image-test-{}", std::process::id());
    let mut command: Vec<String> = [
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        "host",
        "--passwd=false",
    ]
    .map(str::to_owned)
    .to_vec();
    command.extend(PODMAN_MACHINE_FLAGS.iter().map(|flag| (*flag).to_owned()));
    command.extend(security_flags(&rendered.pod, container));
    command.extend(resource_flags(container));
    for volume in &fixture.volumes {
        let options = if volume.read_only { ":ro" } else { "" };
        command.extend([
            "--volume".to_owned(),
            format!("{}:{}{options}", volume.host.display(), volume.container),
        ]);
    }
    command.extend([
        "--env".to_owned(),
        "KUBERNETES_SERVICE_HOST=127.0.0.1".to_owned(),
        "--env".to_owned(),
        format!("KUBERNETES_SERVICE_PORT={api_port}"),
    ]);
    command.push(image(container));
    command.extend(args_on_loopback(container, https, health));
    eprintln!("podman {}", command.join(" "));
    let output = Command::new("podman").args(&command).output().expect("podman runs");
    assert!(
        output.status.success(),
        "podman {}: {}",
        command.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let running = Container { name: name.clone() };

    // Ready within the startup probe's budget, on the readiness probe's path.
    let startup = &container["startupProbe"];
    let budget = Duration::from_secs(
        startup["periodSeconds"].as_u64().unwrap_or(10) * startup["failureThreshold"].as_u64().unwrap_or(3),
    );
    let ready_path = container["readinessProbe"]["httpGet"]["path"]
        .as_str()
        .expect("a readiness path");
    wait_ok(&format!("http://127.0.0.1:{health}{ready_path}"), budget, &running).await;

    // A recorded review, answered over TLS with the expected patch.
    let case = wasmhook_tests::cases()
        .into_iter()
        .find(|case| case.fixture == FIXTURE && case.policy == "headless-service" && case.settings.is_null())
        .expect("the fixture's expected answer");
    let review = wasmhook_tests::review(FIXTURE);
    let answer: Value = fixture
        .certs
        .http1_client()
        .post(format!("https://127.0.0.1:{https}/mutate/headless-service"))
        .json(&review)
        .send()
        .await
        .unwrap_or_else(|error| panic!("the review: {error}; logs:\n{}", running.logs()))
        .json()
        .await
        .expect("a JSON answer");
    case.check_answer(&answer).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(answer["response"]["uid"], review["request"]["uid"]);

    // A rotated certificate (the kubelet's `..data` swap) reaches new connections.
    let first = served_certificate(&fixture.certs, https).await;
    let rotated = fixture.certs.rotate();
    fixture.apply_secret_mode();
    assert_ne!(first, rotated);
    let deadline = Instant::now() + Duration::from_secs(30);
    while served_certificate(&fixture.certs, https).await != rotated {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not served within 30 s; logs:\n{}",
            running.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // SIGTERM: exit 0 within the grace period.
    let grace = rendered.pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let started = Instant::now();
    let stop = podman(&["stop", "-t", &grace.to_string(), &name]);
    let took = started.elapsed();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    let exit = podman(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    let code = String::from_utf8_lossy(&exit.stdout).trim().to_owned();
    assert_eq!(code, "0", "exit code after SIGTERM; logs:\n{}", running.logs());
    eprintln!("stopped in {took:?}, exit code {code}");
    assert!(
        took < Duration::from_secs(grace),
        "stopping took {took:?}, the grace period is {grace} s"
    );

    // Nothing written outside the volumes.
    let diff = podman(&["diff", &name]);
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stderr));
    let diff = String::from_utf8_lossy(&diff.stdout);
    eprintln!("podman diff:\n{diff}");
    let unexpected = unexpected_changes(&diff, &fixture.volumes);
    assert!(unexpected.is_empty(), "written outside the volumes: {unexpected:?}");
    // The server did use its emptyDirs: the compile cache is not empty.
    let cache = fixture
        .volumes
        .iter()
        .find(|volume| volume.container == "/var/cache/wasmhook")
        .expect("the cache volume");
    assert!(
        std::fs::read_dir(&cache.host).unwrap().next().is_some(),
        "nothing in the compile cache"
    );
}
