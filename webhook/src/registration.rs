//! Registration: the Kubernetes objects that make the API server call
//! wasmhook, generated from the policy set rather than written by hand.
//!
//! Hand-written webhook configurations go wrong in ways that take a cluster
//! down: a webhook that intercepts its own namespace (so its pods can never be
//! recreated), one that blocks `kube-system`, a path that names no policy, a
//! `caBundle` that is not the CA of the serving certificate. This module
//! builds them from the policy set, with those exclusions always present:
//!
//! - [`WebhookConfigurations`]: one `MutatingWebhookConfiguration` holding the
//!   `mutate` policies and one `ValidatingWebhookConfiguration` holding the
//!   `validate` policies, one webhook per policy, in policy-set order (the
//!   order the API server calls them), rendered as YAML for `kubectl apply`
//!   (`wasmhook manifests`);
//! - [`WebhookTarget`]: where the API server reaches wasmhook (a Service, or a
//!   URL for a server outside the cluster) and how it trusts its certificate
//!   ([`Trust`]: a `caBundle`, cert-manager's CA injection, or public roots);
//! - [`Registrar`]: self-registration (`wasmhook serve --register`), which
//!   server-side-applies the configurations with the current CA bundle once
//!   wasmhook's Service has a ready endpoint, owned by the ClusterRole that
//!   grants it, and applies them again when the bundle or the policy set
//!   changes;
//! - [`context_rbac`]: the RBAC the context watches need — exactly the kinds
//!   the policy set declares (`wasmhook manifests --rbac`);
//! - [`audit_rbac`]: the RBAC `wasmhook audit` needs — reading what the
//!   policies select and writing its PolicyReports (`wasmhook manifests
//!   --audit-rbac`);
//! - [`ServingCerts`]: a CA and a serving certificate for the Service's DNS
//!   names, and the `kubernetes.io/tls` Secret that carries them
//!   (`wasmhook certs`).
//!
//! Everything is built from k8s-openapi types, never from text templates, so
//! the output is well-formed by construction and the tests read it back as
//! the same types.

mod apply;
mod certs;
mod rbac;
#[cfg(test)]
mod tests;
mod webhooks;

use std::collections::BTreeMap;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub use apply::{DEFAULT_OWNER, FIELD_MANAGER, RegisterConfig, RegisterError, Registrar};
pub use certs::{DEFAULT_CERT_DAYS, ServingCerts, serving_sans};
pub use rbac::{POLICY_REPORT_GROUP, audit_rbac, audit_rbac_yaml, context_rbac, context_rbac_yaml, guess_resource};
pub(crate) use webhooks::namespace_selector;
pub use webhooks::{WebhookConfigurations, timeout_seconds};

use crate::tls::TlsError;

/// The default namespace wasmhook runs in.
pub const DEFAULT_NAMESPACE: &str = "wasmhook-system";
/// The default name of wasmhook's Service (and of its webhook configurations).
pub const DEFAULT_SERVICE: &str = "wasmhook";
/// The default port of wasmhook's Service.
pub const DEFAULT_PORT: u16 = 443;
/// Each webhook is named `<policy>.` followed by this domain.
pub const WEBHOOK_DOMAIN: &str = "wasmhook.dev";
/// The namespace label the API server sets on every namespace, used to
/// exclude wasmhook's own namespace and `kube-system`.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// A namespace with this label (any value) is never sent to wasmhook: the
/// opt-out for a namespace that must not depend on the webhook.
pub const OPT_OUT_LABEL: &str = "wasmhook.dev/ignore";
/// The annotation by which cert-manager's CA injector fills in every
/// webhook's `caBundle` from a Certificate (`namespace/name`).
pub const CERT_MANAGER_INJECT_ANNOTATION: &str = "cert-manager.io/inject-ca-from";
/// The namespace that is always excluded besides wasmhook's own.
pub const KUBE_SYSTEM: &str = "kube-system";

