//! The artifact layout, references, signatures and the cache, offline. The
//! registry itself is exercised by the registry tier (`tests/registry`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::artifact::{self, Artifact};
use super::cache::OciCache;
use super::signature::{self, FoundSignature, SignatureRequirement, SigningKey, VerificationKey};
use super::{OciError, PolicyReference};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/cosign")
        .join(name)
}

const COSIGN_DIGEST: &str = "sha256:f20c43161d73848408ef247f0ec7111b19fe58ffebc0cbcaa0d2c8bda4967268";

/// The signature cosign made, as the registry would serve it.
fn cosign_signature() -> FoundSignature {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("signature-manifest.json")).unwrap()).unwrap();
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], signature::SIMPLE_SIGNING_MEDIA_TYPE);
    let payload = std::fs::read(fixture("payload.json")).unwrap();
    assert_eq!(
        artifact::sha256_digest(&payload),
        layer["digest"],
        "the payload is the layer's blob"
    );
    FoundSignature {
        payload: base64::engine::general_purpose::STANDARD.encode(payload),
        signature: layer["annotations"][signature::SIGNATURE_ANNOTATION]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

fn requirement(keys: Vec<VerificationKey>, require_all: bool) -> SignatureRequirement {
    SignatureRequirement { keys, require_all }
}

/// A fresh P-256 key pair, as files: (private PKCS#8, public SPKI).
fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&private, pair.serialize_pem()).unwrap();
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    (private, public)
}

#[test]
fn a_signature_made_by_cosign_verifies_with_its_public_key() {
    let key = VerificationKey::read(&fixture("cosign.pub")).unwrap();
    let found = [cosign_signature()];
    signature::verify(COSIGN_DIGEST, &found, &requirement(vec![key.clone()], true)).unwrap();

    // Over another digest: the payload names the one it signs.
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let error = signature::verify(other, &found, &requirement(vec![key.clone()], true)).unwrap_err();
    assert!(
        error.contains("a valid signature of another artifact (sha256:f20c"),
        "{error}"
    );

    // A tampered payload.
    let mut tampered = cosign_signature();
    let payload = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&tampered.payload)
            .unwrap(),
    )
    .unwrap()
    .replace("tobby", "bobby");
    tampered.payload = base64::engine::general_purpose::STANDARD.encode(payload);
    let error = signature::verify(COSIGN_DIGEST, &[tampered], &requirement(vec![key], true)).unwrap_err();
    assert!(error.contains("not made with this key"), "{error}");
}

#[test]
fn wasmhook_signs_as_cosign_does() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(dir.path(), "team");
    let key = SigningKey::read(&private).unwrap();
    let digest = "sha256:9b0764d7418613d1239059f379172893e32feaab3091377fbe46c11fbbf10e40";
    let payload = signature::payload("127.0.0.1:5000/policies/demo", digest);
    // Byte for byte the layout of cosign's payload.
    let cosign_payload = String::from_utf8(std::fs::read(fixture("payload.json")).unwrap()).unwrap();
    let expected = cosign_payload
        .replace("localhost:15381/tobby/fixture", "127.0.0.1:5000/policies/demo")
        .replace(COSIGN_DIGEST, digest);
    assert_eq!(String::from_utf8(payload.clone()).unwrap(), expected);

    let found = [FoundSignature {
        payload: base64::engine::general_purpose::STANDARD.encode(&payload),
        signature: base64::engine::general_purpose::STANDARD.encode(key.sign(&payload)),
    }];
    let team = VerificationKey::read(&public).unwrap();
    signature::verify(digest, &found, &requirement(vec![team.clone()], true)).unwrap();

    // Another key: refused, naming the key; with `any`, one signer is enough.
    let (_, other_public) = key_pair(dir.path(), "other");
    let other = VerificationKey::read(&other_public).unwrap();
    let error = signature::verify(digest, &found, &requirement(vec![other.clone()], true)).unwrap_err();
    assert!(
        error.contains("other.pub: signature 1: not made with this key"),
        "{error}"
    );
    let error = signature::verify(digest, &found, &requirement(vec![team.clone(), other.clone()], true)).unwrap_err();
    assert!(error.starts_with("every key must have signed"), "{error}");
    signature::verify(digest, &found, &requirement(vec![other, team.clone()], false)).unwrap();

    let error = signature::verify(digest, &[], &requirement(vec![team], true)).unwrap_err();
    assert!(error.contains("not signed"), "{error}");
    assert!(
        error.contains("sha256-9b0764d7418613d1239059f379172893e32feaab3091377fbe46c11fbbf10e40.sig"),
        "{error}"
    );
}

