//! Where every command that talks to a cluster gets its connection from: the
//! `--kubeconfig` file when one is given, else the in-cluster service account,
//! else `KUBECONFIG` or `~/.kube/config` — the order `kubectl` and
//! client-go use. One function, so `serve --register`, the context watches
//! and `audit` cannot drift apart.

use std::path::Path;

/// The client configuration for `kubeconfig`, or inferred from the
/// environment. The error names the file when one was given.
pub async fn load(kubeconfig: Option<&Path>) -> Result<kube::Config, String> {
    match kubeconfig {
        Some(path) => {
            let file =
                kube::config::Kubeconfig::read_from(path).map_err(|error| format!("{}: {error}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|error| format!("{}: {error}", path.display()))
        }
        None => kube::Config::infer().await.map_err(|error| error.to_string()),
    }
}
