//! Where a policy's component comes from: compiled into the binary
//! (`builtin:<name>`), a `.wasm` file, or an OCI registry (`oci://…`).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::oci::{OciError, PolicyReference, Registry, SignatureRequirement};

pub use wasmhook_policy_artifacts::BUILTINS;

/// The prefix that names a built-in policy in a policy set.
pub const PREFIX: &str = "builtin:";

/// A policy component's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A policy compiled into the binary, by name.
    Builtin(&'static str),
    /// A component file.
    File(PathBuf),
    /// An artifact in an OCI registry (`oci://…`, or Kubewarden's
    /// `registry://…`), pulled when the policy is loaded.
    Oci(PolicyReference),
}

/// Why a module could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// `builtin:<name>` names no built-in policy.
    #[error("{name:?} is not a built-in policy (built-in: {})", builtin_names().join(", "))]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
    },
    /// The file could not be read.
    #[error("cannot read policy module {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The artifact could not be pulled or verified.
    #[error(transparent)]
    Oci(Box<OciError>),
}

impl From<OciError> for ModuleError {
    fn from(error: OciError) -> Self {
        Self::Oci(Box::new(error))
    }
}

impl ModuleSource {
    /// Reads `builtin:<name>` or a path. For command-line convenience a bare
    /// built-in name (`headless-service`) also names the built-in policy
    /// unless a file of that name exists.
    pub fn parse(spec: &str) -> Result<Self, ModuleError> {
        if PolicyReference::is_oci(spec) {
            return Ok(Self::Oci(PolicyReference::parse(spec)?));
        }
        if let Some(name) = spec.strip_prefix(PREFIX) {
            return lookup(name).map(Self::Builtin);
        }
        if !Path::new(spec).exists()
            && let Ok(name) = lookup(spec)
        {
            return Ok(Self::Builtin(name));
        }
        Ok(Self::File(PathBuf::from(spec)))
    }

    /// The component's bytes. A built-in comes in two builds: with its
    /// checks that read the cluster, for a policy that declares `context:`
    /// (`with_context`), and without, which does not import the
    /// cluster-context interface and so is cheaper to instantiate. Both
    /// decide alike when the policy may not read the cluster.
    ///
    /// An OCI artifact is pulled (or read from the cache) through
    /// `registry`, and must carry the signatures `signatures` requires.
    pub fn fetch(
        &self,
        registry: &Registry,
        with_context: bool,
        signatures: Option<&SignatureRequirement>,
    ) -> Result<Cow<'static, [u8]>, ModuleError> {
        match self {
            Self::Oci(reference) => {
                let pulled = registry.pull(reference, signatures)?;
                tracing::info!(
                    reference = %reference,
                    digest = %pulled.digest,
                    bytes = pulled.wasm.len(),
                    source = pulled.source.as_str(),
                    "policy module pulled"
                );
                Ok(Cow::Owned(pulled.wasm))
            }
            local => local.read(with_context),
        }
    }

    /// [`ModuleSource::fetch`] of a built-in or a file, which needs no
    /// registry; an OCI artifact is an error that says to pull it.
    pub fn read(&self, with_context: bool) -> Result<Cow<'static, [u8]>, ModuleError> {
        match self {
            Self::Oci(reference) => Err(OciError::Registry {
                reference: reference.to_string(),
                reason: "test suites read local modules: wasmhook pull it to a file first".to_owned(),
            }
            .into()),
            Self::Builtin(name) => Ok(Cow::Borrowed(
                wasmhook_policy_artifacts::builtin(name)
                    .expect("built-in names are checked on parse")
                    .component(with_context),
            )),
            Self::File(path) => std::fs::read(path).map(Cow::Owned).map_err(|source| ModuleError::Read {
                path: path.clone(),
                source,
            }),
        }
    }

    /// A short name for messages and logs.
    pub fn display_name(&self) -> String {
        match self {
            Self::Builtin(name) => format!("{PREFIX}{name}"),
            Self::File(path) => path.display().to_string(),
            Self::Oci(reference) => reference.to_string(),
        }
    }

    /// The default policy name for this module: the built-in's name or the
    /// file's stem.
    pub fn default_policy_name(&self) -> String {
        match self {
            Self::Builtin(name) => (*name).to_owned(),
            Self::File(path) => path
                .file_stem()
                .map(|stem| stem.to_string_lossy().replace('_', "-"))
                .unwrap_or_else(|| "policy".to_owned()),
            Self::Oci(reference) => reference
                .repository()
                .rsplit('/')
                .next()
                .unwrap_or("policy")
                .replace('_', "-"),
        }
    }
}

fn lookup(name: &str) -> Result<&'static str, ModuleError> {
    wasmhook_policy_artifacts::builtin(name)
        .map(|builtin| builtin.name)
        .ok_or_else(|| ModuleError::UnknownBuiltin { name: name.to_owned() })
}

/// The names of the built-in policies.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|builtin| builtin.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve_with_or_without_prefix() {
        assert_eq!(
            ModuleSource::parse("builtin:headless-service").unwrap(),
            ModuleSource::Builtin("headless-service")
        );
        assert_eq!(
            ModuleSource::parse("statefulset-service-name").unwrap(),
            ModuleSource::Builtin("statefulset-service-name")
        );
        let error = ModuleSource::parse("builtin:nope").unwrap_err().to_string();
        assert!(
            error.contains("\"nope\" is not a built-in policy") && error.contains("headless-service"),
            "{error}"
        );
    }

    #[test]
    fn anything_else_is_a_file_read_on_demand() {
        let source = ModuleSource::parse("/no/such/policy.wasm").unwrap();
        assert_eq!(source.default_policy_name(), "policy");
        let error = source.read(false).unwrap_err().to_string();
        assert!(error.contains("/no/such/policy.wasm"), "{error}");
        assert!(
            ModuleSource::Builtin("headless-service")
                .read(false)
                .unwrap()
                .starts_with(b"\0asm")
        );
    }
}
