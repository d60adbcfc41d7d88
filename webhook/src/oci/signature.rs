//! Signatures in cosign's keyed format, so authors sign with the tool they
//! already use (`cosign sign --key cosign.key`) and operators verify with
//! its public key (`cosign.pub`).
//!
//! cosign stores the signatures of the manifest `sha256:<hex>` as another
//! manifest in the same repository, tagged `sha256-<hex>.sig`: one layer per
//! signature, of media type `application/vnd.dev.cosign.simplesigning.v1+json`,
//! whose blob is the signed payload (it names the signed digest under
//! `critical.image.docker-manifest-digest`) and whose annotation
//! `dev.cosignproject.cosign/signature` is the base64 ECDSA P-256 / SHA-256
//! signature of that blob. A signature counts only if it verifies with a
//! configured key *and* its payload names the digest being loaded — a
//! signature copied from another artifact is refused. The payload's
//! `docker-reference` is not checked: a mirrored artifact keeps its
//! signatures (as `cosign verify` does).
//!
//! The cryptography is ring's (already the TLS provider), keys are read with
//! x509-parser; nothing here implements a primitive.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};

use super::OciError;

/// The signature layer's media type.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The signature manifest's config media type (cosign's).
pub const SIGNATURE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The tag cosign stores the signatures of `digest` under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// Which keys must have signed a policy (`signatures:` in a policy set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRequirement {
    /// The keys.
    pub keys: Vec<VerificationKey>,
    /// Whether every key must have signed, or one is enough.
    pub require_all: bool,
}

/// A public key signatures are verified with: ECDSA P-256, as
/// `cosign generate-key-pair` makes.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationKey {
    /// Where it was read from.
    pub path: PathBuf,
    /// The uncompressed point.
    point: Vec<u8>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerificationKey({})", self.path.display())
    }
}

impl VerificationKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) file.
    pub fn read(path: &Path) -> Result<Self, OciError> {
        let pem = std::fs::read(path).map_err(|error| OciError::Key {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
        Self::from_pem(path, &pem)
    }

    /// Parses a PEM `PUBLIC KEY`; `path` is for messages.
    pub fn from_pem(path: &Path, pem: &[u8]) -> Result<Self, OciError> {
        let invalid = |reason: String| OciError::Key {
            path: path.to_owned(),
            reason,
        };
        let der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|error| {
            invalid(format!(
                "not a PEM public key ({error}): expected -----BEGIN PUBLIC KEY-----, as cosign.pub"
            ))
        })?;
        let (_, spki) =
            <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(der.as_ref())
                .map_err(|error| invalid(format!("not a SubjectPublicKeyInfo: {error}")))?;
        let algorithm = spki.algorithm.algorithm.to_id_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.as_oid().ok())
            .map(|oid| oid.to_id_string());
        // id-ecPublicKey with prime256v1.
        if algorithm != "1.2.840.10045.2.1" || curve.as_deref() != Some("1.2.840.10045.3.1.7") {
            return Err(invalid(format!(
                "an unsupported key type (algorithm {algorithm}, parameters {}): wasmhook verifies ECDSA P-256 keys, \
                 which cosign generate-key-pair makes",
                curve.as_deref().unwrap_or("none")
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            point: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Whether `signature` (ASN.1 DER) signs `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, signature)
            .is_ok()
    }
}

/// A private key `wasmhook sign` signs with: ECDSA P-256 in an unencrypted
/// PKCS#8 PEM (`openssl genpkey -algorithm EC -pkeyopt
/// ec_paramgen_curve:P-256`). cosign's own encrypted key files are not read:
/// sign with cosign itself, and verify with wasmhook.
pub struct SigningKey {
    pair: EcdsaKeyPair,
}

impl SigningKey {
    /// Reads a PEM `PRIVATE KEY` file.
    pub fn read(path: &Path) -> Result<Self, OciError> {
        let invalid = |reason: String| OciError::Key {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|error| invalid(error.to_string()))?;
        if pem.starts_with(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
            || pem.starts_with(b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----")
        {
            return Err(invalid(
                "a cosign-encrypted key: sign with cosign sign --key, or give wasmhook an unencrypted PKCS#8 key"
                    .to_owned(),
            ));
        }
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem)
            .map_err(|error| invalid(format!("not a PEM PKCS#8 private key ({error})")))?;
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            der.secret_pkcs8_der(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|error| invalid(format!("not an ECDSA P-256 key ({error})")))?;
        Ok(Self { pair })
    }

    /// The signature (ASN.1 DER) of `payload`.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&ring::rand::SystemRandom::new(), payload)
            .expect("ECDSA signing with a valid key")
            .as_ref()
            .to_vec()
    }
}

/// cosign's simple-signing payload, written as cosign writes it.
#[derive(Serialize, Deserialize)]
struct Payload {
    critical: Critical,
    optional: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The payload that signs `digest` of `repository` (`registry/repository`).
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_owned(),
            },
            image: Image {
                docker_manifest_digest: digest.to_owned(),
            },
            kind: PAYLOAD_TYPE.to_owned(),
        },
        optional: None,
    })
    .expect("the payload serializes")
}

/// One signature found for an artifact: its payload and signature, as
/// stored (kept in the cache to verify again offline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundSignature {
    /// The payload blob, base64.
    pub payload: String,
    /// The signature annotation (base64 of ASN.1 DER).
    pub signature: String,
}

