//! The `wasmhook` command line: subcommands, logging set-up, exit codes.

mod eval;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, "warn");
    match cli.command {
        Command::Eval(args) => eval::run(args),
    }
}

/// Sets up `tracing` on stderr; `RUST_LOG` overrides `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
