//! Real TLS over loopback: a tokio-rustls server built from
//! [`server_config`] and clients that trust only a generated CA, to check
//! what the API server will see — protocol versions, ALPN, the certificate
//! actually served across rotations, client-certificate authentication.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

const GREETING: &[u8] = b"hello from wasmhook";

fn names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

fn leaf_of(cert: &GeneratedCert) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()
}

/// Writes a pair as `tls.crt` / `tls.key` in `dir`.
fn write_pair(dir: &Path, cert: &GeneratedCert) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let files = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    std::fs::write(&files.cert, &cert.cert_pem).unwrap();
    std::fs::write(&files.key, &cert.key_pem).unwrap();
    files
}

/// Accepts connections forever; each gets the greeting and a close_notify.
async fn serve(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = write_and_close(&mut tls, GREETING).await;
                }
            });
        }
    });
    addr
}

struct ClientOptions<'a> {
    versions: &'a [&'static SupportedProtocolVersion],
    alpn: &'a [&'a [u8]],
    identity: Option<&'a GeneratedCert>,
}

impl Default for ClientOptions<'_> {
    fn default() -> Self {
        Self {
            versions: PROTOCOL_VERSIONS,
            alpn: &[b"h2", b"http/1.1"],
            identity: None,
        }
    }
}

fn client_config(ca: &GeneratedCa, options: ClientOptions<'_>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(options.versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match options.identity {
        Some(cert) => {
            let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(vec![leaf_of(cert)], key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Arc::new(config)
}

/// What a client saw of a completed exchange.
#[derive(Debug)]
struct Session {
    alpn: Option<Vec<u8>>,
    version: Option<ProtocolVersion>,
    leaf: CertificateDer<'static>,
}

/// Handshakes with the server at `addr` as "localhost" and reads the greeting.
async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Session> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
        let (_, connection) = tls.get_ref();
        let session = Session {
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
            version: connection.protocol_version(),
            leaf: connection.peer_certificates().unwrap()[0].clone().into_owned(),
        };
        // In TLS 1.3 the client finishes before the server has checked its
        // certificate: only the greeting proves the server accepted us.
        let greeting = read_to_end(&mut tls).await?;
        if greeting != GREETING {
            return Err(io::Error::other(format!("unexpected greeting {greeting:?}")));
        }
        Ok(session)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await?
}

async fn write_and_close<S: AsyncWrite + Unpin>(stream: &mut S, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = poll_fn(|cx| Pin::new(&mut *stream).poll_write(cx, bytes)).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    poll_fn(|cx| Pin::new(&mut *stream).poll_shutdown(cx)).await
}

async fn read_to_end<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut received = Vec::new();
    let mut chunk = [0; 1024];
    loop {
        let mut buf = ReadBuf::new(&mut chunk);
        poll_fn(|cx| Pin::new(&mut *stream).poll_read(cx, &mut buf)).await?;
        if buf.filled().is_empty() {
            return Ok(received);
        }
        received.extend_from_slice(buf.filled());
    }
}

/// A CA, a serving certificate for localhost, and a server using it.
struct Fixture {
    _temp: tempfile::TempDir,
    ca: GeneratedCa,
    cert: Arc<ReloadingCert>,
    addr: SocketAddr,
}

async fn fixture(client_ca: bool) -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let ca = generate_ca("test CA", 1).unwrap();
    let files = write_pair(
        &temp.path().join("serving"),
        &ca.issue_serving_cert(&names(), 1).unwrap(),
    );
    let ca_path = temp.path().join("client-ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let cert = ReloadingCert::load(files).unwrap();
    let config = server_config(Arc::clone(&cert), client_ca.then_some(ca_path.as_path())).unwrap();
    let addr = serve(config).await;
    Fixture {
        _temp: temp,
        ca,
        cert,
        addr,
    }
}

#[tokio::test]
async fn alpn_prefers_h2_and_falls_back_to_http1() {
    let fixture = fixture(false).await;
    let alpn = |alpn| {
        client_config(
            &fixture.ca,
            ClientOptions {
                alpn,
                ..Default::default()
            },
        )
    };
    let both = connect(fixture.addr, alpn(&[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(both.alpn.as_deref(), Some(&b"h2"[..]));
    let http1 = connect(fixture.addr, alpn(&[b"http/1.1"])).await.unwrap();
    assert_eq!(http1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let none = connect(fixture.addr, alpn(&[])).await.unwrap();
    assert_eq!(none.alpn, None);
    assert_eq!(both.leaf, fixture.cert.current_leaf());
}

#[tokio::test]
async fn tls12_only_and_tls13_only_clients_both_connect() {
    let fixture = fixture(false).await;
    for (version, expected) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let options = ClientOptions {
            versions: &[version],
            ..Default::default()
        };
        let session = connect(fixture.addr, client_config(&fixture.ca, options))
            .await
            .unwrap();
        assert_eq!(session.version, Some(expected));
        assert_eq!(session.alpn.as_deref(), Some(&b"h2"[..]));
    }
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let fixture = fixture(true).await;
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let anonymous = ClientOptions {
            versions,
            ..Default::default()
        };
        let error = connect(fixture.addr, client_config(&fixture.ca, anonymous))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("CertificateRequired"), "{error}");

        let identity = fixture.ca.issue_client_cert("kube-apiserver", 1).unwrap();
        let trusted = ClientOptions {
            versions,
            identity: Some(&identity),
            ..Default::default()
        };
        connect(fixture.addr, client_config(&fixture.ca, trusted))
            .await
            .unwrap();

        let stranger = generate_ca("another CA", 1)
            .unwrap()
            .issue_client_cert("intruder", 1)
            .unwrap();
        let untrusted = ClientOptions {
            versions,
            identity: Some(&stranger),
            ..Default::default()
        };
        let error = connect(fixture.addr, client_config(&fixture.ca, untrusted))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("UnknownCA"), "{error}");
    }
}

