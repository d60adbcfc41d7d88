//! The denials this policy writes about `spec.serviceName`, in one place:
//! the policy formats them with the request's values, and `wasmhook
//! manifests --backstop` with CEL placeholders, so the
//! ValidatingAdmissionPolicy that stands in for the policy while wasmhook is
//! down says exactly what the policy says.
//!
//! Every argument is `Display`: `statefulset` is `namespace/name`; a quoted
//! argument is given quoted (`"web"`), as Rust's `{:?}` writes it. The
//! functions are `#[cold]`: only denials call them, and the paths that allow
//! or fill in the name — the hot ones — are laid out without them.

use std::fmt::Display;

/// A `serviceName` that is not a DNS-1035 label.
#[cold]
pub fn invalid_service_name(
    statefulset: &dyn Display,
    quoted_service_name: &dyn Display,
    reason: &dyn Display,
) -> String {
    format!(
        "StatefulSet {statefulset}: spec.serviceName {quoted_service_name} is not a valid Service \
         name (DNS-1035 label): it {reason}"
    )
}

/// No `serviceName`, and no name to make one from.
#[cold]
pub fn generated_name_without_service_name(quoted_namespace: &dyn Display) -> String {
    format!(
        "StatefulSet in {quoted_namespace} has a generated name and no spec.serviceName: set \
         spec.serviceName to the name of its headless Service"
    )
}

/// No `serviceName`, and the template makes an invalid one.
#[cold]
pub fn generated_service_name_invalid(
    statefulset: &dyn Display,
    quoted_generated: &dyn Display,
    reason: &dyn Display,
) -> String {
    format!(
        "StatefulSet {statefulset} has no spec.serviceName, and the name generated for it, \
         {quoted_generated}, is not a valid Service name: it {reason}. Set spec.serviceName."
    )
}