#[test]
fn keys_other_than_ecdsa_p256_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let path = dir.path().join("ed.pub");
    std::fs::write(&path, ed25519.public_key_pem()).unwrap();
    let error = VerificationKey::read(&path).unwrap_err().to_string();
    assert!(error.contains("ed.pub") && error.contains("ECDSA P-256"), "{error}");

    std::fs::write(&path, "not a key").unwrap();
    let error = VerificationKey::read(&path).unwrap_err().to_string();
    assert!(error.contains("not a PEM public key"), "{error}");

    let encrypted = dir.path().join("cosign.key");
    std::fs::write(&encrypted, "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n").unwrap();
    let error = SigningKey::read(&encrypted).err().unwrap().to_string();
    assert!(error.contains("cosign-encrypted key"), "{error}");
}

#[test]
fn references_name_a_host_and_a_tag_or_digest() {
    let digest = "sha256:9b0764d7418613d1239059f379172893e32feaab3091377fbe46c11fbbf10e40";
    let tagged = PolicyReference::parse("oci://127.0.0.1:5000/policies/demo:v1").unwrap();
    assert_eq!(
        (tagged.registry(), tagged.repository(), tagged.tag(), tagged.digest()),
        ("127.0.0.1:5000", "policies/demo", Some("v1"), None)
    );
    assert_eq!(tagged.to_string(), "oci://127.0.0.1:5000/policies/demo:v1");
    let pinned = PolicyReference::parse(&format!("registry://ghcr.io/org/policy@{digest}")).unwrap();
    assert_eq!(pinned.digest(), Some(digest));
    assert_eq!(pinned.to_string(), format!("oci://ghcr.io/org/policy@{digest}"));
    assert_eq!(
        tagged.at_digest(digest).to_string(),
        format!("oci://127.0.0.1:5000/policies/demo@{digest}")
    );

    for (spec, says) in [
        ("ghcr.io/org/policy:v1", "must start with oci://"),
        ("oci://policy:v1", "name the registry host"),
        ("oci://org/policy:v1", "name the registry host"),
        ("oci://ghcr.io/org/policy", "does not assume :latest"),
        ("oci://ghcr.io/org/policy@sha256:abc", "64 lowercase hex"),
        ("oci://ghcr.io/org/policy@md5:0123", "only sha256"),
    ] {
        let error = PolicyReference::parse(spec).unwrap_err();
        assert!(matches!(error, OciError::InvalidReference { .. }), "{spec}: {error:?}");
        assert!(error.to_string().contains(says), "{spec}: {error}");
    }
}

fn artifact() -> Artifact {
    Artifact {
        wasm: b"\0asm\x0d\0\x01\0rest of the component".to_vec(),
        annotations: BTreeMap::from([
            (artifact::TITLE.to_owned(), "demo".to_owned()),
            (artifact::VERSION.to_owned(), "1.2.0".to_owned()),
            (artifact::MODE.to_owned(), "mutate".to_owned()),
        ]),
        created: "2026-12-06T01:02:03Z".to_owned(),
    }
}

