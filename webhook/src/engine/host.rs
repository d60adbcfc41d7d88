//! What a policy instance sees of the host: a WASI preview-2 context that
//! grants nothing (no files, network, environment or arguments), stdout and
//! stderr captured into capped buffers, a memory limiter that records when it
//! refused to grow, the index of the request's containers
//! (`request-layout`), and the cluster objects it declared
//! (`cluster-context`, checked by [`crate::context::RequestContext`]).
//!
//! The WASI context is built at the policy's first WASI call, not with the
//! instance: a policy that only reads the request and answers (the built-ins,
//! in every review that does not panic) makes none, and building one (its
//! random generators seeded, its clocks and streams boxed) and dropping it
//! was a tenth of an instance's setup and teardown.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmhook_rawjson::ContainerIndex;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::wasmhook::policy::{cluster_context, request_layout};
use crate::context::{self, ContextError, RequestContext, ResourceKind, Scope};

/// The data of one policy instance's `Store`.
pub struct HostState {
    /// Built by [`WasiView::ctx`] at the first WASI call, see the module doc.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    /// The index of the request being evaluated: set before the evaluation
    /// of a policy that imports `request-layout`, and taken when the policy
    /// asks for it (empty otherwise).
    pub(crate) request_layout: ContainerIndex,
    /// What the policy may read of the cluster in this evaluation: set for
    /// policies with a `context:`, `None` otherwise (every read refused).
    pub(crate) context: Option<RequestContext>,
}

impl HostState {
    /// A fresh, sandboxed state whose memories may grow to `memory_limit`
    /// bytes and whose output is kept up to `output_limit` bytes per stream.
    pub fn new(memory_limit: usize, output_limit: usize) -> Self {
        Self {
            wasi: None,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            stdout: CapturedOutput::new(output_limit),
            stderr: CapturedOutput::new(output_limit),
            request_layout: ContainerIndex::default(),
            context: None,
        }
    }
}

impl cluster_context::Host for HostState {
    fn declared(&mut self, api_version: String, kind: String) -> Option<cluster_context::Scope> {
        let context = self.context.as_ref()?;
        let scope = context.scope(&ResourceKind::new(api_version, kind))?;
        Some(match scope {
            Scope::Cluster => cluster_context::Scope::Cluster,
            Scope::RequestNamespace => cluster_context::Scope::RequestNamespace,
        })
    }

    fn get(
        &mut self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        name: String,
    ) -> Result<Option<String>, cluster_context::ContextError> {
        let kind = ResourceKind::new(api_version, kind);
        let Some(context) = &self.context else {
            return Err(to_wit(context::undeclared(&kind)));
        };
        context
            .get(&kind, namespace.as_deref(), &name)
            .map(|object| object.map(|json| json.to_string()))
            .map_err(to_wit)
    }

    fn list(
        &mut self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: String,
    ) -> Result<Vec<String>, cluster_context::ContextError> {
        let kind = ResourceKind::new(api_version, kind);
        let Some(context) = &self.context else {
            return Err(to_wit(context::undeclared(&kind)));
        };
        context
            .list(&kind, namespace.as_deref(), &label_selector)
            .map(|objects| objects.iter().map(|json| json.to_string()).collect())
            .map_err(to_wit)
    }
}

/// A read's failure as the WIT contract spells it.
fn to_wit(error: ContextError) -> cluster_context::ContextError {
    use cluster_context::ContextError as Wit;
    match error {
        ContextError::NotDeclared(text) => Wit::NotDeclared(text),
        ContextError::NotSynced(text) => Wit::NotSynced(text),
        ContextError::UnknownKind(text) => Wit::UnknownKind(text),
        ContextError::InvalidSelector(text) => Wit::InvalidSelector(text),
    }
}

impl request_layout::Host for HostState {
    fn containers(&mut self) -> request_layout::ContainerIndex {
        let (starts, ends) = std::mem::take(&mut self.request_layout).into_parts();
        request_layout::ContainerIndex { starts, ends }
    }
}

