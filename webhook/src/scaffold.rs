//! `wasmhook new`: a policy directory, in Rust, Python or JavaScript, that
//! builds and passes its own tests at once — the sample policy, a build
//! script, a test suite for `wasmhook test`, and a README on the contract,
//! settings, `eval`, `test` and deployment. The templates are in
//! `webhook/templates/new/`.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

/// The languages a policy can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    /// Rust, with the wasmhook-policy SDK.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with jco (QuickJS).
    Js,
}

/// What the sample policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Denies objects without a label.
    Validate,
    /// Adds the label when it is missing.
    Mutate,
}

/// What to scaffold.
#[derive(Debug, Clone)]
pub struct Scaffold {
    /// The policy's name: a DNS-1123 label, as in a policy set.
    pub name: String,
    /// Its language.
    pub language: Language,
    /// What the sample does.
    pub kind: Kind,
    /// The Rust SDK (`policies/sdk` of a wasmhook checkout), for Rust policies.
    pub sdk: Option<PathBuf>,
}

/// Why nothing was scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot name a policy.
    #[error(
        "{0:?} is not a valid policy name: use lowercase letters, digits and '-', starting with a letter (at most 63)"
    )]
    Name(String),
    /// The directory is there and not empty.
    #[error("{} already exists and is not empty: choose another name or directory", .0.display())]
    Exists(PathBuf),
    /// A Rust policy needs the SDK, and it was not found.
    #[error(
        "the Rust SDK (wasmhook-policy) is not at {}: pass --sdk with the policies/sdk directory of a wasmhook checkout",
        .0.display()
    )]
    Sdk(PathBuf),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The SDK of the source tree this binary was built from, if it is still there.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/sdk")
}

const WIT: &str = include_str!("../../policies/wit/policy.wit");

mod templates {
    pub const README: &str = include_str!("../templates/new/common/README.md");
    pub const GITIGNORE: &str = include_str!("../templates/new/common/gitignore");
    pub const SERVICE: &str = include_str!("../templates/new/common/service.yaml");
    pub const SUITE_VALIDATE: &str = include_str!("../templates/new/common/suite-validate.yaml");
    pub const SUITE_MUTATE: &str = include_str!("../templates/new/common/suite-mutate.yaml");
    pub const RUST_CARGO: &str = include_str!("../templates/new/rust/Cargo.toml");
    pub const RUST_VALIDATE: &str = include_str!("../templates/new/rust/src-validate.rs");
    pub const RUST_MUTATE: &str = include_str!("../templates/new/rust/src-mutate.rs");
    pub const RUST_BUILD: &str = include_str!("../templates/new/rust/build.sh");
    pub const RUST_CARGO_CONFIG: &str = include_str!("../templates/new/rust/cargo-config.toml");
    pub const PYTHON_APP: &str = include_str!("../templates/new/python/app.py");
    pub const PYTHON_VALIDATE: &str = include_str!("../templates/new/python/missing-validate.txt");
    pub const PYTHON_MUTATE: &str = include_str!("../templates/new/python/missing-mutate.txt");
    pub const PYTHON_BUILD: &str = include_str!("../templates/new/python/build.sh");
    pub const JS_POLICY: &str = include_str!("../templates/new/js/policy.js");
    pub const JS_VALIDATE: &str = include_str!("../templates/new/js/missing-validate.txt");
    pub const JS_MUTATE: &str = include_str!("../templates/new/js/missing-mutate.txt");
    /// The same pins as the example policies' build (one place to update them).
    pub const JS_PACKAGE: &str = include_str!("../../policies/examples/toolchain/package.json");
    pub const PYTHON_REQUIREMENT: &str = include_str!("../../policies/examples/toolchain/requirements.txt");
    pub const JS_BUILD: &str = include_str!("../templates/new/js/build.sh");
}

