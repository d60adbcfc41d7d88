//! Development certificates, so `wasmhook serve` with no TLS flags serves
//! HTTPS at once and keeps serving the same CA across restarts (a client or
//! a kind cluster told to trust `ca.pem` once keeps trusting it).
//!
//! The state directory holds `ca.pem`, `ca-key.pem`, `tls.crt` and
//! `tls.key`. Existing files are reused while they are readable, belong
//! together, cover the requested names and stay valid for a while yet;
//! otherwise what is missing or stale is regenerated. Every file is written
//! atomically (a temporary file in the same directory renamed over the old
//! one), key files with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{GeneratedCa, ReloadingCert, TlsError, TlsFiles, crypto_provider, generate_ca, read};

/// Common name of the development CA.
const CA_NAME: &str = "wasmhook development CA";
/// Validity of a new development CA.
const CA_DAYS: u32 = 10 * 365;
/// Validity of a new serving certificate.
const SERVING_DAYS: u32 = 365;
/// Certificates closer than this to expiry are replaced.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Where [`ensure_dev_certs`] put the development certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// The CA certificate that signed the serving certificate (PEM): what
    /// clients trust, and the webhook configuration's `caBundle`.
    pub ca: PathBuf,
    /// The serving certificate and key.
    pub files: TlsFiles,
}

/// Creates, or reuses, the development CA and serving certificate in
/// `state_dir`: `ca.pem`, `ca-key.pem`, `tls.crt` and `tls.key`.
///
/// The CA is reused if both its files are readable, belong together, and it
/// outlives a new serving certificate; the serving certificate is reused if
/// its key matches, it chains to that CA, covers every name in `sans` and
/// is not about to expire. Anything else is regenerated (a new CA means a
/// new serving certificate too).
pub fn ensure_dev_certs(state_dir: &Path, sans: &[String]) -> Result<DevCerts, TlsError> {
    std::fs::create_dir_all(state_dir).map_err(|source| TlsError::Write {
        path: state_dir.to_owned(),
        source,
    })?;
    let ca_path = state_dir.join("ca.pem");
    let ca_key_path = state_dir.join("ca-key.pem");
    let files = TlsFiles {
        cert: state_dir.join("tls.crt"),
        key: state_dir.join("tls.key"),
    };
    let existing = match existing_ca(&ca_path, &ca_key_path) {
        Ok(ca) => Some(ca),
        Err(reason) => {
            tracing::info!(dir = %state_dir.display(), %reason, "creating a development CA");
            None
        }
    };
    let ca = match existing {
        Some(ca) => match serving_cert_reusable(&ca, &files, sans) {
            Ok(()) => {
                return Ok(DevCerts { ca: ca_path, files });
            }
            Err(reason) => {
                tracing::info!(cert = %files.cert.display(), %reason, "issuing a development serving certificate");
                ca
            }
        },
        None => {
            let ca = generate_ca(CA_NAME, CA_DAYS)?;
            write_atomically(&ca_key_path, ca.key_pem.as_bytes(), true)?;
            write_atomically(&ca_path, ca.cert_pem.as_bytes(), false)?;
            ca
        }
    };
    let cert = ca.issue_serving_cert(sans, SERVING_DAYS)?;
    write_atomically(&files.key, cert.key_pem.as_bytes(), true)?;
    write_atomically(&files.cert, cert.cert_pem.as_bytes(), false)?;
    Ok(DevCerts { ca: ca_path, files })
}

/// The CA in the state directory, or why it cannot be reused.
fn existing_ca(cert: &Path, key: &Path) -> Result<GeneratedCa, String> {
    let read_text = |path: &Path| {
        let bytes = read(path).map_err(|error| error.to_string())?;
        String::from_utf8(bytes).map_err(|_| format!("{} is not text", path.display()))
    };
    let ca = GeneratedCa::from_pem(&read_text(cert)?, &read_text(key)?).map_err(|error| error.to_string())?;
    let (_, parsed) = x509_parser::parse_x509_certificate(ca.cert_der())
        .map_err(|error| format!("{}: unreadable certificate: {error}", cert.display()))?;
    let not_after = parsed.validity().not_after.timestamp();
    let needed = now() + Duration::from_secs(u64::from(SERVING_DAYS) * 24 * 60 * 60) + RENEW_BEFORE;
    if not_after < i64::try_from(needed.as_secs()).unwrap_or(i64::MAX) {
        return Err(format!(
            "{} expires too soon to sign a new serving certificate",
            cert.display()
        ));
    }
    Ok(ca)
}

/// Whether the serving certificate on disk can be kept, and if not, why.
fn serving_cert_reusable(ca: &GeneratedCa, files: &TlsFiles, sans: &[String]) -> Result<(), String> {
    let serving = ReloadingCert::load(files.clone()).map_err(|error| error.to_string())?;
    covers(ca.cert_der(), &serving.current_leaf(), sans, now() + RENEW_BEFORE)
}

