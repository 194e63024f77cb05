//! Initialized instances of one plugin version for one attachment, reused across
//! requests. A call takes an instance, runs under a deadline and a memory cap,
//! and returns it, unless it trapped, timed out or grew large: then it is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::Resource;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::PluginError;
use super::bindings::types::{BodyAction, Features, RequestAction, ResponseAction};
use super::bindings::{Plugin, PluginPre};
use super::state::{MemoryLimiter, PluginShared, PluginState};
use super::stderr::PluginStderr;
use crate::config::AttachmentConfig;
use crate::exchange::PluginView;
use crate::plugin::callout::Scope;

/// `init` may do real work (parse keys, compile regexes): it gets a longer deadline.
const INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One hook invocation.
#[derive(Debug)]
pub enum Call {
    /// `on-request`.
    Request,
    /// `on-request-body` with the buffered body.
    RequestBody(Vec<u8>),
    /// `on-response`.
    Response,
    /// `on-response-body` with the buffered body.
    ResponseBody(Vec<u8>),
}

impl Call {
    /// The hook's name in the WIT.
    pub fn hook(&self) -> &'static str {
        match self {
            Call::Request => "on-request",
            Call::RequestBody(_) => "on-request-body",
            Call::Response => "on-response",
            Call::ResponseBody(_) => "on-response-body",
        }
    }
}

/// A hook's answer.
#[derive(Debug)]
pub enum Outcome {
    /// From `on-request`.
    Request(RequestAction),
    /// From `on-response`.
    Response(ResponseAction),
    /// From a body hook.
    Body(BodyAction),
}

struct Slot {
    store: Store<PluginState>,
    plugin: Plugin,
}

