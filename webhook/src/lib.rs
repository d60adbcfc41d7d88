//! wasmhook: a Kubernetes admission webhook that runs WebAssembly policies.
//!
//! The library exposes every part of the server so tests, benchmarks and the
//! `wasmhook` binary share one implementation:
//!
//! - [`engine`]: compiles policy components and evaluates requests in
//!   sandboxed, bounded instances;
//! - [`context`]: the cluster objects policies may read (declared per
//!   policy; served from watch caches, or from files offline);
//! - [`review`]: reads AdmissionReviews; [`response`]: maps verdicts to
//!   AdmissionResponses; [`patch`]: computes and verifies JSON Patches;
//! - [`policy`]: how a policy is applied (mode, action, failure policy);
//! - [`builtin`]: the policies compiled into the binary;
//! - [`oci`]: policies pulled from, pushed to and signed in OCI registries;
//! - [`server`]: the HTTPS admission server (`wasmhook serve`);
//! - [`registration`]: the webhook configurations and certificates that
//!   register wasmhook with a cluster (`wasmhook manifests`, `wasmhook certs`);
//! - [`backstop`]: the built-ins' validating rules as ValidatingAdmissionPolicies
//!   the API server evaluates itself (`wasmhook manifests --backstop`);
//! - [`testsuite`]: declarative policy test suites (`wasmhook test`);
//! - [`scaffold`]: new policies in Rust, Python or JavaScript (`wasmhook new`);
//! - [`audit`]: the objects already in a cluster, judged by the same
//!   policies (`wasmhook audit`), and their PolicyReports;
//! - [`cli`]: the command line, including `wasmhook eval`.

pub mod audit;
pub mod backstop;
pub mod builtin;
pub mod cli;
pub mod config;
pub mod context;
pub mod duration;
pub mod engine;
pub mod error_chain;
pub mod kube_config;
pub mod manifest;
pub mod oci;
pub mod patch;
pub mod policy;
pub mod registration;
pub mod response;
pub mod review;
pub mod scaffold;
pub mod server;
pub mod testsuite;
pub mod tls;