#[tokio::test]
async fn a_ca_recreated_from_pem_issues_certificates_clients_trust() {
    let ca = generate_ca("persisted CA", 1).unwrap();
    let reloaded = GeneratedCa::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let files = write_pair(temp.path(), &reloaded.issue_serving_cert(&names(), 1).unwrap());
    let addr = serve(server_config(ReloadingCert::load(files).unwrap(), None).unwrap()).await;
    // The client trusts the CA as originally generated.
    connect(addr, client_config(&ca, ClientOptions::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_ca_made_elsewhere_with_a_richer_subject_can_sign() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, DnValue, IsCa, KeyIdMethod, KeyPair};
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CountryName, DnValue::PrintableString("DE".try_into().unwrap()));
    params.distinguished_name.push(DnType::OrganizationName, "Example");
    params.distinguished_name.push(DnType::CommonName, "external CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_identifier_method = KeyIdMethod::PreSpecified(vec![1, 2, 3, 4]);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ca = GeneratedCa::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
    let issued = ca.issue_serving_cert(&names(), 1).unwrap();
    let leaf_der = leaf_of(&issued);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    let (_, root) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
    assert_eq!(leaf.issuer().as_raw(), root.subject().as_raw());
    let temp = tempfile::tempdir().unwrap();
    let files = write_pair(temp.path(), &issued);
    let addr = serve(server_config(ReloadingCert::load(files).unwrap(), None).unwrap()).await;
    connect(addr, client_config(&ca, ClientOptions::default()))
        .await
        .unwrap();
}

#[test]
fn a_ca_from_pem_must_be_a_ca_with_its_own_key() {
    let ca = generate_ca("test CA", 1).unwrap();
    let other = generate_ca("other CA", 1).unwrap();
    let error = GeneratedCa::from_pem(&ca.cert_pem, &other.key_pem).unwrap_err();
    assert!(error.to_string().contains("does not belong"), "{error}");
    let leaf = ca.issue_serving_cert(&names(), 1).unwrap();
    let error = GeneratedCa::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
    assert!(error.to_string().contains("not a CA certificate"), "{error}");
    let error = GeneratedCa::from_pem("garbage", &ca.key_pem).unwrap_err();
    assert!(error.to_string().contains("no PEM \"CERTIFICATE\""), "{error}");
}

#[test]
fn impossible_requests_are_refused() {
    let ca = generate_ca("test CA", 1).unwrap();
    assert!(
        ca.issue_serving_cert(&[], 1)
            .unwrap_err()
            .to_string()
            .contains("subject alternative name")
    );
    assert!(
        ca.issue_serving_cert(&names(), 0)
            .unwrap_err()
            .to_string()
            .contains("validity")
    );
    assert!(generate_ca("test CA", 100_000).is_err());
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let temp = tempfile::tempdir().unwrap();
    let ca = generate_ca("test CA", 1).unwrap();
    let files = write_pair(temp.path(), &ca.issue_serving_cert(&names(), 1).unwrap());
    let message = |files: TlsFiles| ReloadingCert::load(files).unwrap_err().to_string();

    let missing = temp.path().join("missing.crt");
    let error = message(TlsFiles {
        cert: missing.clone(),
        ..files.clone()
    });
    assert!(
        error.starts_with(&format!("cannot read {}", missing.display())),
        "{error}"
    );

    let text = temp.path().join("notes.txt");
    std::fs::write(&text, "this is not PEM\n").unwrap();
    let error = message(TlsFiles {
        cert: text.clone(),
        ..files.clone()
    });
    assert_eq!(
        error,
        format!(
            "{}: no certificate found (expected a PEM \"CERTIFICATE\" block)",
            text.display()
        )
    );

    // A certificate where the key should be.
    let error = message(TlsFiles {
        key: files.cert.clone(),
        ..files.clone()
    });
    assert!(
        error.starts_with(&format!("{}: no private key found", files.cert.display())),
        "{error}"
    );

    let broken = temp.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    let error = message(TlsFiles {
        cert: broken.clone(),
        ..files.clone()
    });
    assert!(
        error.starts_with(&format!("{}: not valid PEM", broken.display())),
        "{error}"
    );

    let cert = ReloadingCert::load(files).unwrap();
    let error = server_config(cert, Some(&text)).unwrap_err().to_string();
    assert!(error.contains(&text.display().to_string()), "{error}");
}

#[cfg(unix)]
mod rotation;