/// The instance pool of one attachment at one plugin version.
pub struct Pool {
    name: Arc<str>,
    engine: Engine,
    pre: PluginPre<PluginState>,
    cfg: AttachmentConfig,
    shared: Arc<PluginShared>,
    idle: Mutex<Vec<Slot>>,
    /// A spare instance is being started (see `prepare_spare`).
    preparing: AtomicBool,
    /// A call found no idle instance and started one on the request path:
    /// from then on the pool keeps a spare ready (see `prepare_spare`).
    contended: AtomicBool,
    permits: Semaphore,
    features: Features,
    /// Identity headers the plugin declared in `init`.
    identity_headers: Vec<http::HeaderName>,
    /// Content hash of the component this pool runs (hex, for logs).
    pub version: Arc<str>,
    /// When this version was started (admin API).
    pub loaded_at: std::time::SystemTime,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts one instance and runs `init`: a plugin that cannot start is a load
    /// error here, never a per-request failure. The instance stays pooled.
    pub async fn start(
        engine: Engine,
        pre: PluginPre<PluginState>,
        cfg: AttachmentConfig,
        shared: Arc<PluginShared>,
        version: Arc<str>,
    ) -> Result<Self, String> {
        let mut pool = Self {
            name: cfg.name.clone(),
            engine,
            pre,
            permits: Semaphore::new(cfg.max_instances),
            cfg,
            shared,
            idle: Mutex::new(Vec::new()),
            preparing: AtomicBool::new(false),
            contended: AtomicBool::new(false),
            features: Features::empty(),
            identity_headers: Vec::new(),
            version,
            loaded_at: std::time::SystemTime::now(),
        };
        let (mut slot, features) = pool.instantiate().await?;
        pool.features = features;
        pool.identity_headers = std::mem::take(&mut slot.store.data_mut().identity_headers);
        pool.idle
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot);
        Ok(pool)
    }

    /// What the plugin asked for in `init`.
    pub fn features(&self) -> Features {
        self.features
    }

    /// The request headers the plugin declared as identity in `init`.
    pub fn identity_headers(&self) -> &[http::HeaderName] {
        &self.identity_headers
    }

    /// The attachment this pool serves.
    pub fn config(&self) -> &AttachmentConfig {
        &self.cfg
    }

    /// Instances currently idle (for tests and the admin API).
    pub fn idle_count(&self) -> usize {
        self.lock_idle().len()
    }

    /// The largest linear memory any idle instance has reached, in bytes (the
    /// per-instance memory cost of a plugin, for benchmarks and the admin API).
    pub fn memory_peak(&self) -> usize {
        self.lock_idle()
            .iter()
            .map(|s| s.store.data().limiter.peak)
            .max()
            .unwrap_or(0)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts one instance in the background when a call took the last idle
    /// one, so that the next concurrent request finds one ready: interpreted
    /// guests (JavaScript, Python) take 1-2 ms to instantiate, which would
    /// otherwise land on a request. Only pools that have seen concurrent calls
    /// keep a spare (a pool used one request at a time never needs a second
    /// instance, and thousands of such pools would each hold one for nothing).
    /// At most one is prepared at a time, and none when every instance is
    /// already in use.
    fn prepare_spare(self: &Arc<Self>) {
        if !self.contended.load(Ordering::Relaxed)
            || self.permits.available_permits() == 0
            || self.preparing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            match pool.instantiate().await {
                Ok((slot, _)) => pool.lock_idle().push(slot),
                Err(e) => {
                    tracing::debug!(plugin = &*pool.name, error = %e, "spare instance failed")
                }
            }
            pool.preparing.store(false, Ordering::Release);
        });
    }

    async fn instantiate(&self) -> Result<(Slot, Features), String> {
        let mut wasi = WasiCtx::builder();
        wasi.stderr(PluginStderr::new(self.shared.name.clone()));
        if let Some(ms) = self.shared.script.as_ref().and_then(|s| s.now_ms) {
            wasi.wall_clock(super::script::FixedClock(Duration::from_millis(ms)));
        }
        for dir in &self.cfg.allow_read {
            let guest = dir.to_string_lossy();
            wasi.preopened_dir(dir, &guest, FsPerms::ReadOnly)
                .map_err(|e| format!("allow_read {}: {e}", dir.display()))?;
        }
        let state = PluginState {
            wasi: wasi.build(),
            table: Default::default(),
            limiter: MemoryLimiter::new(self.cfg.memory_limit),
            deadline: Instant::now() + INIT_TIMEOUT,
            ticks: 0,
            tick_budget: ticks_for(INIT_TIMEOUT),
            view: PluginView::blank(),
            serving: false,
            names: Default::default(),
            identity_headers: Vec::new(),
            shared: self.shared.clone(),
            callouts: None,
            calls: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.ticks += 1;
            if state.ticks >= state.tick_budget && Instant::now() >= state.deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Yield to tokio, then check again at the next tick.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let plugin = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("instantiate: {e:#}"))?;
        let features = plugin
            .call_init(&mut store, &self.cfg.config)
            .await
            .map_err(|e| format!("init trapped: {e:#}"))?
            .map_err(|e| format!("init rejected the config: {e}"))?;
        Ok((Slot { store, plugin }, features))
    }

    /// Runs one hook on a pooled instance. The view is swapped into the
    /// instance's store for the call and back after it, whatever the outcome.
    pub async fn invoke(
        self: &Arc<Self>,
        view: &mut PluginView,
        call: Call,
    ) -> Result<Outcome, PluginError> {
        self.invoke_with(view, call, &mut None).await
    }

    /// [`invoke`](Self::invoke) with what the call may reach by callout;
    /// the scope goes into the store with the view and comes back with the
    /// callouts' spans.
    pub async fn invoke_with(
        self: &Arc<Self>,
        view: &mut PluginView,
        call: Call,
        scope: &mut Option<Scope>,
    ) -> Result<Outcome, PluginError> {
        let _permit = self.permit().await?;
        let mut slot = self.take_slot().await?;
        // Off, a trace costs this one relaxed load.
        let traced = self.shared.trace.claim().map(|r| {
            let response = matches!(call, Call::Response | Call::ResponseBody(_));
            let before = r.before(view, call.hook(), response);
            (r, before)
        });
        let state = slot.store.data_mut();
        std::mem::swap(&mut state.view, view);
        std::mem::swap(&mut state.callouts, scope);
        state.calls = traced.as_ref().map(|_| Vec::new());
        state.serving = true;
        state.deadline = Instant::now() + self.cfg.timeout;
        state.ticks = 0;
        state.tick_budget = ticks_for(self.cfg.timeout);
        // The deadline is relative to the epoch at the time it is set: without a
        // reset, an instance idle for a tick would yield to the scheduler at the
        // first instruction of every call.
        slot.store.set_epoch_deadline(1);
        let result = run(&slot.plugin, &mut slot.store, call).await;
        let state = slot.store.data_mut();
        std::mem::swap(&mut state.view, view);
        std::mem::swap(&mut state.callouts, scope);
        state.serving = false;
        if let Some((r, before)) = traced {
            let calls = state.calls.take().unwrap_or_default();
            let (outcome, answer, error) = describe(&result);
            let answer = answer.as_ref().map(|(s, h)| (*s, h));
            let memory = state.limiter.used;
            r.after(
                before,
                view,
                &self.version,
                outcome,
                answer,
                calls,
                memory,
                error,
            );
        }
        match result {
            Ok(outcome) => {
                // Recycle instances that grew past half their cap: memory never shrinks.
                if slot.store.data().limiter.peak <= self.cfg.memory_limit / 2 {
                    self.lock_idle().push(slot);
                }
                Ok(outcome)
            }
            // A trapped instance cannot be entered again; dropping it is the only option.
            Err(e) if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
                Err(PluginError::Timeout {
                    plugin: self.name.clone(),
                    timeout: self.cfg.timeout,
                })
            }
            Err(e) => Err(PluginError::Trap {
                plugin: self.name.clone(),
                message: format!("{e:#}"),
            }),
        }
    }

    /// A permit to run one call: at once in the common case (no timer),
    /// otherwise after a bounded wait.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, PluginError> {
        if let Ok(p) = self.permits.try_acquire() {
            return Ok(p);
        }
        let wait = self.cfg.timeout.max(Duration::from_millis(50));
        match tokio::time::timeout(wait, self.permits.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(PluginError::Busy {
                plugin: self.name.clone(),
            }),
        }
    }

    /// An idle instance, or a new one when none is idle.
    async fn take_slot(self: &Arc<Self>) -> Result<Slot, PluginError> {
        let (idle, emptied) = {
            let mut idle = self.lock_idle();
            let slot = idle.pop();
            (slot, idle.is_empty())
        };
        if emptied {
            self.prepare_spare();
        }
        if let Some(slot) = idle {
            return Ok(slot);
        }
        self.contended.store(true, Ordering::Relaxed);
        match self.instantiate().await {
            Ok((slot, _)) => Ok(slot),
            Err(message) => Err(PluginError::Instantiate {
                plugin: self.name.clone(),
                message,
            }),
        }
    }
}