/// Why the registration objects cannot be made. Every message names the value
/// (and, for files, the file) that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The namespace is not a DNS-1123 label.
    #[error("namespace {value:?} is not a valid name: {rule}")]
    InvalidNamespace {
        /// The name given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The Service name is not a DNS-1035 label.
    #[error("service {value:?} is not a valid name: {rule}")]
    InvalidService {
        /// The name given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The port is 0.
    #[error("port 0 is not a valid Service port (1 to 65535)")]
    InvalidPort,
    /// The webhook URL cannot be used by the API server.
    #[error("webhook URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA bundle holds no usable certificate.
    #[error("CA bundle {origin}: {reason}")]
    CaBundle {
        /// Where the bundle came from (its file).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A cert-manager Certificate reference is not `namespace/name`.
    #[error("cert-manager certificate {value:?}: {reason}")]
    CertManagerRef {
        /// The reference given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A webhook reached through a Service has nothing to trust its
    /// certificate by: no public CA issues certificates for `*.svc` names.
    #[error(
        "the API server cannot verify wasmhook's certificate: a webhook reached through a Service needs a CA bundle \
         or a cert-manager Certificate (public trust roots only work with a URL)"
    )]
    NoTrust,
    /// The certificates could not be generated.
    #[error(transparent)]
    Certificate(#[from] TlsError),
    /// A generated object could not be serialized as YAML.
    #[error("cannot write {what} as YAML: {source}")]
    Yaml {
        /// The object.
        what: &'static str,
        /// What the serializer reported.
        #[source]
        source: serde_saphyr::SerializeError,
    },
}

/// How the API server verifies the serving certificate of wasmhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// `caBundle`: the PEM bytes of the CA certificates that issued the
    /// serving certificate (e.g. `ca.pem` from `wasmhook certs`).
    CaBundle(Vec<u8>),
    /// No `caBundle`; cert-manager's CA injector fills it in from the CA of
    /// this Certificate, named by the [`CERT_MANAGER_INJECT_ANNOTATION`]
    /// annotation on each configuration.
    CertManager {
        /// The Certificate's namespace.
        namespace: String,
        /// The Certificate's name.
        certificate: String,
    },
    /// No `caBundle`: the API server's own trust roots. Only for a URL whose
    /// certificate a public CA issued.
    SystemRoots,
    /// No `caBundle` yet: wasmhook's pods fill it in themselves
    /// (`wasmhook serve --register --ca-bundle …`). For manifests applied
    /// before the Deployment, such as the kustomize base.
    SelfRegistered,
}

impl Trust {
    /// A `caBundle` from PEM bytes read from `origin` (a file name, for
    /// messages): every PEM block must be well formed and there must be at
    /// least one certificate. The bytes are kept exactly as given.
    pub fn ca_bundle(origin: &str, pem: Vec<u8>) -> Result<Self, RegistrationError> {
        let invalid = |reason: String| RegistrationError::CaBundle {
            origin: origin.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| invalid(format!("not valid PEM: {error}")))?;
        if certs.is_empty() {
            return Err(invalid(
                "no certificate found (expected a PEM \"CERTIFICATE\" block, e.g. ca.pem from `wasmhook certs`)".into(),
            ));
        }
        Ok(Self::CaBundle(pem))
    }

    /// cert-manager CA injection from the Certificate `namespace/name`.
    pub fn cert_manager(reference: &str) -> Result<Self, RegistrationError> {
        let invalid = |reason: String| RegistrationError::CertManagerRef {
            value: reference.to_owned(),
            reason,
        };
        let Some((namespace, certificate)) = reference.split_once('/') else {
            return Err(invalid("expected <namespace>/<certificate name>".into()));
        };
        check_label(namespace).map_err(|rule| invalid(format!("namespace {namespace:?}: {rule}")))?;
        check_subdomain(certificate).map_err(|rule| invalid(format!("certificate name {certificate:?}: {rule}")))?;
        Ok(Self::CertManager {
            namespace: namespace.to_owned(),
            certificate: certificate.to_owned(),
        })
    }
}

/// Where the API server reaches wasmhook, and how it trusts it. Built only
/// through [`WebhookTarget::new`], which checks every part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    namespace: String,
    service: String,
    port: u16,
    url: Option<String>,
    trust: Trust,
}

