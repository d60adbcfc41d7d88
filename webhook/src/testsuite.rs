//! Declarative policy tests: `wasmhook test`.
//!
//! A test suite is a YAML file (`*.test.yaml`) that names a policy (module and
//! settings) and lists cases: an input (a manifest, optionally an old version
//! and an operation, or a recorded AdmissionReview) and what the policy must
//! answer (allowed or denied, message and warnings, and for mutations the
//! exact patch or the resulting object). Each case runs through the same
//! engine, limits and response mapping as the server, so a suite that passes
//! here passes in the cluster. The format is in `policies/README.md`.

mod format;
mod run;

use std::path::{Path, PathBuf};

pub use format::{Expectation, PolicyUnderTest, Source, Suite, TestCase};
pub use run::{CaseResult, Runner, SuiteResult};

/// The file-name suffixes of test suites, when a directory is searched.
pub const SUITE_SUFFIXES: [&str; 2] = [".test.yaml", ".test.yml"];

/// Why a suite cannot run (as opposed to a case that fails).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid suite.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// A path given on the command line does not exist or holds no suite.
    #[error("{}: {reason}", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
        /// Why nothing was found.
        reason: &'static str,
    },
}

/// The suite files under `paths`: files as given, directories searched
/// recursively for `*.test.yaml`. Sorted, so runs are reproducible.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SuiteError> {
    let mut suites = Vec::new();
    for path in paths {
        if path.is_file() {
            suites.push(path.clone());
        } else if path.is_dir() {
            let before = suites.len();
            collect(path, &mut suites).map_err(|source| SuiteError::Read {
                path: path.clone(),
                source,
            })?;
            if suites.len() == before {
                return Err(SuiteError::NotFound {
                    path: path.clone(),
                    reason: "no *.test.yaml file in this directory",
                });
            }
        } else {
            return Err(SuiteError::NotFound {
                path: path.clone(),
                reason: "no such file or directory",
            });
        }
    }
    suites.sort();
    suites.dedup();
    Ok(suites)
}

fn collect(dir: &Path, suites: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        // Build output and dependencies hold no suites of ours.
        if path.is_dir() && !matches!(name, "target" | "node_modules" | ".git" | "build") {
            collect(&path, suites)?;
        } else if SUITE_SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) {
            suites.push(path);
        }
    }
    Ok(())
}