/// A call's result as a trace records it: outcome, the answer it gave
/// (status, headers) and the error.
fn describe(
    result: &wasmtime::Result<Outcome>,
) -> (&'static str, Option<(u16, http::HeaderMap)>, Option<String>) {
    use super::bindings::types::{BodyAction, RequestAction, ResponseAction};
    let answer = |r: &super::bindings::types::Response| {
        let mut h = http::HeaderMap::new();
        for x in &r.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(x.name.as_bytes()),
                http::HeaderValue::from_bytes(&x.value),
            ) {
                h.append(n, v);
            }
        }
        Some((r.status, h))
    };
    match result {
        Ok(Outcome::Request(RequestAction::Respond(r))) => ("respond", answer(r), None),
        Ok(Outcome::Response(ResponseAction::Replace(r))) => ("replace", answer(r), None),
        Ok(Outcome::Body(BodyAction::Respond(r))) => ("respond", answer(r), None),
        Ok(Outcome::Body(BodyAction::Replace(_))) => ("replace", None, None),
        Ok(_) => ("continue", None, None),
        Err(e) => ("error", None, Some(format!("{e:#}"))),
    }
}

/// Epoch ticks (1 ms) in `d`, at least one.
fn ticks_for(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

async fn run(
    plugin: &Plugin,
    store: &mut Store<PluginState>,
    call: Call,
) -> wasmtime::Result<Outcome> {
    let ctx = Resource::new_borrow(0);
    let req = Resource::new_borrow(0);
    Ok(match call {
        Call::Request => Outcome::Request(plugin.call_on_request(&mut *store, ctx, req).await?),
        Call::RequestBody(body) => Outcome::Body(
            plugin
                .call_on_request_body(&mut *store, ctx, req, &body)
                .await?,
        ),
        Call::Response => Outcome::Response(
            plugin
                .call_on_response(&mut *store, ctx, req, Resource::new_borrow(0))
                .await?,
        ),
        Call::ResponseBody(body) => Outcome::Body(
            plugin
                .call_on_response_body(&mut *store, ctx, Resource::new_borrow(0), &body)
                .await?,
        ),
    })
}
