//! The harness itself, against the real registry: it refuses anonymous and
//! wrongly authenticated clients and accepts its credentials (over HTTP and
//! through the Docker config it writes), a stopped registry refuses
//! connections and a restarted one serves what it stored before, and skopeo
//! reads and pushes through the harness's helpers.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use wasmhook_tests::registry::{self, PASSWORD, REALM, TestRegistry, USER};

use super::{digest, start_registry};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A one-layer artifact shaped like a Wasm policy (or, with other media
/// types, like something else): config, layer, manifest.
pub(super) struct Artifact {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl Artifact {
    fn new(layer: &[u8]) -> Self {
        Self::with_media_types("application/vnd.wasm.config.v0+json", "application/wasm", layer)
    }

    /// An artifact whose config and layer have these media types.
    pub(super) fn with_media_types(config_type: &str, layer_type: &str, layer: &[u8]) -> Self {
        let config = br#"{"architecture":"wasm","os":"wasip2"}"#.to_vec();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": config_type,
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": [{ "mediaType": layer_type, "digest": digest(layer), "size": layer.len() }],
        });
        Self {
            config,
            layer: layer.to_vec(),
            manifest: serde_json::to_vec(&manifest).unwrap(),
        }
    }

    fn manifest_json(&self) -> Value {
        serde_json::from_slice(&self.manifest).unwrap()
    }

    /// Pushes the blobs (POST an upload, PUT it with its digest) and the
    /// manifest under `tag`, as any OCI client does.
    pub(super) async fn push(&self, registry: &TestRegistry, repository: &str, tag: &str) {
        let client = registry.http_client();
        for blob in [&self.config, &self.layer] {
            let started = client
                .post(registry.url(&format!("/v2/{repository}/blobs/uploads/")))
                .basic_auth(USER, Some(PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(started.status(), StatusCode::ACCEPTED, "{}", registry.log_tail());
            let location = started.headers()[LOCATION].to_str().unwrap();
            let url = if location.starts_with("https://") {
                location.to_owned()
            } else {
                registry.url(location)
            };
            let separator = if url.contains('?') { '&' } else { '?' };
            let finished = client
                .put(format!("{url}{separator}digest={}", digest(blob)))
                .basic_auth(USER, Some(PASSWORD))
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(blob.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(finished.status(), StatusCode::CREATED, "{}", registry.log_tail());
        }
        let put = client
            .put(registry.url(&format!("/v2/{repository}/manifests/{tag}")))
            .basic_auth(USER, Some(PASSWORD))
            .header(CONTENT_TYPE, MANIFEST_TYPE)
            .body(self.manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED, "{}", registry.log_tail());
        assert_eq!(put.headers()["docker-content-digest"], digest(&self.manifest).as_str());
    }

    /// Writes an OCI image layout holding this artifact as `tag`.
    fn write_oci_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for blob in [&self.config, &self.layer, &self.manifest] {
            let name = digest(blob).trim_start_matches("sha256:").to_owned();
            std::fs::write(blobs.join(name), blob).unwrap();
        }
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST_TYPE,
                "digest": digest(&self.manifest),
                "size": self.manifest.len(),
                "annotations": { "org.opencontainers.image.ref.name": tag },
            }],
        });
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    }
}

/// GET `path` with the harness's credentials.
async fn get(registry: &TestRegistry, path: &str) -> reqwest::Response {
    registry
        .http_client()
        .get(registry.url(path))
        .basic_auth(USER, Some(PASSWORD))
        .header(ACCEPT, MANIFEST_TYPE)
        .send()
        .await
        .unwrap()
}