/// Checks, as a TLS client would, that `leaf` chains to `ca` and is valid
/// for every name in `sans` at time `at`.
fn covers(ca: &CertificateDer<'_>, leaf: &CertificateDer<'_>, sans: &[String], at: Duration) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|error| format!("the CA is not a usable trust anchor: {error}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|error| error.to_string())?;
    for san in sans {
        // A wildcard is covered if a name under it is (only a wildcard entry
        // or this unlikely exact name matches).
        let probe = match san.strip_prefix("*.") {
            Some(parent) => format!("wasmhook-wildcard-probe.{parent}"),
            None => san.clone(),
        };
        let name = ServerName::try_from(probe).map_err(|_| format!("{san:?} is not a DNS name or IP address"))?;
        verifier
            .verify_server_cert(leaf, &[], &name, &[], UnixTime::since_unix_epoch(at))
            .map_err(|error| format!("not valid for {san:?} within the renewal window: {error}"))?;
    }
    Ok(())
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Writes `contents` to `path` through a temporary file in the same directory
/// and a rename, so readers (and a crash) see the old file or the new one,
/// never a torn one. `private` files get mode 0600.
fn write_atomically(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    let error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), now().as_nanos()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    if let Err(source) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(error(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn contents(dir: &Path) -> Vec<Vec<u8>> {
        ["ca.pem", "ca-key.pem", "tls.crt", "tls.key"]
            .iter()
            .map(|name| std::fs::read(dir.join(name)).unwrap())
            .collect()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_then_reuses_then_reissues_for_new_names() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("state");
        let first = ensure_dev_certs(&dir, &sans(&["localhost", "127.0.0.1"])).unwrap();
        assert_eq!(first.ca, dir.join("ca.pem"));
        assert_eq!(first.files.cert, dir.join("tls.crt"));
        assert_eq!(first.files.key, dir.join("tls.key"));
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
            assert_eq!(mode(&dir.join("tls.key")), 0o600);
            assert_eq!(mode(&dir.join("tls.crt")), 0o644);
        }
        let created = contents(&dir);
        ReloadingCert::load(first.files.clone()).unwrap();

        // Same names, or a subset: everything is reused byte for byte.
        assert_eq!(
            ensure_dev_certs(&dir, &sans(&["localhost", "127.0.0.1"])).unwrap(),
            first
        );
        assert_eq!(contents(&dir), created);
        ensure_dev_certs(&dir, &sans(&["localhost"])).unwrap();
        assert_eq!(contents(&dir), created);

        // A new name: same CA, new serving certificate that covers it.
        ensure_dev_certs(&dir, &sans(&["localhost", "wasmhook.wasmhook.svc"])).unwrap();
        let reissued = contents(&dir);
        assert_eq!(reissued[..2], created[..2]);
        assert_ne!(reissued[2], created[2]);
        assert_ne!(reissued[3], created[3]);
        let ca = GeneratedCa::from_pem(
            std::str::from_utf8(&reissued[0]).unwrap(),
            std::str::from_utf8(&reissued[1]).unwrap(),
        )
        .unwrap();
        let leaf = ReloadingCert::load(first.files.clone()).unwrap().current_leaf();
        covers(
            ca.cert_der(),
            &leaf,
            &sans(&["localhost", "wasmhook.wasmhook.svc"]),
            now(),
        )
        .unwrap();
        assert!(covers(ca.cert_der(), &leaf, &sans(&["127.0.0.1"]), now()).is_err());
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
    }

    #[test]
    fn a_broken_ca_is_replaced_along_with_the_serving_cert() {
        let temp = tempfile::tempdir().unwrap();
        let names = sans(&["localhost"]);
        ensure_dev_certs(temp.path(), &names).unwrap();
        let created = contents(temp.path());
        std::fs::write(temp.path().join("ca-key.pem"), generate_ca("other", 1).unwrap().key_pem).unwrap();
        ensure_dev_certs(temp.path(), &names).unwrap();
        let replaced = contents(temp.path());
        for (old, new) in created.iter().zip(&replaced) {
            assert_ne!(old, new);
        }
    }

    #[test]
    fn wildcards_are_checked_by_a_name_under_them() {
        let ca = generate_ca("test CA", 1).unwrap();
        let cert = ca.issue_serving_cert(&sans(&["*.example.test"]), 1).unwrap();
        let leaf = rustls_pki_types::pem::PemObject::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
        covers(ca.cert_der(), &leaf, &sans(&["*.example.test"]), now()).unwrap();
        assert!(covers(ca.cert_der(), &leaf, &sans(&["*.other.test"]), now()).is_err());
        // One day of validity is inside the renewal window.
        assert!(covers(ca.cert_der(), &leaf, &sans(&["*.example.test"]), now() + RENEW_BEFORE).is_err());
    }
}
