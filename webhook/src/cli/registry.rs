//! `wasmhook push`, `wasmhook pull` and `wasmhook sign`: a policy to and
//! from an OCI registry (see [`crate::oci`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::EXIT_USAGE;
use crate::oci::artifact::{self, Artifact};
use crate::oci::signature::{SignatureRequirement, SigningKey, VerificationKey};
use crate::oci::{PolicyReference, Registry, RegistryConfig};

/// How to reach the registry: the same flags as `serve`'s.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Docker config.json with registry credentials [default: ~/.docker/config.json if it exists].
    #[arg(long, env = "WASMHOOK_REGISTRY_CONFIG", value_name = "FILE")]
    registry_config: Option<PathBuf>,
    /// PEM certificates to trust for registries, besides the system's.
    #[arg(long, env = "WASMHOOK_REGISTRY_CA", value_name = "FILE")]
    registry_ca: Option<PathBuf>,
    /// A registry (host or host:port) to speak plain HTTP to. Repeatable.
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
    /// The bound of the whole operation, retries included.
    #[arg(long, value_parser = crate::duration::parse, default_value = "60s")]
    registry_timeout: Duration,
}

impl RegistryArgs {
    /// The registries as these flags say; pulled artifacts kept under
    /// `cache_dir`/oci when given.
    pub(super) fn registry_with_cache(&self, cache_dir: Option<PathBuf>) -> Registry {
        Registry::new(RegistryConfig {
            cache_dir,
            ..self.config()
        })
    }

    /// The registries for push, pull and sign: nothing cached, no size limit
    /// (the module is the user's own file, or asked for by name).
    fn registry(&self) -> Registry {
        Registry::new(RegistryConfig {
            max_module_bytes: Some(u64::MAX),
            ..self.config()
        })
    }

    fn config(&self) -> RegistryConfig {
        let default_config = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".docker/config.json"))
            .filter(|path| path.is_file());
        RegistryConfig {
            docker_config: self.registry_config.clone().or(default_config),
            ca_bundle: self.registry_ca.clone(),
            insecure: self.insecure_registry.clone(),
            timeout: Some(self.registry_timeout),
            cache_dir: None,
            max_module_bytes: None,
        }
    }
}

