//! The glue between the component's exports and a [`Policy`]: parse the
//! settings and request, call the policy, and put its verdict on the wire.
//! [`crate::export_policy!`] calls these; [`crate::testing`] calls the same
//! `run_*` functions natively so unit tests exercise the exact same path.

use wasmhook_rawjson::{ContainerIndex, with_index};

use crate::bindings;
use crate::{Policy, PolicyError, Request, Verdict, settings};

/// Parses and validates settings.
pub fn run_validate_settings<P: Policy>(settings_json: &str) -> Result<P::Settings, String> {
    let settings = settings::parse::<P::Settings>(settings_json).map_err(|error| error.to_string())?;
    P::validate_settings(&settings)?;
    Ok(settings)
}

/// Parses the settings and the request — validating all of it — and
/// evaluates the policy, with the request's containers indexed as the server
/// indexes them.
pub fn run_evaluate<P: Policy>(request_json: &str, settings_json: &str) -> Result<Verdict, String> {
    let index = ContainerIndex::of(request_json).unwrap_or_default();
    with_index(request_json, index, || {
        evaluate_request::<P>(Request::parse(request_json), settings_json)
    })
}

fn evaluate_request<P: Policy>(
    request: Result<Request<'_>, PolicyError>,
    settings_json: &str,
) -> Result<Verdict, String> {
    let settings = settings::parse::<P::Settings>(settings_json).map_err(|error| error.to_string())?;
    let request = request.map_err(|error| error.to_string())?;
    P::evaluate(&request, &settings).map_err(|error: PolicyError| error.to_string())
}

/// The `validate-settings` export.
pub fn validate_settings<P: Policy>(settings_json: &str) -> Result<(), String> {
    install_panic_hook();
    run_validate_settings::<P>(settings_json).map(drop)
}

/// The `evaluate` export.
pub fn evaluate<P: Policy>(request_json: &str, settings_json: &str) -> Result<bindings::Verdict, String> {
    install_panic_hook();
    // The server validated the review: the request is read, not re-validated;
    // and it indexed the request's containers, so what the policy does not
    // read is skipped by a lookup instead of a scan.
    let layout = bindings::wasmhook::policy::request_layout::containers();
    let index = ContainerIndex::from_parts(layout.starts, layout.ends);
    let verdict = with_index(request_json, index, || {
        evaluate_request::<P>(Request::from_server(request_json), settings_json)
    })?;
    let parts = verdict.into_parts();
    let mutated_object = parts.mutated_object.map(|object| object.to_json());
    Ok(bindings::Verdict {
        allowed: parts.allowed,
        message: parts.message,
        code: parts.code,
        mutated_object,
        warnings: parts.warnings,
        audit_annotations: parts.audit_annotations,
    })
}

/// Reports a panic as one line on stderr, `panicked at <file:line>: <message>`,
/// which the server attaches to the trap it reports.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        match info.location() {
            Some(location) => eprintln!("panicked at {location}: {message}"),
            None => eprintln!("panicked: {message}"),
        }
    }));
}
