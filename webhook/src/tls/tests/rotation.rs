//! Certificate rotation the way Kubernetes does it: a Secret volume whose
//! `tls.crt` and `tls.key` are symlinks through a `..data` symlink that the
//! kubelet atomically re-points at a new timestamped directory.

use std::os::unix::fs::symlink;

use super::*;

/// A Secret volume directory serving `cert` from `..2026_a`.
fn secret_volume(dir: &Path, cert: &GeneratedCert) -> TlsFiles {
    write_pair(&dir.join("..2026_a"), cert);
    symlink("..2026_a", dir.join("..data")).unwrap();
    symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    symlink("..data/tls.key", dir.join("tls.key")).unwrap();
    TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    }
}

/// Writes `cert` into `dir/<version>` and swaps `..data` to it atomically.
fn rotate(dir: &Path, version: &str, cert: &GeneratedCert) {
    write_pair(&dir.join(version), cert);
    symlink(version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
}

/// A server on a Secret-volume certificate.
struct Rotating {
    temp: tempfile::TempDir,
    ca: GeneratedCa,
    first: GeneratedCert,
    cert: Arc<ReloadingCert>,
    addr: SocketAddr,
}

impl Rotating {
    async fn start() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let ca = generate_ca("test CA", 1).unwrap();
        let first = ca.issue_serving_cert(&names(), 1).unwrap();
        let cert = ReloadingCert::load(secret_volume(temp.path(), &first)).unwrap();
        let addr = serve(server_config(Arc::clone(&cert), None).unwrap()).await;
        Self {
            temp,
            ca,
            first,
            cert,
            addr,
        }
    }

    fn dir(&self) -> &Path {
        self.temp.path()
    }

    async fn served_leaf(&self) -> CertificateDer<'static> {
        let session = connect(self.addr, client_config(&self.ca, ClientOptions::default())).await;
        session.unwrap().leaf
    }
}

#[tokio::test]
async fn a_symlink_swap_is_picked_up_by_reload() {
    let server = Rotating::start().await;
    assert_eq!(server.served_leaf().await, leaf_of(&server.first));

    let second = server.ca.issue_serving_cert(&names(), 1).unwrap();
    assert_ne!(leaf_of(&second), leaf_of(&server.first));
    rotate(server.dir(), "..2026_b", &second);

    assert!(server.cert.reload().unwrap());
    assert_eq!(server.cert.generation(), 1);
    assert_eq!(server.cert.current_leaf(), leaf_of(&second));
    assert_eq!(server.served_leaf().await, leaf_of(&second));

    // Nothing changed since: no swap.
    assert!(!server.cert.reload().unwrap());
    assert_eq!(server.cert.generation(), 1);
}

#[tokio::test]
async fn unchanged_files_are_not_reloaded() {
    let server = Rotating::start().await;
    assert!(!server.cert.reload().unwrap());
    // Same contents behind a new symlink target: still the same pair.
    rotate(server.dir(), "..2026_b", &server.first);
    assert!(!server.cert.reload().unwrap());
    assert_eq!(server.cert.generation(), 0);
}

#[tokio::test]
async fn a_broken_new_pair_keeps_the_old_one_in_service() {
    let server = Rotating::start().await;
    let original = leaf_of(&server.first);

    // A certificate with another certificate's key.
    let second = server.ca.issue_serving_cert(&names(), 1).unwrap();
    let third = server.ca.issue_serving_cert(&names(), 1).unwrap();
    let mismatched = GeneratedCert {
        cert_pem: second.cert_pem.clone(),
        key_pem: third.key_pem.clone(),
    };
    rotate(server.dir(), "..2026_b", &mismatched);
    let error = server.cert.reload().unwrap_err().to_string();
    let files = server.cert.files();
    assert_eq!(
        error,
        format!(
            "the private key in {} does not belong to the certificate in {}",
            files.key.display(),
            files.cert.display()
        )
    );
    assert_eq!(server.cert.generation(), 0);
    assert_eq!(server.served_leaf().await, original);

    // Garbage instead of a certificate.
    let garbage = GeneratedCert {
        cert_pem: "not a certificate".into(),
        key_pem: second.key_pem.clone(),
    };
    rotate(server.dir(), "..2026_c", &garbage);
    let error = server.cert.reload().unwrap_err().to_string();
    assert!(error.starts_with(&files.cert.display().to_string()), "{error}");
    assert_eq!(server.cert.current_leaf(), original);
    assert_eq!(server.served_leaf().await, original);

    // A fixed pair is then accepted.
    rotate(server.dir(), "..2026_d", &second);
    assert!(server.cert.reload().unwrap());
    assert_eq!(server.served_leaf().await, leaf_of(&second));
}

#[tokio::test]
async fn watch_picks_up_a_swap_and_stops_on_shutdown() {
    let server = Rotating::start().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = Arc::clone(&outcomes);
    let watcher = tokio::spawn(Arc::clone(&server.cert).watch(
        Duration::from_millis(50),
        async {
            let _ = stopped.await;
        },
        move |outcome| recorded.lock().unwrap().push(outcome),
    ));

    let second = server.ca.issue_serving_cert(&names(), 1).unwrap();
    rotate(server.dir(), "..2026_b", &second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while server.cert.generation() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the swap was not picked up within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.served_leaf().await, leaf_of(&second));
    assert_eq!(*outcomes.lock().unwrap(), [crate::tls::ReloadOutcome::Swapped]);

    // A broken pair is reported once, however many polls see it.
    std::fs::write(server.dir().join("..2026_b/tls.key"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *outcomes.lock().unwrap(),
        [crate::tls::ReloadOutcome::Swapped, crate::tls::ReloadOutcome::Rejected]
    );
    assert_eq!(
        server.served_leaf().await,
        leaf_of(&second),
        "the good pair keeps serving"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), watcher)
        .await
        .unwrap()
        .unwrap();
}
