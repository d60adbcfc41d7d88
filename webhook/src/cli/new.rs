//! `wasmhook new`: scaffolds a policy directory that builds and passes its
//! own tests at once (see [`crate::scaffold`]).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::EXIT_USAGE;
use crate::scaffold::{Kind, Language, Scaffold};

/// Arguments of `wasmhook new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The policy's name (lowercase letters, digits and '-'): also its directory.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    lang: Language,
    /// What the sample policy does: deny (validate) or fix (mutate).
    #[arg(long, value_enum, default_value_t = Kind::Validate)]
    kind: Kind,
    /// Where to create the policy's directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The Rust SDK (policies/sdk of a wasmhook checkout) [default: the one this binary was built from].
    #[arg(long)]
    sdk: Option<PathBuf>,
}

/// Writes the policy and says what to do next.
pub fn run(args: NewArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let target = args.dir.join(&args.name);
    let scaffold = Scaffold {
        name: args.name,
        language: args.lang,
        kind: args.kind,
        sdk: args.sdk,
    };
    match scaffold.write(&target) {
        Ok(files) => {
            let _ = writeln!(out, "created {} ({} files)", target.display(), files.len());
            let _ = writeln!(
                out,
                "next:\n  cd {}\n  ./build.sh\n  wasmhook test tests",
                target.display()
            );
            0
        }
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            EXIT_USAGE
        }
    }
}
