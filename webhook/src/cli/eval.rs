//! `wasmhook eval`: evaluate a policy on one request, locally, exactly as the
//! server would — same engine, same limits, same response mapping — and show
//! the verdict, the JSON Patch and the resulting object.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kube::core::admission::Operation;
use serde_json::Value;

use super::EXIT_USAGE;
use crate::builtin::ModuleSource;
use crate::context::{PolicyContext, ResourceKind, files};
use crate::engine::{Engine, EngineConfig, Limits};
use crate::manifest::{self, RequestSpec};
use crate::policy::{Action, Enforcement, FailurePolicy, Mode};
use crate::response::{Decision, Outcome, decide};
use crate::review::{AdmissionInput, operation_name};

/// Arguments of `wasmhook eval`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["review", "object"]))]
pub struct EvalArgs {
    /// The policy: a built-in name (headless-service, statefulset-service-name),
    /// a path to a .wasm component, or an artifact in a registry (oci://…).
    #[arg(long, value_name = "NAME|FILE|OCI")]
    policy: String,
    /// Policy settings: JSON or YAML inline, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    settings: Option<String>,
    /// An AdmissionReview JSON file, as the API server sends it.
    #[arg(long, value_name = "FILE")]
    review: Option<PathBuf>,
    /// A manifest (YAML or JSON) to build the request from.
    #[arg(long, value_name = "FILE")]
    object: Option<PathBuf>,
    /// The old version of the object (makes the operation UPDATE).
    #[arg(long, value_name = "FILE", requires = "object")]
    old: Option<PathBuf>,
    /// The operation of a request built from --object [default: CREATE, or UPDATE with --old].
    #[arg(long, value_enum, requires = "object")]
    operation: Option<OperationArg>,
    /// Namespace for a namespaced --object that names none.
    #[arg(long, default_value = "default", requires = "object")]
    namespace: String,
    /// Mutate (patch) or validate (deny instead of patching).
    #[arg(long, value_enum, default_value_t = Mode::Mutate)]
    mode: Mode,
    /// Enforce, or monitor (allow and report what would have happened).
    #[arg(long, value_enum, default_value_t = Action::Enforce)]
    action: Action,
    /// What a failure of the policy means.
    #[arg(long, value_enum, default_value_t = FailurePolicy::Fail)]
    failure_policy: FailurePolicy,
    /// Time limit for the evaluation, e.g. 500ms or 2s.
    #[arg(long, value_parser = crate::duration::parse, default_value = "2s")]
    timeout: Duration,
    /// Memory limit in MiB.
    #[arg(long, default_value_t = 128)]
    memory_limit_mib: usize,
    /// Where precompiled policies are cached [default: $XDG_CACHE_HOME/wasmhook or ~/.cache/wasmhook].
    #[arg(long, env = "WASMHOOK_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not use the compile cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Cluster objects the policy may read (`cluster-context`): YAML or JSON
    /// documents, or Lists, as `kubectl get -o yaml` writes them. Every kind
    /// in the files is declared, and the kinds a built-in reads; repeatable.
    #[arg(long = "context", value_name = "FILE")]
    context: Vec<PathBuf>,
    /// Declare a kind without objects in the --context files (`v1/Service`,
    /// `apps/v1/StatefulSet`): the policy reads it as empty; repeatable.
    #[arg(long = "context-kind", value_name = "APIVERSION/KIND", value_parser = parse_kind)]
    context_kinds: Vec<ResourceKind>,
    /// Output: a human summary, or the full AdmissionReview response as JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    output: OutputFormat,
    /// How to reach the registry of an oci:// --policy.
    #[command(flatten)]
    registry: super::registry::RegistryArgs,
}