#[test]
fn the_artifact_is_a_cncf_wasm_artifact_that_reads_back() {
    let encoded = artifact().encode();
    let manifest: serde_json::Value = serde_json::from_slice(&encoded.manifest).unwrap();
    assert_eq!(manifest["mediaType"], artifact::MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["annotations"][artifact::TITLE], "demo.wasm");
    assert_eq!(manifest["annotations"][artifact::VERSION], "1.2.0");
    let config: serde_json::Value = serde_json::from_slice(&encoded.config).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], manifest["layers"][0]["digest"]);
    assert_eq!(config["component"]["target"], artifact::WORLD);

    let (_, layer) = artifact::read_manifest("x", &encoded.manifest, 1024).unwrap();
    assert_eq!(layer.digest, artifact::sha256_digest(&artifact().wasm));
    let error = artifact::read_manifest("oci://r.io/x:v1", &encoded.manifest, 10).unwrap_err();
    assert!(
        matches!(
            error,
            OciError::TooLarge {
                size: 29,
                limit: 10,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn manifests_that_are_not_policies_are_refused_with_what_they_are() {
    let encoded = artifact().encode();
    let mut manifest: serde_json::Value = serde_json::from_slice(&encoded.manifest).unwrap();
    let refused = |manifest: &serde_json::Value| {
        artifact::read_manifest("oci://r.io/x:v1", manifest.to_string().as_bytes(), 1 << 20)
            .unwrap_err()
            .to_string()
    };
    let mut image = manifest.clone();
    image["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    assert!(refused(&image).contains("config has media type \"application/vnd.oci.image.config.v1+json\""));
    let mut kubewarden = manifest.clone();
    kubewarden["layers"][0]["mediaType"] = "application/vnd.wasm.content.layer.v1+wasm".into();
    assert!(refused(&kubewarden).contains("Kubewarden policy"));
    let mut two = manifest.clone();
    two["layers"] = serde_json::json!([manifest["layers"][0], manifest["layers"][0]]);
    assert!(refused(&two).contains("2 layers"));
    manifest = serde_json::json!({"schemaVersion": 2, "manifests": []});
    assert!(refused(&manifest).contains("image index"));

    assert!(artifact::check_component(&artifact().wasm).is_ok());
    let error = artifact::check_component(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(error.contains("core WebAssembly module"), "{error}");
    assert!(artifact::check_component(b"PK\x03\x04").is_err());
}

#[test]
fn the_cache_returns_only_intact_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = OciCache::new(Some(dir.path()));
    let artifact = artifact();
    let encoded = artifact.encode();
    let digest = artifact::sha256_digest(&encoded.manifest);
    assert!(cache.artifact(&digest, 1 << 20).is_none());
    cache.store_artifact(&digest, &encoded.manifest, &artifact.wasm);
    assert_eq!(cache.artifact(&digest, 1 << 20).unwrap().wasm, artifact.wasm);

    // A module that does not match the manifest is not returned.
    let hex = digest.strip_prefix("sha256:").unwrap();
    let module = dir.path().join("oci/sha256").join(hex).join("module.wasm");
    std::fs::write(&module, b"\0asm\x0d\0\x01\0tampered").unwrap();
    assert!(cache.artifact(&digest, 1 << 20).is_none());

    cache.store_tag("oci://r.io/x:v1", &digest);
    assert_eq!(cache.tag("oci://r.io/x:v1").as_deref(), Some(digest.as_str()));
    assert_eq!(cache.tag("oci://r.io/x:v2"), None);

    let found = vec![cosign_signature()];
    cache.store_signatures(&digest, &found);
    assert_eq!(cache.signatures(&digest), Some(found));

    let none = OciCache::new(None);
    none.store_artifact(&digest, &encoded.manifest, &artifact.wasm);
    assert!(none.artifact(&digest, 1 << 20).is_none());
}

#[test]
fn the_observer_hears_of_every_pull_failed_ones_too() {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let observer: super::PullObserver = {
        let heard = heard.clone();
        std::sync::Arc::new(move |reference: &PolicyReference, source: Option<super::PullSource>| {
            heard.lock().unwrap().push((reference.to_string(), source));
        })
    };
    // Nothing listens on port 1 of loopback: refused at once.
    let registry = super::Registry::new(super::RegistryConfig {
        timeout: Some(std::time::Duration::from_secs(5)),
        ..super::RegistryConfig::default()
    })
    .with_observer(observer);
    let reference = PolicyReference::parse("oci://127.0.0.1:1/policies/web:v1").unwrap();
    let error = registry.pull(&reference, None).unwrap_err();
    assert!(matches!(error, OciError::Unreachable { .. }), "{error:?}");
    assert_eq!(
        *heard.lock().unwrap(),
        [("oci://127.0.0.1:1/policies/web:v1".to_owned(), None)]
    );
    assert_eq!(super::PullSource::StaleTag.as_str(), "stale_tag");
}
