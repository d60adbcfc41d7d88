//! Integration tests: one binary, a module per area (the wasmtime habit), all
//! against real compiled policy components.

mod engine;
mod eval_cli;
mod fixtures_engine;
mod native_policies;
