//! Pulled artifacts on disk, by digest, so that a restart with a pinned
//! digest starts without the registry.
//!
//! Layout under `<cache-dir>/oci/`:
//!
//! - `sha256/<manifest digest>/manifest.json` and `module.wasm`: an artifact
//!   as pulled. Both are checked against their digests when read back (the
//!   manifest against the directory's name, the module against the
//!   manifest's layer digest), so a corrupt or tampered entry is a miss, not
//!   a module;
//! - `sha256/<manifest digest>/signatures.json`: the signatures found for
//!   it, verified again with the configured keys on every load;
//! - `tags/<sha256 of the reference>.json`: the digest a tag last resolved
//!   to, used only when the registry cannot be reached.
//!
//! Files are written to a temporary name and renamed, so a reader never sees
//! half a file. A cache that cannot be written is logged and skipped: it
//! costs the next restart a pull, never a load.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::artifact;
use super::signature::FoundSignature;

/// The cache directory (`None`: nothing is kept).
#[derive(Debug, Clone)]
pub struct OciCache {
    dir: Option<PathBuf>,
}

/// An artifact read back from the cache, checked.
#[derive(Debug, Clone)]
pub struct CachedArtifact {
    /// The manifest, as pulled.
    pub manifest: Vec<u8>,
    /// The component.
    pub wasm: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct TagEntry {
    reference: String,
    digest: String,
}

impl OciCache {
    /// A cache under `cache_dir/oci` (none when `None`).
    pub fn new(cache_dir: Option<&Path>) -> Self {
        Self {
            dir: cache_dir.map(|dir| dir.join("oci")),
        }
    }

    fn entry(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        Some(self.dir.as_ref()?.join("sha256").join(hex))
    }

    /// The artifact `digest`, if cached and intact.
    pub fn artifact(&self, digest: &str, max_bytes: u64) -> Option<CachedArtifact> {
        let entry = self.entry(digest)?;
        let manifest = std::fs::read(entry.join("manifest.json")).ok()?;
        if artifact::sha256_digest(&manifest) != digest {
            tracing::warn!(path = %entry.display(), "cached manifest does not match its digest; pulling again");
            return None;
        }
        let (_, layer) = artifact::read_manifest(digest, &manifest, max_bytes).ok()?;
        let wasm = std::fs::read(entry.join("module.wasm")).ok()?;
        if artifact::sha256_digest(&wasm) != layer.digest {
            tracing::warn!(path = %entry.display(), "cached module does not match its digest; pulling again");
            return None;
        }
        Some(CachedArtifact { manifest, wasm })
    }

    /// Keeps an artifact.
    pub fn store_artifact(&self, digest: &str, manifest: &[u8], wasm: &[u8]) {
        let Some(entry) = self.entry(digest) else { return };
        let stored = write_atomically(&entry.join("module.wasm"), wasm)
            .and_then(|()| write_atomically(&entry.join("manifest.json"), manifest));
        warn_unless_stored(&entry, stored);
    }

    /// The signatures last found for `digest`.
    pub fn signatures(&self, digest: &str) -> Option<Vec<FoundSignature>> {
        let text = std::fs::read(self.entry(digest)?.join("signatures.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Keeps the signatures found for `digest`.
    pub fn store_signatures(&self, digest: &str, found: &[FoundSignature]) {
        let Some(entry) = self.entry(digest) else { return };
        let json = serde_json::to_vec(found).expect("signatures serialize");
        warn_unless_stored(&entry, write_atomically(&entry.join("signatures.json"), &json));
    }

    fn tag_file(&self, reference: &str) -> Option<PathBuf> {
        let name = crate::engine::sha256_hex(reference.as_bytes());
        Some(self.dir.as_ref()?.join("tags").join(format!("{name}.json")))
    }

    /// The digest `reference` (a tag) last resolved to.
    pub fn tag(&self, reference: &str) -> Option<String> {
        let text = std::fs::read(self.tag_file(reference)?).ok()?;
        let entry: TagEntry = serde_json::from_slice(&text).ok()?;
        (entry.reference == reference).then_some(entry.digest)
    }

    /// Remembers what `reference` resolved to.
    pub fn store_tag(&self, reference: &str, digest: &str) {
        let Some(file) = self.tag_file(reference) else { return };
        let entry = TagEntry {
            reference: reference.to_owned(),
            digest: digest.to_owned(),
        };
        let json = serde_json::to_vec(&entry).expect("a tag entry serializes");
        warn_unless_stored(&file, write_atomically(&file, &json));
    }
}

fn warn_unless_stored(path: &Path, stored: std::io::Result<()>) {
    if let Err(error) = stored {
        tracing::warn!(path = %path.display(), %error, "cannot write the OCI cache; the next start pulls again");
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache files are in a directory");
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}
