//! The in-tree policies, compiled to `wasm32-wasip2` components by this
//! crate's build script.
//!
//! The server embeds the built-in policies ([`BUILTINS`]); tests load the
//! test-only policies from their paths (the `*_PATH` constants).

/// A policy compiled into the server binary.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The policy's name: its directory under `policies/`.
    pub name: &'static str,
    /// The component's bytes.
    pub wasm: &'static [u8],
}

/// Finds a built-in policy by name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|builtin| builtin.name == name)
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_components() {
        assert_eq!(BUILTINS.len(), 2);
        for builtin in BUILTINS {
            // A component's preamble: magic, then version 0x0d with layer 1.
            assert_eq!(
                &builtin.wasm[..8],
                b"\0asm\x0d\0\x01\0",
                "{} is not a component",
                builtin.name
            );
        }
        assert!(builtin("headless-service").is_some());
        assert!(builtin("no-such-policy").is_none());
    }

    #[test]
    fn test_policies_exist_on_disk() {
        assert!(std::path::Path::new(MISBEHAVING_POLICY_PATH).is_file());
    }
}