impl Scaffold {
    /// Writes the policy into `dir` (created; it must not hold anything yet)
    /// and returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
        if !is_policy_name(&self.name) {
            return Err(ScaffoldError::Name(self.name.clone()));
        }
        if dir.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(ScaffoldError::Exists(dir.to_owned()));
        }
        let files = self.files()?;
        let mut written = Vec::new();
        for (relative, contents) in files {
            let path = dir.join(relative);
            let write = |path: &Path| -> std::io::Result<()> {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, &contents)?;
                if relative.ends_with(".sh") {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
                }
                Ok(())
            };
            write(&path).map_err(|source| ScaffoldError::Write {
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }

    /// Every file, by path relative to the policy's directory.
    fn files(&self) -> Result<Vec<(&'static str, String)>, ScaffoldError> {
        let mut files = vec![
            ("README.md", self.fill(templates::README)),
            (".gitignore", templates::GITIGNORE.to_owned()),
            ("tests/service.yaml", templates::SERVICE.to_owned()),
            (
                "tests/policy.test.yaml",
                self.fill(self.by_kind(templates::SUITE_VALIDATE, templates::SUITE_MUTATE)),
            ),
        ];
        match self.language {
            Language::Rust => {
                let sdk = self.sdk.clone().unwrap_or_else(default_sdk);
                let sdk = sdk.canonicalize().map_err(|_| ScaffoldError::Sdk(sdk.clone()))?;
                if !sdk.join("Cargo.toml").is_file() {
                    return Err(ScaffoldError::Sdk(sdk));
                }
                let dependency = format!("{{ path = {:?} }}", sdk.display().to_string());
                files.push((
                    "Cargo.toml",
                    self.fill(templates::RUST_CARGO)
                        .replace("{{sdk_dependency}}", &dependency),
                ));
                let source = self.by_kind(templates::RUST_VALIDATE, templates::RUST_MUTATE);
                files.push(("src/lib.rs", self.fill(source)));
                files.push(("build.sh", self.fill(templates::RUST_BUILD)));
                files.push((".cargo/config.toml", templates::RUST_CARGO_CONFIG.to_owned()));
            }
            Language::Python => {
                let missing = self.by_kind(templates::PYTHON_VALIDATE, templates::PYTHON_MUTATE);
                let app = templates::PYTHON_APP.replace("{{python_missing}}\n", missing);
                files.push(("app.py", self.fill(&app)));
                files.push(("build.sh", self.fill(templates::PYTHON_BUILD)));
                files.push(("wit/policy.wit", WIT.to_owned()));
            }
            Language::Js => {
                let missing = self.by_kind(templates::JS_VALIDATE, templates::JS_MUTATE);
                let policy = templates::JS_POLICY.replace("{{js_missing}}\n", missing);
                files.push(("policy.js", self.fill(&policy)));
                files.push(("package.json", templates::JS_PACKAGE.to_owned()));
                files.push(("build.sh", templates::JS_BUILD.to_owned()));
                files.push(("wit/policy.wit", WIT.to_owned()));
            }
        }
        Ok(files)
    }

    /// The validating or the mutating variant of a template, by the kind scaffolded.
    fn by_kind(&self, validate: &'static str, mutate: &'static str) -> &'static str {
        match self.kind {
            Kind::Validate => validate,
            Kind::Mutate => mutate,
        }
    }

    /// Substitutes the placeholders every template may use.
    fn fill(&self, template: &str) -> String {
        let mutate = self.kind == Kind::Mutate;
        let (language, build_notes) = match self.language {
            Language::Rust => (
                "Rust",
                "`./build.sh` runs `cargo build --release --target wasm32-wasip2` (adding the target \
                 with rustup if needed) and copies the component to `build/policy.wasm`. \
                 `cargo test` runs the unit tests in `src/lib.rs` natively, without Wasm.",
            ),
            Language::Python => (
                "Python",
                "`./build.sh` installs {{componentize_py}} from PyPI into `.tools/` on first \
                 use (or uses `$WASMHOOK_POLICY_TOOLS`) and builds from a clean copy of the \
                 sources, because componentize-py bundles everything on its search path. The \
                 component carries CPython (~18 MB); the server compiles it once and caches it.",
            ),
            Language::Js => (
                "JavaScript",
                "`./build.sh` installs jco and componentize-js (pinned in `package.json`) from the \
                 npm registry into `.tools/` on first use (or uses `$WASMHOOK_POLICY_TOOLS`) and \
                 builds with the QuickJS backend (~1.6 MB), with synchronous exports.",
            ),
        };
        let (behaviour, sample_settings, settings_notes) = if mutate {
            (
                "adds a label to objects that lack it.",
                r#"{"label": "team", "value": "unowned"}"#,
                ": `label` is the label every object must carry, `value` the value it gets when it is missing",
            )
        } else {
            (
                "denies objects that lack a label.",
                r#"{"label": "team"}"#,
                ": `label` is the label every object must carry",
            )
        };
        template
            .replace("{{name}}", &self.name)
            .replace("{{crate_name}}", &self.name.replace('-', "_"))
            .replace("{{type_name}}", &type_name(&self.name))
            .replace("{{kind}}", if mutate { "mutate" } else { "validate" })
            .replace("{{language}}", language)
            .replace("{{build_notes}}", build_notes)
            .replace("{{componentize_py}}", templates::PYTHON_REQUIREMENT.trim())
            .replace("{{behaviour}}", behaviour)
            .replace("{{sample_settings}}", sample_settings)
            .replace("{{settings_notes}}", settings_notes)
            .replace(
                "{{value_setting_doc}}",
                if mutate { r#", "value": "unowned""# } else { "" },
            )
            .replace(
                "{{value_default_py}}",
                if mutate { r#", "value": "unowned""# } else { "" },
            )
            .replace(
                "{{value_default_js}}",
                if mutate { r#", value: "unowned""# } else { "" },
            )
    }
}

/// A DNS-1123 label starting with a letter: what a policy set accepts as a name.
fn is_policy_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `require-team` → `RequireTeam`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaffold(language: Language, kind: Kind) -> Scaffold {
        Scaffold {
            name: "require-team".into(),
            language,
            kind,
            sdk: None,
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for language in [Language::Rust, Language::Python, Language::Js] {
            for kind in [Kind::Validate, Kind::Mutate] {
                for (path, contents) in scaffold(language, kind).files().unwrap() {
                    assert!(
                        !contents.contains("{{"),
                        "{language:?}/{kind:?}: {path} keeps a placeholder"
                    );
                }
            }
        }
    }

    #[test]
    fn names_and_existing_directories_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Require", "1st", "a_b", "trailing-", &"x".repeat(64)] {
            let mut spec = scaffold(Language::Js, Kind::Validate);
            spec.name = bad.to_owned();
            assert!(
                matches!(spec.write(&dir.path().join("p")), Err(ScaffoldError::Name(_))),
                "{bad:?}"
            );
        }
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let refused = scaffold(Language::Js, Kind::Validate).write(dir.path());
        assert!(matches!(refused, Err(ScaffoldError::Exists(_))));
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
    }

    #[test]
    fn a_missing_sdk_is_an_error_that_says_what_to_pass() {
        let mut spec = scaffold(Language::Rust, Kind::Validate);
        spec.sdk = Some(PathBuf::from("/nonexistent/sdk"));
        let error = spec.write(&tempfile::tempdir().unwrap().path().join("p")).unwrap_err();
        assert!(error.to_string().contains("pass --sdk"), "{error}");
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("require-team"), "RequireTeam");
        assert_eq!(type_name("x"), "X");
    }

    /// The Rust example is linked as a new Rust policy is (policies/examples/
    /// build.py builds it from its directory, so its config applies).
    #[test]
    fn the_rust_example_is_linked_as_new_rust_policies_are() {
        let example = include_str!("../../policies/examples/rust-require-labels/.cargo/config.toml");
        assert_eq!(example, templates::RUST_CARGO_CONFIG);
    }
}