/// The sandbox's WASI context: stdout and stderr go to the captured
/// streams; no files, sockets, name lookups, environment or arguments.
fn sandboxed_wasi(stdout: &CapturedOutput, stderr: &CapturedOutput) -> WasiCtx {
    WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self
            .wasi
            .get_or_insert_with(|| sandboxed_wasi(&self.stdout, &self.stderr));
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// The marker error a refused memory growth traps with, so the engine can
/// tell an out-of-memory apart from other traps without parsing text.
#[derive(Debug)]
pub struct MemoryLimitExceeded;

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory limit exceeded")
    }
}

impl std::error::Error for MemoryLimitExceeded {}

/// `StoreLimits`, plus a record of whether a memory growth was refused.
pub struct MemoryLimiter {
    limits: StoreLimits,
    limit: usize,
    exceeded: bool,
    grown: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limits: StoreLimitsBuilder::new()
                .memory_size(limit)
                .table_elements(1 << 20)
                .trap_on_grow_failure(true)
                .build(),
            limit,
            exceeded: false,
            grown: false,
        }
    }

    /// The memory limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the policy tried to grow a memory past the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Whether the policy grew a memory beyond the size it was created with.
    /// Costly in the pool: the new pages are made accessible (`mprotect`),
    /// and the next instance in the slot has them made inaccessible again,
    /// which flushes the TLB of every thread of the server.
    pub fn grown(&self) -> bool {
        self.grown
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // A memory is created by "growing" from 0 to its initial size.
        self.grown |= current > 0 && desired > current;
        match self.limits.memory_growing(current, desired, maximum) {
            Ok(true) => Ok(true),
            _ => {
                self.exceeded = true;
                Err(wasmtime::Error::new(MemoryLimitExceeded))
            }
        }
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A stdout/stderr stream that keeps the first `limit` bytes and counts the
/// rest. Writes never fail: a chatty policy must not trap because of its
/// logging, and must not fill the server's memory either.
#[derive(Clone)]
pub struct CapturedOutput {
    inner: Arc<Mutex<Captured>>,
}

struct Captured {
    bytes: Vec<u8>,
    limit: usize,
    dropped: usize,
}

impl CapturedOutput {
    fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                limit,
                dropped: 0,
            })),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut captured = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let room = captured.limit.saturating_sub(captured.bytes.len());
        let kept = bytes.len().min(room);
        captured.bytes.extend_from_slice(&bytes[..kept]);
        captured.dropped += bytes.len() - kept;
    }

    /// The captured text (lossily decoded) and how many bytes were dropped.
    pub fn take(&self) -> (String, usize) {
        let mut captured = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let text = String::from_utf8_lossy(&captured.bytes).into_owned();
        captured.bytes.clear();
        (text, std::mem::take(&mut captured.dropped))
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_overflow_counted() {
        let output = CapturedOutput::new(8);
        output.append(b"hello ");
        output.append(b"world");
        assert_eq!(output.take(), ("hello wo".to_owned(), 3));
        assert_eq!(output.take(), (String::new(), 0), "take drains");
    }

    #[test]
    fn the_wasi_context_is_built_at_the_first_wasi_call_and_kept() {
        let mut state = HostState::new(1 << 20, 8);
        assert!(state.wasi.is_none(), "an instance starts without one");
        let first: *const WasiCtx = state.ctx().ctx;
        let second: *const WasiCtx = state.ctx().ctx;
        assert_eq!(first, second, "later calls get the same context");
        assert!(state.wasi.is_some());
    }

    #[test]
    fn refused_growth_is_recorded() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 19, None).unwrap());
        assert!(!limiter.exceeded());
        assert!(!limiter.grown(), "creating a memory is not growing it");
        let error = limiter.memory_growing(1 << 19, 2 << 20, None).unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitExceeded>().is_some());
        assert!(limiter.exceeded());
        assert!(limiter.grown());
    }
}
