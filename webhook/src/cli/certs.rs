//! `wasmhook certs`: make the certificates wasmhook needs in a cluster without
//! cert-manager — a CA, a serving certificate for the Service's DNS names, the
//! Secret that carries them and the caBundle — and say what to do with them.
//!
//! Files written to `--out` (none is overwritten without `--force`):
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.pem` | the CA certificate: `wasmhook manifests --ca-bundle ca.pem` | 0644 |
//! | `ca-key.pem` | the CA's private key (not needed in the cluster) | 0600 |
//! | `tls.crt` | the serving certificate | 0644 |
//! | `tls.key` | its private key | 0600 |
//! | `cabundle.b64` | `ca.pem` in base64 on one line: a webhook's `caBundle` value | 0644 |
//! | `secret.yaml` | the `kubernetes.io/tls` Secret `<service>-tls` (holds the key) | 0600 |

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::EXIT_USAGE;
use crate::registration::{DEFAULT_CERT_DAYS, DEFAULT_NAMESPACE, DEFAULT_SERVICE, ServingCerts, serving_sans};

/// Arguments of `wasmhook certs`. `--service` and `--namespace` have the same
/// environment-variable twins as in `wasmhook manifests`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// wasmhook's Service: the certificate covers its DNS names.
    #[arg(long, env = "WASMHOOK_SERVICE", default_value = DEFAULT_SERVICE)]
    service: String,
    /// The namespace of the Service (and of the Secret).
    #[arg(long, env = "WASMHOOK_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// The directory to write to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How long the CA and the serving certificate are valid, in days.
    #[arg(long, default_value_t = DEFAULT_CERT_DAYS)]
    days: u32,
    /// Replace files that already exist.
    #[arg(long)]
    force: bool,
}

/// One file `certs` writes.
struct Output {
    name: &'static str,
    mode: u32,
    contents: String,
    what: String,
}

/// Runs `wasmhook certs`: 0 when every file was written, 2 otherwise.
pub fn run(args: CertsArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match write_certs(args, out) {
        Ok(()) => 0,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_USAGE
        }
    }
}

fn write_certs(args: CertsArgs, out: &mut dyn Write) -> Result<(), String> {
    let CertsArgs {
        service,
        namespace,
        out: dir,
        days,
        force,
    } = args;
    let certs =
        ServingCerts::generate(&service, &namespace, days).map_err(|error| super::manifests::with_flag(&error))?;
    let secret = certs.secret_yaml().map_err(|error| error.to_string())?;
    let outputs = [
        Output {
            name: "ca.pem",
            mode: 0o644,
            contents: certs.ca.cert_pem.clone(),
            what: "the CA certificate: the webhooks' caBundle (--ca-bundle of `wasmhook manifests`)".into(),
        },
        Output {
            name: "ca-key.pem",
            mode: 0o600,
            contents: certs.ca.key_pem.clone(),
            what: "the CA's private key: not needed in the cluster; keep it safe or delete it".into(),
        },
        Output {
            name: "tls.crt",
            mode: 0o644,
            contents: certs.serving.cert_pem.clone(),
            what: format!(
                "the serving certificate for {}",
                serving_sans(&service, &namespace).join(", ")
            ),
        },
        Output {
            name: "tls.key",
            mode: 0o600,
            contents: certs.serving.key_pem.clone(),
            what: "the serving certificate's private key".into(),
        },
        Output {
            name: "cabundle.b64",
            mode: 0o644,
            contents: format!("{}\n", certs.ca_bundle_base64()),
            what: "ca.pem in base64: the value of a webhook's caBundle field".into(),
        },
        Output {
            name: "secret.yaml",
            mode: 0o600,
            contents: secret,
            what: format!(
                "Secret {namespace}/{} (kubernetes.io/tls: tls.crt, tls.key, ca.crt) for the Deployment to mount",
                certs.secret_name()
            ),
        },
    ];

    std::fs::create_dir_all(&dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    if !force {
        let existing: Vec<String> = outputs
            .iter()
            .map(|output| dir.join(output.name))
            .filter(|path| path.symlink_metadata().is_ok())
            .map(|path| path.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(format!(
                "refusing to overwrite {} (pass --force to replace them)",
                existing.join(", ")
            ));
        }
    }
    for output in &outputs {
        write_file(&dir.join(output.name), output, force)?;
    }

    print_report(out, &dir, &service, &namespace, days, &outputs)
        .map_err(|error| format!("cannot write the output: {error}"))
}

/// What was written, and the commands that use it.
fn print_report(
    out: &mut dyn Write,
    dir: &Path,
    service: &str,
    namespace: &str,
    days: u32,
    outputs: &[Output],
) -> std::io::Result<()> {
    writeln!(
        out,
        "wrote a new CA and a serving certificate for {service}.{namespace}.svc, valid {days} days, to {}:",
        dir.display()
    )?;
    for output in outputs {
        writeln!(out, "  {:<13} {}", output.name, output.what)?;
    }
    let dir = dir.display();
    writeln!(out, "next:")?;
    writeln!(
        out,
        "  kubectl create namespace {namespace} --dry-run=client -o yaml | kubectl apply -f -"
    )?;
    writeln!(out, "  kubectl apply -f {dir}/secret.yaml")?;
    writeln!(
        out,
        "  wasmhook manifests --config policies.yaml --namespace {namespace} --service {service} --ca-bundle \
         {dir}/ca.pem | kubectl apply -f -"
    )?;
    writeln!(
        out,
        "before the certificate expires, run this command again with --force and repeat the last two steps"
    )?;
    out.flush()
}

/// Writes `output` to `path` with its mode, never through an existing file
/// (so a replaced key file does not keep looser permissions); with `force`
/// an existing file is removed first.
fn write_file(path: &Path, output: &Output, force: bool) -> Result<(), String> {
    let failed = |error: std::io::Error| format!("cannot write {}: {error}", path.display());
    if force {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(failed(error)),
            _ => {}
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(output.mode)
        .open(path)
        .map_err(failed)?;
    file.write_all(output.contents.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)
}
