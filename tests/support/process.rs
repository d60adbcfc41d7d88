//! What the harnesses of real servers (kube-apiserver and etcd in
//! [`crate::kube`], the OCI registry in [`crate::registry`]) share: a
//! loopback port to start a server on, and the log file it writes.

use std::net::TcpListener;
use std::path::Path;

/// A loopback port nobody listens on now. Another process may take it
/// before the server binds it: the harnesses start again with a new port
/// when the server says "address already in use".
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|error| format!("no free loopback port: {error}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|error| error.to_string())
}

/// `path`, opened for appending (created if missing): a server's log.
pub fn log_file(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| format!("{}: {error}", path.display()))
}

/// The last 2,000 characters of a log file, for an error message.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!("{}: …{}", path.display(), &text[start..])
}
