//! Certificate generation with rcgen: a small CA and the certificates it
//! issues, for the development server, for `wasmhook certs`, and for tests
//! that need real TLS.
//!
//! Keys are ECDSA P-256 (rcgen's default; the API server's Go TLS stack and
//! rustls both support it). Certificates are backdated an hour so a client
//! whose clock runs a little behind still accepts them.
//!
//! A CA saved as PEM is turned back into a signer by rcgen
//! ([`Issuer::from_ca_cert_der`], rcgen's `x509-parser` feature); x509-parser
//! also reads the fields rcgen does not check (the public key and basic
//! constraints).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::parse_x509_certificate;

use super::TlsError;

/// The longest validity accepted, in days (about a century).
const MAX_VALID_DAYS: u32 = 36_525;
/// How far back certificates are dated, for clients with slow clocks.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// A certificate authority that can issue certificates.
pub struct GeneratedCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA private key, PKCS#8 PEM.
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// An issued certificate and its private key.
#[derive(Clone)]
pub struct GeneratedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// Generates a self-signed CA with a new key, valid for `valid_days`, which
/// may sign end-entity certificates only (path length 0).
pub fn generate_ca(common_name: &str, valid_days: u32) -> Result<GeneratedCa, TlsError> {
    let mut params = ca_params(distinguished_name(common_name));
    set_validity(&mut params, valid_days)?;
    let key = KeyPair::generate().map_err(generate("CA key"))?;
    let cert = params.self_signed(&key).map_err(generate("CA certificate"))?;
    Ok(GeneratedCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    })
}

impl GeneratedCa {
    /// A serving certificate signed by this CA, valid for `valid_days`, with
    /// `sans` as subject alternative names (strings that parse as IP
    /// addresses become IP SANs, the rest DNS names) and the server-auth
    /// extended key usage. The first SAN is also the common name.
    pub fn issue_serving_cert(&self, sans: &[String], valid_days: u32) -> Result<GeneratedCert, TlsError> {
        let first = sans.first().ok_or_else(|| TlsError::InvalidRequest {
            reason: "a serving certificate needs at least one subject alternative name".into(),
        })?;
        let mut params = CertificateParams::new(sans.to_vec()).map_err(generate("serving certificate"))?;
        params.distinguished_name = distinguished_name(first);
        self.issue(
            params,
            ExtendedKeyUsagePurpose::ServerAuth,
            valid_days,
            "serving certificate",
        )
    }

    /// A client certificate signed by this CA for `common_name`, valid for
    /// `valid_days`, with the client-auth extended key usage.
    pub fn issue_client_cert(&self, common_name: &str, valid_days: u32) -> Result<GeneratedCert, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        self.issue(
            params,
            ExtendedKeyUsagePurpose::ClientAuth,
            valid_days,
            "client certificate",
        )
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        usage: ExtendedKeyUsagePurpose,
        valid_days: u32,
        what: &'static str,
    ) -> Result<GeneratedCert, TlsError> {
        set_validity(&mut params, valid_days)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(generate(what))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate(what))?;
        Ok(GeneratedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Re-creates a CA from its PEM certificate and PKCS#8 PEM key, so an
    /// existing CA (one this module generated, or any with a simple subject
    /// name) can sign new certificates.
    ///
    /// The certificate must be a CA (basic constraints `cA: TRUE`) and the key
    /// must be its key. rcgen rebuilds the signer from the certificate (its
    /// subject, key usages and subject key identifier) with x509-parser.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let invalid = |reason: String| TlsError::InvalidCa { reason };
        let cert = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .ok_or_else(|| invalid("no PEM \"CERTIFICATE\" block in the certificate".into()))?
            .map_err(|error| invalid(format!("the certificate is not valid PEM: {error}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|error| invalid(format!("no usable PEM private key: {error}")))?;
        let key = KeyPair::try_from(&key)
            .map_err(|error| invalid(format!("the key is not a PKCS#8 ECDSA, Ed25519 or RSA key: {error}")))?;
        let unreadable = |error| invalid(format!("unreadable certificate: {error}"));
        let (_, parsed) = parse_x509_certificate(&cert).map_err(|error| unreadable(error.to_string()))?;
        if parsed.public_key().raw != key.subject_public_key_info() {
            return Err(invalid("the key does not belong to the certificate".into()));
        }
        let constraints = parsed
            .basic_constraints()
            .map_err(|error| unreadable(error.to_string()))?;
        if !constraints.is_some_and(|constraints| constraints.value.ca) {
            return Err(invalid(
                "the certificate is not a CA certificate (basic constraints cA is not set)".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert, key)
            .map_err(|error| invalid(format!("cannot sign with this certificate: {error}")))?;
        // Issued certificates carry the CA's subject as their issuer, and
        // clients match the two byte for byte: prove rcgen re-encodes it
        // identically (it cannot for repeated attributes or unusual string
        // types) by issuing a throwaway certificate.
        let probe = CertificateParams::default()
            .signed_by(issuer.key(), &issuer)
            .map_err(generate("subject name check"))?;
        let (_, probe) =
            parse_x509_certificate(probe.der()).map_err(|error| invalid(format!("subject name check: {error}")))?;
        if probe.issuer().as_raw() != parsed.subject().as_raw() {
            return Err(invalid(
                "the subject name cannot be reproduced exactly (repeated attributes or unusual encodings)".into(),
            ));
        }
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert_der: cert.clone(),
            issuer,
        })
    }

    /// The CA certificate, DER (a trust anchor for clients, the `caBundle`
    /// of a webhook configuration).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
}

impl fmt::Debug for GeneratedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for GeneratedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// Parameters of a CA that signs end-entity certificates only.
fn ca_params(name: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Valid from an hour ago for `valid_days` days from now.
fn set_validity(params: &mut CertificateParams, valid_days: u32) -> Result<(), TlsError> {
    if valid_days == 0 || valid_days > MAX_VALID_DAYS {
        return Err(TlsError::InvalidRequest {
            reason: format!("validity must be between 1 and {MAX_VALID_DAYS} days, not {valid_days}"),
        });
    }
    // rcgen's times are `time::OffsetDateTime`, reached from the epoch so
    // this crate needs no direct `time` dependency.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + now + Duration::from_secs(u64::from(valid_days) * 24 * 60 * 60);
    Ok(())
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> TlsError {
    move |source| TlsError::Generate { what, source }
}
