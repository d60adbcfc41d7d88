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
    /// The same policy built without its checks that read the cluster: it
    /// does not import `cluster-context`, which saves every instantiation
    /// the interface's cost. What a policy set that declares no `context:`
    /// for the policy runs; it decides every request as `wasm` does then.
    pub wasm_without_context: &'static [u8],
}

impl Builtin {
    /// The build to run: with the cluster-context checks when the policy
    /// may read the cluster, without otherwise.
    pub fn component(&self, with_context: bool) -> &'static [u8] {
        if with_context {
            self.wasm
        } else {
            self.wasm_without_context
        }
    }
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
            for wasm in [builtin.wasm, builtin.wasm_without_context] {
                // A component's preamble: magic, then version 0x0d with layer 1.
                assert_eq!(&wasm[..8], b"\0asm\x0d\0\x01\0", "{} is not a component", builtin.name);
            }
            // Only the build with context imports the interface.
            let imports = |wasm: &[u8]| {
                wasm.windows(b"wasmhook:policy/cluster-context".len())
                    .any(|window| window == b"wasmhook:policy/cluster-context")
            };
            assert!(imports(builtin.wasm), "{}", builtin.name);
            assert!(!imports(builtin.wasm_without_context), "{}", builtin.name);
            assert_ne!(builtin.component(true), builtin.component(false));
        }
        assert!(builtin("headless-service").is_some());
        assert!(builtin("no-such-policy").is_none());
    }

    #[test]
    fn test_policies_exist_on_disk() {
        assert!(std::path::Path::new(MISBEHAVING_POLICY_PATH).is_file());
    }
}
