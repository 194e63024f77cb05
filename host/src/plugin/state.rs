//! What one instance's store holds: the locked-down WASI context, the memory cap,
//! the deadline of the current call and the exchange being worked on.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::kv::Kv;
use super::limiter::{RateLimiter, RedisLimiter};
use crate::exchange::PluginView;

/// Per-plugin things that outlive instances and hot swaps.
#[derive(Debug)]
pub struct PluginShared {
    /// Plugin name (log and metric tag).
    pub name: Arc<str>,
    /// The plugin's key-value store.
    pub kv: Arc<Kv>,
    /// Answers to the plugin's callouts, kept as their `Cache-Control` (or
    /// the attachment's `callout_cache_ttl`) allows; apart from `kv`, so that
    /// the plugin can neither read nor forge them.
    pub callout_cache: Arc<Kv>,
    /// Rate-limit counters.
    pub rate: Arc<RateLimiter>,
    /// The gateway's Redis limiter, when the config names one (shared by all
    /// plugins, replaced when `redis` changes in the config).
    pub redis: Arc<ArcSwapOption<RedisLimiter>>,
    /// Rate-limit decisions, for metrics.
    pub limits: Arc<crate::metrics::LimitMetrics>,
    /// The plugin's own counters and histograms.
    pub custom: Arc<crate::metrics::PluginCustom>,
    /// Consumers' API keys (`host.find-credential`), shared by every plugin.
    pub credentials: Arc<crate::credentials::Credentials>,
    /// Scripted host answers of an offline test case; `None` in the gateway.
    pub script: Option<Arc<super::script::Script>>,
    /// Live tracing (`POST /plugins/{name}/trace`), off unless asked for.
    pub trace: super::trace::Tracer,
}

/// Refuses linear-memory growth past the attachment's cap, counting every
/// linear memory of the instance together (a component holds several core
/// modules, each may have its own), bounds how many tables, memories and
/// instances one store may create, and remembers the peak, so that an
/// instance that grew large is recycled instead of reused.
#[derive(Debug)]
pub struct MemoryLimiter {
    /// Hard cap in bytes, for all linear memories together.
    pub cap: usize,
    /// Bytes of linear memory the instance holds now.
    pub used: usize,
    /// The most `used` has been.
    pub peak: usize,
}

/// Core instances per store (Python components hold 14, QuickJS 8, Rust 3).
pub const MAX_INSTANCES: usize = 64;
/// Linear memories per store.
pub const MAX_MEMORIES: usize = 32;
/// Tables per store.
pub const MAX_TABLES: usize = 64;
/// Elements per table.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl MemoryLimiter {
    /// A limiter for one instance with `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            used: 0,
            peak: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.used - current.min(self.used)).saturating_add(desired);
        if total > self.cap {
            return Ok(false);
        }
        self.used = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The data of one instance's store.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// When the current call must end (wall clock).
    pub(crate) deadline: Instant,
    /// Epoch ticks (1 ms each) observed while the current call ran.
    pub(crate) ticks: u64,
    /// Ticks the current call may run: a call is interrupted only once it has
    /// both passed its wall-clock deadline and been seen running for this many
    /// ticks, so a thread descheduled by the OS does not time out a fast call.
    pub(crate) tick_budget: u64,
    /// The request of the call in progress, swapped in by the pool for the
    /// call; a blank view between calls and during `init`.
    pub(crate) view: PluginView,
    /// Whether a request hook is running (`view` is a request's).
    pub(crate) serving: bool,
    /// Header names this instance has set, parsed once.
    pub(crate) names: super::names::HeaderNames,
    /// Identity headers the plugin declared in `init`.
    pub(crate) identity_headers: Vec<http::HeaderName>,
    pub(crate) shared: Arc<PluginShared>,
    /// What the current call may reach by callout (`None` between calls,
    /// during `init`, and for attachments granted none).
    pub(crate) callouts: Option<super::callout::Scope>,
    /// The host calls of the current call, when it is traced.
    pub(crate) calls: Option<Vec<String>>,
}

impl PluginState {
    /// The request being served, if a request hook is running.
    /// Notes a host call for a trace or an offline case; `f` runs only
    /// when one is listening.
    pub(crate) fn note(&mut self, f: impl FnOnce() -> String) {
        if self.calls.is_none() && self.shared.script.is_none() {
            return;
        }
        let call = f();
        if let Some(s) = &self.shared.script {
            s.record(call.clone());
        }
        if let Some(c) = &mut self.calls {
            c.push(call);
        }
    }

    pub(crate) fn view(&self) -> Option<&PluginView> {
        self.serving.then_some(&self.view)
    }

    /// The request being served, editable, if a request hook is running.
    pub(crate) fn view_mut(&mut self) -> Option<&mut PluginView> {
        self.serving.then_some(&mut self.view)
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_count_together() {
        let mut l = MemoryLimiter::new(10 << 20);
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(
            l.memory_growing(0, 4 << 20, None).unwrap(),
            "a second memory"
        );
        assert!(
            !l.memory_growing(0, 4 << 20, None).unwrap(),
            "a third is over the cap"
        );
        assert!(
            l.memory_growing(4 << 20, 6 << 20, None).unwrap(),
            "growing one by 2 MiB fits"
        );
        assert!(!l.memory_growing(6 << 20, 7 << 20, None).unwrap());
        assert_eq!(l.peak, 10 << 20);
    }
}