/// `skopeo inspect --raw --authfile <config>` of a tag that does not exist:
/// skopeo's error says whether the credentials were accepted.
fn skopeo_with_authfile(registry: &TestRegistry, docker_config: &Path) -> String {
    let skopeo = registry::binaries().unwrap().skopeo;
    let output = Command::new(skopeo)
        .args(["inspect", "--raw"])
        .arg(format!("--cert-dir={}", registry.cert_dir().display()))
        .arg(format!("--authfile={}", docker_config.display()))
        .arg(format!("docker://{}/harness/absent:v1", registry.host()))
        .output()
        .unwrap();
    assert!(!output.status.success(), "the tag does not exist");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn anonymous_and_wrong_credentials_are_refused_and_the_harness_credentials_accepted() {
    let registry = start_registry();
    assert!(registry.is_running());
    assert!(registry.host().starts_with("127.0.0.1:"), "{}", registry.host());
    assert!(
        std::fs::read_to_string(registry.ca_file())
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let client = registry.http_client();

    let anonymous = client.get(registry.url("/v2/")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous.headers()[WWW_AUTHENTICATE].to_str().unwrap();
    assert_eq!(challenge, format!("Basic realm=\"{REALM}\""));

    let authenticated = client
        .get(registry.url("/v2/"))
        .basic_auth(registry.user(), Some(registry.password()))
        .send()
        .await
        .unwrap();
    assert_eq!(authenticated.status(), StatusCode::OK);

    let wrong = client
        .get(registry.url("/v2/"))
        .basic_auth(registry.user(), Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // The Docker config files, as a client reads them.
    let config: Value = serde_json::from_slice(&std::fs::read(registry.docker_config()).unwrap()).unwrap();
    let auth = config["auths"][registry.host()]["auth"].as_str().unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth).unwrap();
    assert_eq!(decoded, format!("{USER}:{PASSWORD}").as_bytes());
    let accepted = skopeo_with_authfile(&registry, &registry.docker_config());
    assert!(accepted.contains("manifest unknown"), "{accepted}");
    let wrong_config = registry.docker_config_with(USER, "not-the-password").unwrap();
    assert_ne!(wrong_config, registry.docker_config());
    let refused = skopeo_with_authfile(&registry, &wrong_config);
    assert!(refused.contains("unauthorized"), "{refused}");
}

#[tokio::test]
async fn a_stopped_registry_refuses_connections_and_a_restarted_one_keeps_its_content() {
    let registry = start_registry();
    let artifact = Artifact::new(b"\0asm\x01\0\0\0 before the restart");
    artifact.push(&registry, "harness/raw", "v1").await;
    let reference = format!("{}/harness/raw:v1", registry.host());
    assert_eq!(
        registry.skopeo_inspect_raw(&reference).unwrap(),
        artifact.manifest_json()
    );

    let host = registry.host();
    registry.stop();
    assert!(!registry.is_running());
    let refused = registry
        .http_client()
        .get(registry.url("/v2/"))
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");
    let error = registry.skopeo_inspect_raw(&reference).unwrap_err();
    assert!(error.contains("connection refused"), "{error}");
    registry.stop();

    registry.restart().unwrap();
    assert!(registry.is_running());
    assert_eq!(registry.host(), host);
    let layer = get(&registry, &format!("/v2/harness/raw/blobs/{}", digest(&artifact.layer))).await;
    assert_eq!(layer.status(), StatusCode::OK);
    assert_eq!(layer.bytes().await.unwrap(), artifact.layer);
    let manifest = get(
        &registry,
        &format!("/v2/harness/raw/manifests/{}", digest(&artifact.manifest)),
    )
    .await;
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(manifest.bytes().await.unwrap(), artifact.manifest);
    assert_eq!(
        registry.skopeo_inspect_raw("harness/raw:v1").unwrap(),
        artifact.manifest_json()
    );
    assert_eq!(
        registry.skopeo_inspect_config("harness/raw:v1").unwrap(),
        json!({ "architecture": "wasm", "os": "wasip2" })
    );

    // A restart of a running registry works too.
    registry.restart().unwrap();
    assert_eq!(
        registry.skopeo_inspect_raw("harness/raw:v1").unwrap(),
        artifact.manifest_json()
    );
}

#[tokio::test]
async fn skopeo_pushes_an_oci_layout_byte_for_byte() {
    let registry = start_registry();
    let artifact = Artifact::new(b"\0asm\x01\0\0\0 through skopeo");
    let layout = tempfile::tempdir().unwrap();
    artifact.write_oci_layout(layout.path(), "v1");
    let source = format!("oci:{}:v1", layout.path().display());
    registry.skopeo_copy_to(&source, "harness/copied:v1").unwrap();

    assert_eq!(
        registry.skopeo_inspect_raw("harness/copied:v1").unwrap(),
        artifact.manifest_json()
    );
    let manifest = get(&registry, "/v2/harness/copied/manifests/v1").await;
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(
        manifest.headers()["docker-content-digest"],
        digest(&artifact.manifest).as_str()
    );
    let error = registry.skopeo_inspect_raw("harness/copied:absent").unwrap_err();
    assert!(error.contains("manifest unknown"), "{error}");
}