/// The objects of every --context file; the kinds of the files, of
/// --context-kind and of a built-in declared.
fn read_context(args: &EvalArgs, source: &ModuleSource) -> Result<PolicyContext, String> {
    let mut documents = Vec::new();
    for path in &args.context {
        documents.extend(files::read_objects(path).map_err(|error| error.to_string())?);
    }
    let mut also = args.context_kinds.clone();
    if let ModuleSource::Builtin(name) = source {
        also.extend(crate::config::builtin_context(name));
    }
    let origin = args
        .context
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let origin = if origin.is_empty() {
        "--context-kind".to_owned()
    } else {
        origin
    };
    files::offline_context(&origin, documents, None, &also).map_err(|error| error.to_string())
}

/// `v1/Service` or `apps/v1/StatefulSet`.
fn parse_kind(text: &str) -> Result<ResourceKind, String> {
    match text.rsplit_once('/') {
        Some((api_version, kind)) if !api_version.is_empty() && !kind.is_empty() => {
            Ok(ResourceKind::new(api_version, kind))
        }
        _ => Err(format!(
            "{text:?} is not APIVERSION/KIND, e.g. v1/Service or apps/v1/StatefulSet"
        )),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
enum OperationArg {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Human,
    Json,
}

/// Runs `wasmhook eval`: 0 allowed, 1 denied, 2 usage or load error.
pub fn run(args: EvalArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match evaluate(&args) {
        Ok((input, decision)) => {
            let printed = match args.output {
                OutputFormat::Json => print_json(out, &decision),
                OutputFormat::Human => print_human(out, &args, &input, &decision),
            };
            if let Err(error) = printed {
                let _ = writeln!(err, "error: cannot write the output: {error}");
                return EXIT_USAGE;
            }
            if decision.response.allowed { 0 } else { 1 }
        }
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_USAGE
        }
    }
}

fn evaluate(args: &EvalArgs) -> Result<(AdmissionInput, Decision), String> {
    let source = ModuleSource::parse(&args.policy).map_err(|error| error.to_string())?;
    let with_context = !(args.context.is_empty() && args.context_kinds.is_empty());
    let registry = args.registry.registry_with_cache(cache_dir(args));
    let wasm = source
        .fetch(&registry, with_context, None)
        .map_err(|error| error.to_string())?;
    let settings = read_settings(args.settings.as_deref())?;
    let input = read_input(args)?;

    let engine = Engine::new(EngineConfig {
        max_concurrent_evaluations: 2,
        cache_dir: cache_dir(args),
        ..EngineConfig::default()
    })
    .map_err(|error| format!("cannot start the engine: {error:#}"))?;
    let limits = Limits {
        timeout: args.timeout,
        memory: args.memory_limit_mib << 20,
    };
    let name = source.default_policy_name();
    let policy = engine
        .load(&name, &wasm, &settings, limits)
        .map_err(|error| format!("{error} (module {})", source.display_name()))?;
    let policy = if args.context.is_empty() && args.context_kinds.is_empty() {
        policy
    } else {
        policy.with_context(Some(read_context(args, &source)?))
    };
    let enforcement = Enforcement {
        mode: args.mode,
        action: args.action,
        failure_policy: args.failure_policy,
    };
    let evaluated = policy.evaluate_blocking(input.request_text(), None);
    let decision = decide(&name, enforcement, &input, evaluated);
    Ok((input, decision))
}

/// Settings as JSON: inline JSON/YAML, or `@file`. Absent settings are `null`.
fn read_settings(settings: Option<&str>) -> Result<String, String> {
    let Some(settings) = settings else {
        return Ok("null".to_owned());
    };
    let (origin, text) = match settings.strip_prefix('@') {
        Some(file) => (
            file.to_owned(),
            std::fs::read_to_string(file).map_err(|error| format!("cannot read settings file {file}: {error}"))?,
        ),
        None => ("--settings".to_owned(), settings.to_owned()),
    };
    let value: Value = serde_saphyr::from_str(&text)
        .map_err(|error| format!("{origin}: settings are not valid JSON or YAML: {error}"))?;
    Ok(value.to_string())
}

fn read_input(args: &EvalArgs) -> Result<AdmissionInput, String> {
    if let Some(review) = &args.review {
        let body = std::fs::read(review).map_err(|error| format!("cannot read {}: {error}", review.display()))?;
        return AdmissionInput::from_review(&body).map_err(|error| format!("{}: {error}", review.display()));
    }
    let object_path = args.object.as_deref().expect("clap requires --review or --object");
    let object = manifest::read_object(object_path).map_err(|error| error.to_string())?;
    let old_object = args
        .old
        .as_deref()
        .map(manifest::read_object)
        .transpose()
        .map_err(|error| error.to_string())?;
    let operation = match (args.operation, &old_object) {
        (Some(OperationArg::Create), _) => Operation::Create,
        (Some(OperationArg::Update), _) | (None, Some(_)) => Operation::Update,
        (Some(OperationArg::Delete), _) => Operation::Delete,
        (None, None) => Operation::Create,
    };
    let request = manifest::build_request(RequestSpec {
        object,
        old_object,
        operation,
        default_namespace: args.namespace.clone(),
    })
    .map_err(|error| error.to_string())?;
    AdmissionInput::from_request(request.to_string()).map_err(|error| format!("{}: {error}", object_path.display()))
}

fn cache_dir(args: &EvalArgs) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    args.cache_dir.clone().or_else(super::default_cache_dir)
}

