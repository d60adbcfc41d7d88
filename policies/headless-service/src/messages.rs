//! The denials this policy writes, in one place: the policy formats them
//! with the request's values, and `wasmhook manifests --backstop` with CEL
//! placeholders, so the ValidatingAdmissionPolicy that stands in for the
//! policy while wasmhook is down says exactly what the policy says.
//!
//! Every argument is `Display`: `service` is `namespace/name`, `reason` is a
//! [`Selection`] (why the settings select the Service). The functions are
//! `#[cold]`: only denials call them, and the paths that allow or mutate —
//! the hot ones — are laid out without them.

use std::fmt::{self, Display};

/// Why a Service is selected. Said in denials, and formatted only then: a
/// mutation formats nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'s> {
    /// Its name ends with this suffix (`nameSuffixes`).
    NameSuffix(&'s str),
    /// Its name starts with this prefix (`namePrefixes`).
    NamePrefix(&'s str),
    /// Its labels match `selector`.
    Labels,
}

impl Display for Selection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameSuffix(suffix) => write!(f, "its name ends with {suffix:?}"),
            Self::NamePrefix(prefix) => write!(f, "its name starts with {prefix:?}"),
            Self::Labels => f.write_str("its labels match the headless selector"),
        }
    }
}

/// A selected Service of a type that cannot be headless (NodePort,
/// LoadBalancer).
#[cold]
pub fn wrong_type(service: &dyn Display, reason: &dyn Display, service_type: &dyn Display) -> String {
    format!(
        "Service {service} must be headless ({reason}), but it has type {service_type}: \
         a headless Service is of type ClusterIP with spec.clusterIP: None. \
         Remove spec.type (or set it to ClusterIP) and set spec.clusterIP: None."
    )
}

/// A new selected Service that asks for a concrete cluster IP.
#[cold]
pub fn cluster_ip_requested(service: &dyn Display, reason: &dyn Display, ip: &dyn Display) -> String {
    format!(
        "Service {service} must be headless ({reason}), but it has cluster IP {ip}: \
         set spec.clusterIP: None and remove spec.clusterIPs."
    )
}

/// A stored selected Service that has a cluster IP: it can only be
/// re-created.
#[cold]
pub fn cluster_ip_allocated(service: &dyn Display, reason: &dyn Display, ip: &dyn Display) -> String {
    format!(
        "Service {service} must be headless ({reason}), but it has cluster IP {ip}, \
         and cluster IPs cannot be changed: delete and re-create it as headless \
         (spec.clusterIP: None)."
    )
}

/// An UPDATE from ExternalName to ClusterIP without `clusterIP: None`.
#[cold]
pub fn external_name_to_cluster_ip(service: &dyn Display, reason: &dyn Display) -> String {
    format!(
        "Service {service} must be headless ({reason}): changing its type from ExternalName to \
         ClusterIP allocates a cluster IP unless spec.clusterIP is None. Set spec.clusterIP: None."
    )
}
