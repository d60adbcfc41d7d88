//! Certificates for wasmhook in a cluster without cert-manager: a CA of its
//! own and a serving certificate for every name the API server may use for
//! the Service, plus the `kubernetes.io/tls` Secret the Deployment mounts.

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{RegistrationError, check_namespace, check_service_name, labels, yaml_document};
use crate::tls::{GeneratedCa, GeneratedCert, generate_ca};

/// How long generated certificates are valid by default, in days.
pub const DEFAULT_CERT_DAYS: u32 = 365;

/// The DNS names of a Service, shortest first: `svc`, `svc.ns`, `svc.ns.svc`
/// and `svc.ns.svc.cluster.local`. The API server calls a webhook Service as
/// `svc.ns.svc`; the others cover clients that resolve it otherwise.
pub fn serving_sans(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A new CA and a serving certificate it issued for a Service's names.
#[derive(Debug)]
pub struct ServingCerts {
    /// The CA: its certificate is the webhook configurations' `caBundle`.
    pub ca: GeneratedCa,
    /// The serving certificate (SANs: [`serving_sans`]) and its key.
    pub serving: GeneratedCert,
    service: String,
    namespace: String,
}

impl ServingCerts {
    /// Generates a CA and a serving certificate for `service` in
    /// `namespace`, both valid for `valid_days` (the CA exists only to sign
    /// this certificate; `wasmhook certs` makes a new pair to renew).
    pub fn generate(service: &str, namespace: &str, valid_days: u32) -> Result<Self, RegistrationError> {
        check_service_name(service)?;
        check_namespace(namespace)?;
        let ca = generate_ca(&format!("wasmhook CA for {service}.{namespace}.svc"), valid_days)?;
        let serving = ca.issue_serving_cert(&serving_sans(service, namespace), valid_days)?;
        Ok(Self {
            ca,
            serving,
            service: service.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    /// The name of the Secret: `<service>-tls`.
    pub fn secret_name(&self) -> String {
        format!("{}-tls", self.service)
    }

    /// The `kubernetes.io/tls` Secret holding `tls.crt`, `tls.key` and
    /// `ca.crt` (the CA certificate, not its key), in the Service's namespace.
    pub fn secret(&self) -> Secret {
        let data = [
            ("tls.crt", &self.serving.cert_pem),
            ("tls.key", &self.serving.key_pem),
            ("ca.crt", &self.ca.cert_pem),
        ]
        .into_iter()
        .map(|(key, pem)| (key.to_owned(), ByteString(pem.clone().into_bytes())))
        .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels()),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// The Secret as a YAML document.
    pub fn secret_yaml(&self) -> Result<String, RegistrationError> {
        yaml_document("the Secret", &self.secret())
    }

    /// The CA certificate PEM in standard base64, one line: the value of a
    /// webhook's `caBundle` field.
    pub fn ca_bundle_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca.cert_pem)
    }
}
