//! `wasmhook test`: runs declarative policy test suites (`*.test.yaml`) and
//! prints a compact pass/fail table, with what differed for each failure.
//! Exit status: 0 when every case passed, 1 when one failed, 2 when a suite
//! could not be read or its policy not loaded.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::EXIT_USAGE;
use crate::testsuite::{self, Runner, Suite, SuiteResult};

/// Arguments of `wasmhook test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Suite files, or directories searched for `*.test.yaml`.
    #[arg(required = true, value_name = "DIR|FILE")]
    paths: Vec<PathBuf>,
    /// Where precompiled policies are cached [default: $XDG_CACHE_HOME/wasmhook or ~/.cache/wasmhook].
    #[arg(long, env = "WASMHOOK_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not use the compile cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

/// Runs the suites under `args.paths`.
pub fn run(args: TestArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match run_all(&args, out) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_USAGE
        }
    }
}

/// `Ok(true)` when every case passed.
fn run_all(args: &TestArgs, out: &mut dyn Write) -> Result<bool, String> {
    let paths = testsuite::discover(&args.paths).map_err(|error| error.to_string())?;
    // Read every suite first: a malformed one stops the run before anything is reported.
    let suites = paths
        .iter()
        .map(|path| Suite::read(path).map_err(|error| error.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(super::default_cache_dir)
    };
    let mut runner = Runner::new(cache_dir)?;
    let (mut passed, mut failed) = (0, 0);
    for suite in &suites {
        let result = runner.run(suite);
        print_suite(out, &result).map_err(|error| format!("cannot write the results: {error}"))?;
        for case in &result.cases {
            if case.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    writeln!(
        out,
        "\n{} suite{}, {passed} passed, {failed} failed",
        suites.len(),
        if suites.len() == 1 { "" } else { "s" }
    )
    .map_err(|error| format!("cannot write the results: {error}"))?;
    Ok(failed == 0)
}

fn print_suite(out: &mut dyn Write, result: &SuiteResult) -> std::io::Result<()> {
    writeln!(out, "{} ({})", result.path.display(), result.module)?;
    let width = result
        .cases
        .iter()
        .map(|case| case.name.chars().count())
        .max()
        .unwrap_or(0);
    for case in &result.cases {
        let status = if case.passed() { "ok  " } else { "FAIL" };
        let millis = case.elapsed.as_secs_f64() * 1000.0;
        writeln!(out, "  {status}  {:<width$}  {millis:>7.2} ms", case.name)?;
        for problem in &case.problems {
            for line in problem.lines() {
                writeln!(out, "        {line}")?;
            }
        }
    }
    Ok(())
}
