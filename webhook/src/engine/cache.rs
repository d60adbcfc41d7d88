//! On-disk cache of precompiled policies, so a restart does not recompile.
//!
//! Compiling a component with Cranelift takes ~100 ms for a small Rust policy
//! and 7–16 s for a Python or JavaScript one; loading a precompiled artifact
//! takes well under a millisecond. An entry is keyed by the module's sha256
//! and by the engine's compatibility hash (wasmtime version and every setting
//! that affects code generation), so a changed engine never picks up a stale
//! entry. Loading precompiled code is only sound for bytes this engine wrote:
//! each entry therefore carries the sha256 of its contents, checked before
//! the bytes reach wasmtime, and a corrupt entry is deleted and rebuilt.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// File header: magic, then the sha256 of the artifact that follows.
const MAGIC: &[u8; 8] = b"WHKCWASM";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Where a load found its compiled component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled (no entry existed) and stored.
    Miss,
    /// An entry existed but was corrupt or unreadable; compiled and replaced.
    Rebuilt,
    /// No cache directory is configured; compiled.
    Disabled,
    /// Another policy of this engine already loaded the same module (same
    /// sha256): its compiled, linked component is shared, not loaded again.
    Shared,
}

/// A directory of precompiled components for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` (none when `None`) for components of `engine`.
    pub fn new(dir: Option<PathBuf>, engine: &wasmtime::Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// Loads the component for `wasm` (whose sha256 is `module_sha256`) from
    /// the cache, or compiles it and stores the result.
    pub fn load(
        &self,
        engine: &wasmtime::Engine,
        wasm: &[u8],
        module_sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Disabled));
        };
        let path = dir.join(format!("{module_sha256}-{}.cwasm", self.engine_key));
        let outcome = match std::fs::read(&path) {
            Ok(entry) => match verified_artifact(&entry) {
                // SAFETY: the bytes are exactly what `Component::serialize`
                // produced for an engine with this compatibility hash: the
                // sha256 in the header, written with them, matches.
                Some(artifact) => match unsafe { Component::deserialize(engine, artifact) } {
                    Ok(component) => return Ok((component, CacheOutcome::Hit)),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "precompiled policy rejected by the engine; recompiling");
                        CacheOutcome::Rebuilt
                    }
                },
                None => {
                    tracing::warn!(path = %path.display(), "corrupt precompiled policy in the cache; recompiling");
                    CacheOutcome::Rebuilt
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => CacheOutcome::Miss,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the compile cache; recompiling");
                CacheOutcome::Rebuilt
            }
        };
        let component = Component::new(engine, wasm)?;
        if let Err(error) = store(&path, &component.serialize()?) {
            tracing::warn!(path = %path.display(), %error, "cannot write the compile cache; continuing without it");
        }
        Ok((component, outcome))
    }
}

/// The artifact inside a cache entry, if its header and checksum are intact.
fn verified_artifact(entry: &[u8]) -> Option<&[u8]> {
    if entry.len() < HEADER_LEN || &entry[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (header, artifact) = entry.split_at(HEADER_LEN);
    (Sha256::digest(artifact).as_slice() == &header[MAGIC.len()..]).then_some(artifact)
}

/// Writes an entry atomically: a temporary file renamed into place, so a
/// crash or a concurrent writer never leaves a torn entry under the final name.
fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile_in(dir)?;
    file.1.write_all(MAGIC)?;
    file.1.write_all(&Sha256::digest(artifact))?;
    file.1.write_all(artifact)?;
    file.1.sync_all()?;
    std::fs::rename(&file.0, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_guards_the_artifact() {
        let artifact = b"not really machine code";
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&Sha256::digest(artifact));
        entry.extend_from_slice(artifact);
        assert_eq!(verified_artifact(&entry), Some(&artifact[..]));

        let last = entry.len() - 1;
        entry[last] ^= 1;
        assert_eq!(verified_artifact(&entry), None, "a flipped bit is detected");
        assert_eq!(verified_artifact(b"WHKCWASM"), None, "a truncated entry is detected");
        assert_eq!(verified_artifact(&[0; 64]), None, "a foreign file is detected");
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
