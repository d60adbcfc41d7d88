//! A policy that misbehaves on purpose, chosen by its settings
//! (`{"behaviour": "<name>"}`), so the engine's containment can be tested
//! against a real compiled component. It implements the raw world bindings
//! rather than the SDK's `Policy` trait, because several behaviours (invalid
//! JSON, a non-object mutation) are exactly what the SDK makes impossible.
//!
//! Behaviours: `allow` (well-behaved), `loop`, `allocate`, `panic`, `error`,
//! `invalid-json`, `not-an-object`, `identity-change`, `stdout-flood`,
//! `reject-settings`, and `echo` (returns the object re-serialized through a
//! generic JSON value, keys reordered: a round trip that must yield no patch),
//! `count` (warns with a per-instance call counter: proves a fresh instance
//! per call), `probe-wasi` (warns with what it could reach of the host: files,
//! environment, arguments, network), `layout` (warns with the request's
//! container index as the host hands it over, twice).

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use wasmhook_policy::bindings::wasmhook::policy::request_layout;
use wasmhook_policy::bindings::{Guest, Verdict};

/// Reads `behaviour` from the settings; `allow` when absent.
fn behaviour(settings: &str) -> String {
    serde_json::from_str::<serde_json::Value>(settings)
        .ok()
        .and_then(|value| value.get("behaviour")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "allow".to_owned())
}

fn allow() -> Verdict {
    Verdict {
        allowed: true,
        message: None,
        code: None,
        mutated_object: None,
        warnings: Vec::new(),
        audit_annotations: Vec::new(),
    }
}

/// The request's object, with `edit` applied, as JSON.
fn mutated(request: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Result<String, String> {
    let request: serde_json::Value = serde_json::from_str(request).map_err(|e| e.to_string())?;
    let mut object = request.get("object").cloned().ok_or("no object")?;
    edit(&mut object);
    Ok(object.to_string())
}

/// What the sandbox lets through, one line per capability.
fn probe_host() -> Vec<String> {
    let files = match std::fs::read_dir("/") {
        Ok(entries) => format!("files: listed {} entries of /", entries.count()),
        Err(error) => format!("files: denied ({error})"),
    };
    let environment = format!("environment: {} variables", std::env::vars_os().count());
    let arguments = format!("arguments: {}", std::env::args_os().count());
    let network = match std::net::TcpStream::connect("127.0.0.1:1") {
        Ok(_) => "network: connected".to_owned(),
        Err(error) => format!("network: denied ({error})"),
    };
    vec![files, environment, arguments, network]
}

struct Misbehaving;

impl Guest for Misbehaving {
    fn validate_settings(settings: String) -> Result<(), String> {
        match behaviour(&settings).as_str() {
            "reject-settings" => Err("these settings are rejected on purpose".into()),
            _ => Ok(()),
        }
    }

    fn evaluate(request: String, settings: String) -> Result<Verdict, String> {
        match behaviour(&settings).as_str() {
            "loop" => {
                let mut counter = 0u64;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "allocate" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("deliberate panic from the misbehaving policy"),
            "error" => Err("deliberate policy error".into()),
            "invalid-json" => Ok(Verdict {
                mutated_object: Some("{this is not json".into()),
                ..allow()
            }),
            "not-an-object" => Ok(Verdict {
                mutated_object: Some("[1, 2, 3]".into()),
                ..allow()
            }),
            "identity-change" => Ok(Verdict {
                mutated_object: Some(mutated(&request, |object| {
                    object["metadata"]["name"] = "someone-else".into();
                })?),
                ..allow()
            }),
            "echo" => Ok(Verdict {
                mutated_object: Some(mutated(&request, |_| {})?),
                ..allow()
            }),
            "count" => {
                static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                Ok(Verdict {
                    warnings: vec![format!("call {calls}")],
                    ..allow()
                })
            }
            "layout" => {
                // What the host says about the request's text, asked twice:
                // the second answer shows it is handed over only once.
                let first = request_layout::containers();
                let again = request_layout::containers();
                Ok(Verdict {
                    warnings: vec![
                        format!("starts {:?} ends {:?}", first.starts, first.ends),
                        format!("again {} {}", again.starts.len(), again.ends.len()),
                    ],
                    ..allow()
                })
            }
            "probe-wasi" => Ok(Verdict {
                warnings: probe_host(),
                ..allow()
            }),
            "stdout-flood" => {
                let line = "x".repeat(1023);
                for _ in 0..16 * 1024 {
                    println!("{line}");
                    eprintln!("{line}");
                }
                Ok(allow())
            }
            _ => Ok(allow()),
        }
    }
}

#[cfg(target_arch = "wasm32")]
wasmhook_policy::bindings::__export_policy_world!(Misbehaving with_types_in wasmhook_policy::bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_defaults_to_allow() {
        assert_eq!(behaviour("null"), "allow");
        assert_eq!(behaviour(r#"{"behaviour": "loop"}"#), "loop");
    }

    #[test]
    fn identity_change_renames_the_object() {
        let json = mutated(r#"{"object": {"metadata": {"name": "a"}}}"#, |object| {
            object["metadata"]["name"] = "b".into();
        })
        .unwrap();
        assert_eq!(json, r#"{"metadata":{"name":"b"}}"#);
    }
}
