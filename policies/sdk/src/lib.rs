//! # wasmhook-policy: write Kubernetes admission policies for wasmhook in Rust
//!
//! A policy is a type that implements [`Policy`], exported with
//! [`export_policy!`]. The crate builds for `wasm32-wasip2` (the component the
//! server loads) and natively, so a policy's unit tests run under plain
//! `cargo test` with the helpers in [`testing`].
//!
//! ```
//! use wasmhook_policy::{Policy, PolicyError, Request, Verdict};
//!
//! #[derive(Default, serde::Deserialize)]
//! #[serde(default, deny_unknown_fields, rename_all = "camelCase")]
//! struct Settings {
//!     forbidden_namespace: String,
//! }
//!
//! struct NoDefaultNamespace;
//!
//! impl Policy for NoDefaultNamespace {
//!     type Settings = Settings;
//!
//!     fn evaluate(request: &Request<'_>, settings: &Settings) -> Result<Verdict, PolicyError> {
//!         if request.namespace() == Some(settings.forbidden_namespace.as_str()) {
//!             return Ok(Verdict::deny(format!(
//!                 "objects may not be created in namespace {:?}",
//!                 settings.forbidden_namespace
//!             )));
//!         }
//!         Ok(Verdict::allow())
//!     }
//! }
//!
//! wasmhook_policy::export_policy!(NoDefaultNamespace);
//! ```
//!
//! ## Mutation never loses data
//!
//! A mutating policy edits an [`Object`]: the request's object as raw JSON.
//! Edits address JSON pointers ([`Object::set`], [`Object::remove`]) or go
//! through a typed view ([`Object::edit_as`]) whose *changes* are merged back
//! onto the original. Fields the typed view does not know — newer API fields,
//! CRD extras — are never dropped, so the server's JSON Patch holds exactly the
//! intended operations.
//!
//! ## Reading the cluster
//!
//! A policy whose entry in the policy set declares `context:` can read the
//! objects already in the cluster — the Service a StatefulSet names, the
//! StatefulSets in a namespace — with [`context::get`] and [`context::list`],
//! answered from the server's watch caches.

pub mod context;
pub mod heap;
pub mod object;
mod pointer;
pub mod request;
pub mod selector;
pub mod settings;
pub mod testing;
pub mod validation;
pub mod verdict;
pub mod view;

mod error;
#[doc(hidden)]
pub mod guest;

pub use error::PolicyError;
pub use object::Object;
pub use request::{Operation, Request};
pub use verdict::Verdict;
pub use view::{Metadata, NamespacedName};

/// Policies built with the SDK allocate from a per-evaluation arena (see
/// [`heap`]); turn off the `one-shot-heap` feature to use another allocator.
#[cfg(all(target_arch = "wasm32", feature = "one-shot-heap"))]
#[global_allocator]
static HEAP: heap::OneShotHeap = heap::OneShotHeap::new();

/// Kubernetes API types, re-exported so policies use the same versions as the SDK.
pub use k8s_openapi;
/// kube-core's admission types ([`kube_core::admission::AdmissionRequest`]).
pub use kube_core;
/// JSON values and the `json!` macro, re-exported for convenience.
pub use serde_json;

/// The bindings wit-bindgen generates for `policies/wit/policy.wit`.
///
/// Policies do not use these directly: [`export_policy!`] wires a [`Policy`]
/// to them.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "wasmhook_policy::bindings",
    });
}

/// An admission policy.
///
/// The server calls [`Policy::validate_settings`] once when it loads the
/// policy and [`Policy::evaluate`] once per admission request, each time in a
/// fresh sandboxed instance: a policy holds no state between calls.
pub trait Policy {
    /// The policy's settings, parsed from the policy set's `settings` value.
    /// `Default` is used when no settings are configured. Prefer
    /// `#[serde(default, deny_unknown_fields, rename_all = "camelCase")]` so a
    /// misspelt setting is an error the operator sees at load time.
    type Settings: serde::de::DeserializeOwned + Default;

    /// Checks settings beyond what deserialization checks. The error text is
    /// shown to the operator, and the policy is not loaded.
    fn validate_settings(settings: &Self::Settings) -> Result<(), String> {
        let _ = settings;
        Ok(())
    }

    /// Decides about one admission request.
    ///
    /// Return a [`Verdict`] to allow, deny, warn or mutate. Return an error
    /// only when the policy itself cannot decide (unreadable input, a bug):
    /// the server then applies the policy's failure policy.
    fn evaluate(request: &Request<'_>, settings: &Self::Settings) -> Result<Verdict, PolicyError>;
}

/// Exports a [`Policy`] as the component's `policy` world.
///
/// Use it once, at the top level of the policy crate. It expands to nothing
/// on non-Wasm targets, so the crate also builds natively for unit tests.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct WasmhookPolicyExport;

            impl $crate::bindings::Guest for WasmhookPolicyExport {
                fn validate_settings(
                    settings: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::validate_settings::<$policy>(&settings)
                }

                fn evaluate(
                    request: ::std::string::String,
                    settings: ::std::string::String,
                ) -> ::std::result::Result<$crate::bindings::Verdict, ::std::string::String> {
                    $crate::guest::evaluate::<$policy>(&request, &settings)
                }
            }

    $crate::bindings::__export_policy_world!(WasmhookPolicyExport with_types_in $crate::bindings);
        };
    };
}
