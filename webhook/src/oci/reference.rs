//! `oci://registry/repository:tag` and `@sha256:<digest>` — and Kubewarden's
//! `registry://` spelling of the same — as a policy set's `module:` and the
//! command line name an artifact.

use std::fmt;

use oci_client::Reference;

use super::OciError;

/// The scheme wasmhook writes.
pub const SCHEME: &str = "oci://";
/// Kubewarden's scheme, accepted as a synonym.
pub const KUBEWARDEN_SCHEME: &str = "registry://";

/// An artifact in a registry: always with an explicit registry host, and a
/// tag, a digest, or both (the digest is what is pulled; the tag is only
/// informative then).
#[derive(Clone, PartialEq, Eq)]
pub struct PolicyReference(Box<Reference>);

impl PolicyReference {
    /// Whether `spec` names an OCI artifact (by its scheme), rather than a
    /// file or a built-in.
    pub fn is_oci(spec: &str) -> bool {
        spec.starts_with(SCHEME) || spec.starts_with(KUBEWARDEN_SCHEME)
    }

    /// Parses `oci://…` or `registry://…`.
    pub fn parse(spec: &str) -> Result<Self, OciError> {
        let invalid = |reason: &str| OciError::InvalidReference {
            reference: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = spec
            .strip_prefix(SCHEME)
            .or_else(|| spec.strip_prefix(KUBEWARDEN_SCHEME))
            .ok_or_else(|| invalid("it must start with oci:// (or registry://)"))?;
        // Without a host, `Reference` would default to Docker Hub: say so
        // instead of pulling from a registry nobody named.
        let host = rest.split('/').next().unwrap_or_default();
        let names_a_host = rest.contains('/') && (host.contains('.') || host.contains(':') || host == "localhost");
        if !names_a_host {
            return Err(invalid(
                "name the registry host, e.g. oci://ghcr.io/org/policy:v1 (Docker Hub is docker.io/…)",
            ));
        }
        let has_tag_or_digest = rest.contains('@') || rest.rsplit('/').next().is_some_and(|last| last.contains(':'));
        if !has_tag_or_digest {
            return Err(invalid(
                "name a tag (…:v1) or a digest (…@sha256:…): wasmhook does not assume :latest",
            ));
        }
        if let Some((_, digest)) = rest.split_once('@') {
            check_digest(digest).map_err(|reason| invalid(&reason))?;
        }
        let reference: Reference = rest
            .parse()
            .map_err(|error: oci_client::ParseError| invalid(&error.to_string()))?;
        Ok(Self(Box::new(reference)))
    }

    /// The client's reference.
    pub fn inner(&self) -> &Reference {
        &self.0
    }

    /// The registry host (`host` or `host:port`).
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// The repository, such as `org/policy`.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// The tag, if named.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// The pinned digest (`sha256:…`), if named.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> Self {
        Self::from(Reference::with_digest(
            self.registry().to_owned(),
            self.repository().to_owned(),
            digest.to_owned(),
        ))
    }

    /// The same repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> Self {
        Self::from(Reference::with_tag(
            self.registry().to_owned(),
            self.repository().to_owned(),
            tag.to_owned(),
        ))
    }

    /// `registry/repository`, as cosign's payload names the signed image.
    pub fn repository_path(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }
}

impl From<Reference> for PolicyReference {
    fn from(reference: Reference) -> Self {
        Self(Box::new(reference))
    }
}

impl fmt::Display for PolicyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry(), self.repository())?;
        if let Some(tag) = self.tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = self.digest() {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PolicyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// A `sha256:` digest of 64 lowercase hex digits: the only algorithm
/// wasmhook pins (its cache and the `sha256` pin use it).
pub fn check_digest(digest: &str) -> Result<(), String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest:?}: only sha256 digests are supported"))?;
    if hex.len() != 64 || !hex.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest {digest:?}: expected sha256: and 64 lowercase hex digits"
        ));
    }
    Ok(())
}