/// Arguments of `wasmhook push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The policy component (.wasm).
    module: PathBuf,
    /// Where to push it: oci://registry/repository:tag.
    reference: String,
    /// org.opencontainers.image.title [default: the file's name without .wasm].
    #[arg(long)]
    title: Option<String>,
    /// org.opencontainers.image.version [default: the tag].
    #[arg(long)]
    version: Option<String>,
    /// org.opencontainers.image.source: where the policy's code lives.
    #[arg(long)]
    source: Option<String>,
    /// org.opencontainers.image.description.
    #[arg(long)]
    description: Option<String>,
    /// The mode the policy is written for (dev.wasmhook.policy.mode).
    #[arg(long, value_parser = ["mutate", "validate"])]
    mode: Option<String>,
    /// The rules the policy expects, as a JSON list of RuleWithOperations
    /// (dev.wasmhook.policy.rules).
    #[arg(long, value_name = "JSON")]
    rules: Option<String>,
    /// Another manifest annotation, KEY=VALUE. Repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Arguments of `wasmhook pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The artifact: oci://registry/repository:tag or @sha256:….
    reference: String,
    /// Where to write the component.
    #[arg(short, long)]
    output: PathBuf,
    /// Require a valid signature by this public key (cosign.pub). Repeatable: every key must have signed.
    #[arg(long, value_name = "FILE")]
    verify_key: Vec<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Arguments of `wasmhook sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The artifact to sign: oci://registry/repository:tag or @sha256:….
    reference: String,
    /// The private key: ECDSA P-256, unencrypted PKCS#8 PEM.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `wasmhook push`.
pub fn push(args: PushArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    report(push_artifact(&args), out, err)
}

fn push_artifact(args: &PushArgs) -> Result<String, Failure> {
    let reference = PolicyReference::parse(&args.reference).map_err(|error| error.to_string())?;
    let Some(tag) = reference.tag().filter(|_| reference.digest().is_none()) else {
        return Err(Failure::Usage(format!(
            "{reference}: push to a tag (oci://…/repository:tag); the digest is the registry's answer"
        )));
    };
    let wasm = std::fs::read(&args.module).map_err(|error| format!("{}: {error}", args.module.display()))?;
    artifact::check_component(&wasm).map_err(|reason| format!("{}: {reason}", args.module.display()))?;
    let mut annotations = BTreeMap::new();
    let title = args.title.clone().unwrap_or_else(|| {
        args.module
            .file_stem()
            .map_or_else(|| "policy".to_owned(), |stem| stem.to_string_lossy().into_owned())
    });
    let created = artifact::now_rfc3339();
    annotations.insert(artifact::TITLE.to_owned(), title);
    annotations.insert(
        artifact::VERSION.to_owned(),
        args.version.clone().unwrap_or_else(|| tag.to_owned()),
    );
    annotations.insert(artifact::CREATED.to_owned(), created.clone());
    for (key, value) in [
        (artifact::SOURCE, &args.source),
        (artifact::DESCRIPTION, &args.description),
        (artifact::MODE, &args.mode),
    ] {
        if let Some(value) = value {
            annotations.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(rules) = &args.rules {
        let parsed: Vec<k8s_openapi::api::admissionregistration::v1::RuleWithOperations> =
            serde_json::from_str(rules).map_err(|error| format!("--rules: not a JSON list of rules: {error}"))?;
        annotations.insert(
            artifact::RULES.to_owned(),
            serde_json::to_string(&parsed).expect("rules serialize"),
        );
    }
    for annotation in &args.annotations {
        let (key, value) = annotation
            .split_once('=')
            .ok_or_else(|| format!("--annotation {annotation:?}: expected KEY=VALUE"))?;
        annotations.insert(key.to_owned(), value.to_owned());
    }
    let artifact = Artifact {
        wasm,
        annotations,
        created,
    };
    let digest = args.registry.registry().push(&reference, &artifact).map_err(failed)?;
    Ok(format!(
        "pushed {reference} ({} bytes)\ndigest: {digest}\npin it: {}",
        artifact.wasm.len(),
        reference.at_digest(&digest)
    ))
}

/// `wasmhook pull`.
pub fn pull(args: PullArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    report(pull_artifact(&args), out, err)
}

fn pull_artifact(args: &PullArgs) -> Result<String, Failure> {
    let reference = PolicyReference::parse(&args.reference).map_err(|error| error.to_string())?;
    let keys = args
        .verify_key
        .iter()
        .map(|path| VerificationKey::read(path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    let requirement = (!keys.is_empty()).then_some(SignatureRequirement {
        keys,
        require_all: true,
    });
    let pulled = args
        .registry
        .registry()
        .pull(&reference, requirement.as_ref())
        .map_err(failed)?;
    std::fs::write(&args.output, &pulled.wasm)
        .map_err(|error| Failure::Failed(format!("{}: {error}", args.output.display())))?;
    Ok(format!(
        "pulled {} ({} bytes, sha256 {}){}\nwrote {}",
        reference.at_digest(&pulled.digest),
        pulled.wasm.len(),
        crate::engine::sha256_hex(&pulled.wasm),
        if requirement.is_some() {
            ", signature verified"
        } else {
            ""
        },
        args.output.display()
    ))
}

/// `wasmhook sign`.
pub fn sign(args: SignArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    report(sign_artifact(&args), out, err)
}

fn sign_artifact(args: &SignArgs) -> Result<String, Failure> {
    let reference = PolicyReference::parse(&args.reference).map_err(|error| error.to_string())?;
    let key = SigningKey::read(&args.key).map_err(|error| error.to_string())?;
    let digest = args.registry.registry().sign(&reference, &key).map_err(failed)?;
    Ok(format!("signed {}", reference.at_digest(&digest)))
}

/// Prints the outcome: 0, 1 when the registry operation failed, 2 when the
/// reference or a file given is unusable.
fn report(result: Result<String, Failure>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match result {
        Ok(message) => {
            let _ = writeln!(out, "{message}");
            0
        }
        Err(Failure::Usage(error)) => {
            let _ = writeln!(err, "error: {error}");
            EXIT_USAGE
        }
        Err(Failure::Failed(error)) => {
            let _ = writeln!(err, "error: {error}");
            1
        }
    }
}

/// Why a command failed.
enum Failure {
    /// What was given is unusable.
    Usage(String),
    /// The registry operation failed.
    Failed(String),
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Self::Usage(error)
    }
}

fn failed(error: crate::oci::OciError) -> Failure {
    Failure::Failed(error.to_string())
}
