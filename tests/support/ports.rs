//! Free loopback ports for servers a test starts as processes.
//!
//! A port found by binding port 0 lies in the kernel's ephemeral range, from
//! which every outgoing connection takes its local port: one can take it
//! between the probe and the server's bind, and the server then fails with
//! "Address already in use" (it happened to the load benchmark in CI, under
//! wrk's connections). Below that range only listeners use ports, and a probe
//! sees those. The same rule as `tests/bench/load.py`'s `free_port`.
//!
//! Shared by the soak (through this crate) and the end-to-end tests of the
//! binary (which include this file: they belong to the server crate).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Where the kernel's ephemeral range starts when it cannot be read (Linux's
/// default).
const DEFAULT_EPHEMERAL_START: u16 = 32768;

/// How many ports below the ephemeral range are candidates.
const CANDIDATES: u16 = 8192;

/// A loopback address whose port nobody listens on, below the kernel's
/// ephemeral range.
pub fn free_loopback_addr() -> Result<SocketAddr, String> {
    let ephemeral_start = ephemeral_start();
    let low = ephemeral_start.saturating_sub(CANDIDATES).max(1024);
    if low >= ephemeral_start {
        return Err(format!(
            "no ports below the ephemeral range, which starts at {ephemeral_start}"
        ));
    }
    // Start at a point that differs between processes and calls, so tests
    // running at once do not probe the same ports in the same order.
    let span = u32::from(ephemeral_start - low);
    let start = (std::process::id() ^ probe_seed()) % span;
    for step in 0..span.min(512) {
        let port = low + ((start + step * 61) % span) as u16;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    Err(format!("no free loopback port in {low}..{ephemeral_start}"))
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// A value that differs between calls in one process.
fn probe_seed() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    nanos.wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_free_and_below_the_ephemeral_range() {
        let addr = free_loopback_addr().unwrap();
        assert!(addr.ip().is_loopback());
        assert!(addr.port() < ephemeral_start(), "{addr} is in the ephemeral range");
        TcpListener::bind(addr).expect("nobody listens on the port returned");
    }
}