/// Checks `found` against `requirement` for the manifest `digest`; the error
/// says, for each key that has no valid signature, why the signatures found
/// did not count.
pub fn verify(digest: &str, found: &[FoundSignature], requirement: &SignatureRequirement) -> Result<(), String> {
    if found.is_empty() {
        return Err(format!(
            "the artifact is not signed (no {} in the repository): sign it with cosign sign --key, or wasmhook sign",
            signature_tag(digest)
        ));
    }
    let mut failures = Vec::new();
    let mut valid = 0;
    for key in &requirement.keys {
        match signed_by(digest, found, key) {
            Ok(()) => valid += 1,
            Err(reason) => failures.push(format!("{}: {reason}", key.path.display())),
        }
    }
    let satisfied = if requirement.require_all {
        failures.is_empty()
    } else {
        valid > 0
    };
    if satisfied {
        return Ok(());
    }
    let needed = if requirement.require_all {
        "every key must have signed"
    } else {
        "one of the keys must have signed"
    };
    Err(format!("{needed}; {}", failures.join("; ")))
}

/// Whether one of `found` is a valid signature of `digest` by `key`.
fn signed_by(digest: &str, found: &[FoundSignature], key: &VerificationKey) -> Result<(), String> {
    let mut reasons = Vec::new();
    for (index, signature) in found.iter().enumerate() {
        let reason = match check_one(digest, signature, key) {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        reasons.push(format!("signature {}: {reason}", index + 1));
    }
    Err(reasons.join(", "))
}

fn check_one(digest: &str, found: &FoundSignature, key: &VerificationKey) -> Result<(), String> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let payload = base64
        .decode(&found.payload)
        .map_err(|_| "its payload is not base64".to_owned())?;
    let signature = base64
        .decode(found.signature.trim())
        .map_err(|_| "its signature annotation is not base64".to_owned())?;
    if !key.verifies(&payload, &signature) {
        return Err("not made with this key".to_owned());
    }
    let payload: Payload = serde_json::from_slice(&payload)
        .map_err(|error| format!("a valid signature over a payload that is not cosign's ({error})"))?;
    if payload.critical.kind != PAYLOAD_TYPE {
        return Err(format!(
            "a valid signature over a payload of type {:?}, not {PAYLOAD_TYPE:?}",
            payload.critical.kind
        ));
    }
    if payload.critical.image.docker_manifest_digest != digest {
        return Err(format!(
            "a valid signature of another artifact ({}), not of {digest}",
            payload.critical.image.docker_manifest_digest
        ));
    }
    Ok(())
}
