//! The artifact a policy is shipped as: the CNCF TAG Runtime's Wasm OCI
//! artifact layout — an OCI image manifest whose config has the media type
//! `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component, `application/wasm` — with the standard
//! `org.opencontainers.image.*` annotations and wasmhook's own.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::Serialize;

use super::OciError;

/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type (CNCF Wasm OCI artifact).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Kubewarden's layer media type: a waPC module, not a component.
const KUBEWARDEN_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The WIT world every wasmhook policy targets.
pub const WORLD: &str = "wasmhook:policy/policy@0.1.0";

/// `org.opencontainers.image.title`.
pub const TITLE: &str = "org.opencontainers.image.title";
/// `org.opencontainers.image.version`.
pub const VERSION: &str = "org.opencontainers.image.version";
/// `org.opencontainers.image.source`.
pub const SOURCE: &str = "org.opencontainers.image.source";
/// `org.opencontainers.image.created`.
pub const CREATED: &str = "org.opencontainers.image.created";
/// `org.opencontainers.image.description`.
pub const DESCRIPTION: &str = "org.opencontainers.image.description";
/// wasmhook's: the mode the policy is written for (`mutate` or `validate`).
pub const MODE: &str = "dev.wasmhook.policy.mode";
/// wasmhook's: the rules the policy expects, as JSON (`RuleWithOperations`s).
pub const RULES: &str = "dev.wasmhook.policy.rules";

/// A component and what `push` says about it.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The component.
    pub wasm: Vec<u8>,
    /// Manifest annotations (the `org.opencontainers.image.*` and
    /// `dev.wasmhook.policy.*` ones above, and any others).
    pub annotations: BTreeMap<String, String>,
    /// `created`, RFC 3339.
    pub created: String,
}

/// The config blob: the CNCF Wasm OCI artifact's `config`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig<'a> {
    created: &'a str,
    architecture: &'static str,
    os: &'static str,
    layer_digests: Vec<String>,
    component: ComponentInfo,
}

#[derive(Serialize)]
struct ComponentInfo {
    target: &'static str,
}

/// The blobs and manifest of an artifact, serialized: what is pushed, byte
/// for byte.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The config blob.
    pub config: Vec<u8>,
    /// The manifest.
    pub manifest: Vec<u8>,
    /// The manifest, parsed.
    pub parsed: OciImageManifest,
}

impl Artifact {
    /// Serializes the config and the manifest.
    pub fn encode(&self) -> Encoded {
        let layer_digest = sha256_digest(&self.wasm);
        let config = serde_json::to_vec(&WasmConfig {
            created: &self.created,
            architecture: "wasm",
            os: "wasip2",
            layer_digests: vec![layer_digest.clone()],
            component: ComponentInfo { target: WORLD },
        })
        .expect("the config serializes");
        let mut layer_annotations = BTreeMap::new();
        if let Some(title) = self.annotations.get(TITLE) {
            layer_annotations.insert(TITLE.to_owned(), format!("{title}.wasm"));
        }
        let parsed = OciImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            config: OciDescriptor {
                media_type: CONFIG_MEDIA_TYPE.to_owned(),
                digest: sha256_digest(&config),
                size: config.len() as i64,
                ..OciDescriptor::default()
            },
            layers: vec![OciDescriptor {
                media_type: LAYER_MEDIA_TYPE.to_owned(),
                digest: layer_digest,
                size: self.wasm.len() as i64,
                annotations: (!layer_annotations.is_empty()).then_some(layer_annotations),
                ..OciDescriptor::default()
            }],
            artifact_type: None,
            annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
            subject: None,
        };
        let manifest = serde_json::to_vec(&parsed).expect("the manifest serializes");
        Encoded {
            config,
            manifest,
            parsed,
        }
    }
}

/// Checks that `wasm` is a component (not a core module) before it is
/// pushed: a core module would fail only when a server loads it.
pub fn check_component(wasm: &[u8]) -> Result<(), String> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(
            "a core WebAssembly module, not a component: build the policy for wasm32-wasip2 (cargo build --target \
             wasm32-wasip2), componentize-py or jco"
                .to_owned(),
        ),
        _ => Err("not a WebAssembly component (no \\0asm header)".to_owned()),
    }
}

/// Parses a pulled manifest and checks that it is a policy: the Wasm config
/// and exactly one `application/wasm` layer, no larger than `max_bytes`.
/// Returns the manifest and the layer.
pub fn read_manifest(
    reference: &str,
    raw: &[u8],
    max_bytes: u64,
) -> Result<(OciImageManifest, OciDescriptor), OciError> {
    let not_a_policy = |reason: String| OciError::NotAPolicy {
        reference: reference.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|error| not_a_policy(format!("the manifest is not JSON: {error}")))?;
    if value.get("manifests").is_some() {
        return Err(not_a_policy(
            "it is an image index (a multi-platform image?); a policy is a single manifest".to_owned(),
        ));
    }
    let manifest: OciImageManifest =
        serde_json::from_value(value).map_err(|error| not_a_policy(format!("not an OCI image manifest: {error}")))?;
    let layer_types: Vec<&str> = manifest.layers.iter().map(|layer| layer.media_type.as_str()).collect();
    if layer_types.contains(&KUBEWARDEN_LAYER_MEDIA_TYPE) {
        return Err(not_a_policy(
            "it is a Kubewarden policy (a waPC module); wasmhook runs components of the wasmhook:policy world"
                .to_owned(),
        ));
    }
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(not_a_policy(format!(
            "its config has media type {:?}, expected {CONFIG_MEDIA_TYPE:?} (push it with wasmhook push)",
            manifest.config.media_type
        )));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(not_a_policy(format!(
            "it has {} layers ({}), expected one {LAYER_MEDIA_TYPE:?} layer",
            layer_types.len(),
            layer_types.join(", ")
        )));
    };
    if layer.media_type != LAYER_MEDIA_TYPE {
        return Err(not_a_policy(format!(
            "its layer has media type {:?}, expected {LAYER_MEDIA_TYPE:?}",
            layer.media_type
        )));
    }
    super::reference::check_digest(&layer.digest).map_err(|reason| not_a_policy(format!("its layer's {reason}")))?;
    let size = u64::try_from(layer.size).map_err(|_| not_a_policy(format!("its layer has size {}", layer.size)))?;
    if size > max_bytes {
        return Err(OciError::TooLarge {
            reference: reference.to_owned(),
            size,
            limit: max_bytes,
        });
    }
    let layer = layer.clone();
    Ok((manifest, layer))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::engine::sha256_hex(bytes))
}

/// Now, as RFC 3339 in UTC (`2026-12-06T01:02:03Z`).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |now| now.to_string())
}
