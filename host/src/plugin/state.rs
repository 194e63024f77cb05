//! What one instance's store holds: the locked-down WASI context, the memory cap,
//! the deadline of the current call and the exchange being worked on.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::Exchange;
use super::kv::Kv;
use super::limiter::{RateLimiter, RedisLimiter};

/// Per-plugin things that outlive instances and hot swaps.
#[derive(Debug)]
pub struct PluginShared {
    /// Plugin name (log and metric tag).
    pub name: Arc<str>,
    /// The plugin's key-value store.
    pub kv: Arc<Kv>,
    /// Rate-limit counters.
    pub rate: Arc<RateLimiter>,
    /// The gateway's Redis limiter, when the config names one (shared by all
    /// plugins, replaced when `redis` changes in the config).
    pub redis: Arc<ArcSwapOption<RedisLimiter>>,
    /// Rate-limit decisions, for metrics.
    pub limits: Arc<crate::metrics::LimitMetrics>,
    /// The plugin's own counters and histograms.
    pub custom: Arc<crate::metrics::PluginCustom>,
}

/// Refuses linear-memory growth past the attachment's cap and remembers the peak,
/// so that an instance that grew large is recycled instead of reused.
#[derive(Debug)]
pub struct MemoryLimiter {
    /// Hard cap in bytes.
    pub cap: usize,
    /// Largest size any memory reached.
    pub peak: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
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
    /// The exchange of the call in progress (none between calls).
    pub(crate) exchange: Option<Box<Exchange>>,
    /// Header names this instance has set, parsed once.
    pub(crate) names: super::names::HeaderNames,
    pub(crate) shared: Arc<PluginShared>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
