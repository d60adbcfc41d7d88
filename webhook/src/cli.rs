//! The `wasmhook` command line: subcommands, logging set-up, exit codes.

mod audit;
mod certs;
mod eval;
mod manifests;
mod new;
mod registry;
mod serve;
mod test;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::server::Evaluator;

/// Runs Kubernetes admission policies compiled to WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "wasmhook", version, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WASMHOOK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate a policy on one request, locally: the policy author's inner loop.
    Eval(eval::EvalArgs),
    /// Run declarative policy test suites (*.test.yaml files or directories of them).
    Test(test::TestArgs),
    /// Scaffold a policy in Rust, Python or JavaScript that builds and passes its own tests.
    New(new::NewArgs),
    /// Run the admission server.
    Serve(Box<serve::ServeArgs>),
    /// Print the webhook configurations that register a policy set with the API server.
    Manifests(manifests::ManifestsArgs),
    /// Generate a CA, a serving certificate for wasmhook's Service and its TLS Secret.
    Certs(certs::CertsArgs),
    /// Pushes a policy component to an OCI registry.
    Push(registry::PushArgs),
    /// Pulls a policy component from an OCI registry (verifying its signature if asked).
    Pull(registry::PullArgs),
    /// Judge the objects already in a cluster by a policy set; optionally write PolicyReports.
    Audit(Box<audit::AuditArgs>),
    /// Signs a policy in an OCI registry, as cosign does (verified by `signatures:` in a policy set).
    Sign(registry::SignArgs),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Exit status of a command that could not run (bad usage, a policy that does
/// not load): the same code clap uses for usage errors.
pub const EXIT_USAGE: u8 = 2;

/// Runs the command line `args` (program name first), writing results to
/// `out` and errors to `err`; returns the exit status. The binary's `main`
/// calls this with the process's arguments and streams; tests call it
/// in-process.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let rendered = error.render().ansi().to_string();
            let _ = match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    out.write_all(rendered.as_bytes())
                }
                _ => err.write_all(rendered.as_bytes()),
            };
            return u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE);
        }
    };
    match cli.command {
        Command::Eval(args) => {
            init_logging(cli.log_format, "warn");
            eval::run(args, out, err)
        }
        Command::New(args) => {
            init_logging(cli.log_format, "warn");
            new::run(args, out, err)
        }
        Command::Test(args) => {
            init_logging(cli.log_format, "warn");
            test::run(args, out, err)
        }
        Command::Serve(args) => {
            init_logging(cli.log_format, "info");
            serve::run(*args, Evaluator::Policies, out, err)
        }
        Command::Manifests(args) => {
            init_logging(cli.log_format, "warn");
            manifests::run(args, out, err)
        }
        Command::Audit(args) => {
            // A policy failing on many objects is reported once per object
            // in the output; its log line each time would bury it.
            init_logging(cli.log_format, "error");
            audit::run(*args, out, err)
        }
        Command::Certs(args) => {
            init_logging(cli.log_format, "warn");
            certs::run(args, out, err)
        }
        Command::Push(args) => {
            init_logging(cli.log_format, "warn");
            registry::push(args, out, err)
        }
        Command::Pull(args) => {
            init_logging(cli.log_format, "warn");
            registry::pull(args, out, err)
        }
        Command::Sign(args) => {
            init_logging(cli.log_format, "warn");
            registry::sign(args, out, err)
        }
    }
}

/// `wasmhook serve`'s arguments alone: the benchmark baseline's command line.
#[derive(Debug, Parser)]
#[command(name = "wasmhook-baseline")]
struct BaselineCli {
    #[command(flatten)]
    serve: serve::ServeArgs,
}

/// The benchmark baseline's entry point: `wasmhook serve` with the same
/// arguments, runtime, logging and HTTP/TLS/JSON path, except that every
/// review is allowed without running a policy
/// ([`Evaluator::AllowWithoutPolicy`]). Only the benchmark-only binary
/// `wasmhook-baseline` (in `tests/bench/`) calls it.
pub fn baseline_main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let status = match BaselineCli::try_parse() {
        Ok(cli) => {
            init_logging(LogFormat::Text, "info");
            serve::run(cli.serve, Evaluator::AllowWithoutPolicy, &mut out, &mut err)
        }
        Err(error) => {
            let _ = error.print();
            u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE)
        }
    };
    ExitCode::from(status)
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    // The only crypto provider in the build; servers and clients also name it
    // explicitly, this covers any library that asks for the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Unlocked handles: other threads log to stderr, and a lock held here
    // for the life of `serve` would block every one of them.
    let status = run(std::env::args_os(), &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(status)
}

/// `$XDG_CACHE_HOME/wasmhook`, or `~/.cache/wasmhook`: the compile cache.
pub fn default_cache_dir() -> Option<PathBuf> {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

/// `$XDG_STATE_HOME/wasmhook`, or `~/.local/state/wasmhook`: development
/// certificates and the sample review.
pub fn default_state_dir() -> Option<PathBuf> {
    xdg_dir("XDG_STATE_HOME", ".local/state")
}

/// `$<variable>/wasmhook` when the variable is set and not empty, else
/// `$HOME/<fallback>/wasmhook`.
fn xdg_dir(variable: &str, fallback: &str) -> Option<PathBuf> {
    std::env::var_os(variable)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(fallback)))
        .map(|base| base.join("wasmhook"))
}

/// Sets up `tracing` on stderr; `RUST_LOG` overrides `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