fn print_json(out: &mut dyn Write, decision: &Decision) -> std::io::Result<()> {
    let review = decision.response.clone().into_review();
    serde_json::to_writer_pretty(&mut *out, &review)?;
    writeln!(out)
}

fn print_human(
    out: &mut dyn Write,
    args: &EvalArgs,
    input: &AdmissionInput,
    decision: &Decision,
) -> std::io::Result<()> {
    let response = &decision.response;
    let target = match input.namespace() {
        Some(namespace) => format!("{namespace}/{}", input.name().unwrap_or("<generated>")),
        None => input.name().unwrap_or("<generated>").to_owned(),
    };
    writeln!(
        out,
        "policy:   {} (mode {}, action {}, failurePolicy {})",
        args.policy,
        args.mode.as_str(),
        args.action.as_str(),
        args.failure_policy.as_str()
    )?;
    writeln!(
        out,
        "request:  {} {} {target}",
        operation_name(input.operation()),
        input.kind().kind
    )?;
    let verdict = match decision.outcome {
        Outcome::Allowed => "ALLOWED".to_owned(),
        Outcome::Mutated => "ALLOWED with a patch".to_owned(),
        Outcome::Denied => "DENIED".to_owned(),
        Outcome::WouldDeny => "ALLOWED (monitor: would deny)".to_owned(),
        Outcome::WouldMutate => "ALLOWED unchanged (monitor: would patch)".to_owned(),
        Outcome::Failed { allowed, .. } => {
            format!("{} (the policy failed)", if allowed { "ALLOWED" } else { "DENIED" })
        }
    };
    writeln!(out, "verdict:  {verdict}")?;
    if let Some(status) = &response.status {
        writeln!(out, "status:   {} {}", status.code, status.reason)?;
        writeln!(out, "message:  {}", status.message)?;
    }
    if let Some(failure) = &decision.failure {
        writeln!(out, "failure:  {failure}")?;
    }
    for warning in &response.warnings {
        writeln!(out, "warning:  {warning}")?;
    }
    for (key, value) in &response.audit_annotations {
        writeln!(out, "audit:    {key}={value}")?;
    }
    if let Some(mutation) = &decision.mutation {
        let label = if response.patch.is_some() {
            "patch"
        } else {
            "wanted patch (not applied)"
        };
        writeln!(out, "\n{label}:")?;
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&mutation.patch).unwrap_or_default()
        )?;
        writeln!(out, "\nresulting object:")?;
        let yaml = match mutation.mutated() {
            Ok(object) => serde_saphyr::to_string(&object).unwrap_or_else(|error| format!("<cannot render: {error}>")),
            Err(error) => format!("<cannot render: {error}>"),
        };
        write!(out, "{yaml}")?;
    }
    Ok(())
}