impl WebhookTarget {
    /// wasmhook's Service `service` in `namespace`, on `port`; or, with
    /// `url` (an `https://` base URL without query or fragment), a server at
    /// that URL — `namespace` is then still excluded from every webhook, and
    /// `service` still names the configurations. [`Trust::SystemRoots`] is
    /// accepted only with a URL.
    pub fn new(
        namespace: &str,
        service: &str,
        port: u16,
        url: Option<&str>,
        trust: Trust,
    ) -> Result<Self, RegistrationError> {
        check_namespace(namespace)?;
        check_service_name(service)?;
        if port == 0 {
            return Err(RegistrationError::InvalidPort);
        }
        let url = url.map(check_url).transpose()?;
        if url.is_none() && trust == Trust::SystemRoots {
            return Err(RegistrationError::NoTrust);
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            port,
            url,
            trust,
        })
    }

    /// wasmhook's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// wasmhook's Service, and the name of its webhook configurations.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The Service port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL, without a trailing `/`, when wasmhook is reached by URL.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// How the API server trusts wasmhook's certificate.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }
}

const LABEL_RULE: &str = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 \
                          characters (a DNS-1123 label)";
const SERVICE_RULE: &str = "lowercase letters, digits and '-', starting with a letter and ending with a letter or \
                            digit, at most 63 characters (a DNS-1035 label)";
const SUBDOMAIN_RULE: &str = "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at \
                              most 253 characters (a DNS-1123 subdomain)";

/// One object as a YAML document. Long single-line strings stay on one plain
/// line, as `kubectl get -o yaml` writes them, rather than the serializer's
/// default folded (`>-`) block, which would turn every `caBundle` and Secret
/// value into a block; multi-line strings (CEL expressions) still become
/// literal (`|`) blocks.
pub(crate) fn yaml_document<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, RegistrationError> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.folded_wrap_chars = usize::MAX;
    serde_saphyr::to_string_with_options(value, options).map_err(|source| RegistrationError::Yaml { what, source })
}

/// The labels of every generated object.
pub(crate) fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "wasmhook".to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), "wasmhook".to_owned()),
    ])
}

/// A DNS-1123 label: namespaces.
fn check_label(name: &str) -> Result<(), &'static str> {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let valid = (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric);
    if valid { Ok(()) } else { Err(LABEL_RULE) }
}

/// A DNS-1123 subdomain: Secret and Certificate names.
fn check_subdomain(name: &str) -> Result<(), &'static str> {
    let valid = (1..=253).contains(&name.len()) && name.split('.').all(|label| check_label(label).is_ok());
    if valid { Ok(()) } else { Err(SUBDOMAIN_RULE) }
}

/// A namespace name: a DNS-1123 label.
pub(crate) fn check_namespace(namespace: &str) -> Result<(), RegistrationError> {
    check_label(namespace).map_err(|rule| RegistrationError::InvalidNamespace {
        value: namespace.to_owned(),
        rule,
    })
}

/// A DNS-1035 label: Service names (they become DNS names, so they start
/// with a letter).
pub(crate) fn check_service_name(service: &str) -> Result<(), RegistrationError> {
    let valid = check_label(service).is_ok() && service.as_bytes()[0].is_ascii_lowercase();
    if valid {
        Ok(())
    } else {
        Err(RegistrationError::InvalidService {
            value: service.to_owned(),
            rule: SERVICE_RULE,
        })
    }
}

/// The checks the API server makes on a webhook URL (scheme `https`, a host,
/// no user info, query or fragment); returns it without a trailing `/`.
fn check_url(url: &str) -> Result<String, RegistrationError> {
    let invalid = |reason| RegistrationError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(invalid(
            "the API server calls webhooks over HTTPS only: it must start with https://",
        ));
    };
    if url.contains('?') || url.contains('#') {
        return Err(invalid("a webhook URL may not have a query or a fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid("a webhook URL may not carry a user or password"));
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(invalid("it names no host"));
    }
    if url.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}
