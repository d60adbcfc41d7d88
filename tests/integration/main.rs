//! Integration tests: one binary, a module per area (the wasmtime habit), all
//! against real compiled policy components, real TLS on loopback and a real
//! HTTPS client.

mod cluster_context;
mod deploy;
mod engine;
mod eval_cli;
mod fixtures_engine;
mod fuzz_regressions;
mod harness;
mod hostile_policies;
mod native_policies;
mod policy_suites;
mod registration_cli;
mod scaffold;
mod self_registration;
mod server_http;
mod server_lifecycle;
