//! One wasmtime engine and linker for the process; components compiled once per
//! file content (in memory and on disk), off the request path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

mod error;

pub use error::{LoadError, RuntimeError};

use super::bindings::{Plugin, PluginPre};
use super::kv::Kv;
use super::limiter::{RateLimiter, RedisLimiter};
use super::pool::Pool;
use super::state::{PluginShared, PluginState};
use crate::config::{AttachmentConfig, RedisConfig};

/// A compiled component, ready to instantiate.
#[derive(Clone)]
pub struct Compiled {
    pre: PluginPre<PluginState>,
    /// Hex of the first 8 bytes of the file's SHA-256.
    pub version: Arc<str>,
    /// Hex of the file's SHA-256.
    pub sha256: Arc<str>,
}

/// The process-wide plugin runtime.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    compiled: Mutex<HashMap<[u8; 32], Compiled>>,
    shared: Mutex<HashMap<Arc<str>, Arc<PluginShared>>>,
    bounds: Mutex<crate::config::PluginStateBounds>,
    redis: Arc<ArcSwapOption<RedisLimiter>>,
    credentials: Arc<crate::credentials::Credentials>,
    metrics: Arc<crate::metrics::Metrics>,
    stop: Arc<AtomicBool>,
    ticker: std::sync::Once,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime").finish_non_exhaustive()
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Nanoseconds since the first call, on a monotonic clock.
pub fn monotonic_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The engine configuration; a `.cwasm` only loads into an engine built the same way.
fn engine_config() -> Config {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    cfg.parallel_compilation(true);
    cfg
}

impl PluginRuntime {
    /// Builds the engine and links WASI (no dirs, env or network) and the host
    /// interface. The epoch ticker starts with the first plugin pool.
    pub fn new() -> Result<Arc<Self>, RuntimeError> {
        let engine = Engine::new(&engine_config()).map_err(RuntimeError::Engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Wasi)?;
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(RuntimeError::HostApi)?;
        let stop = Arc::new(AtomicBool::new(false));
        Ok(Arc::new(Self {
            engine,
            linker,
            compiled: Mutex::default(),
            shared: Mutex::default(),
            bounds: Mutex::default(),
            redis: Arc::default(),
            credentials: Arc::default(),
            metrics: Arc::default(),
            stop,
            ticker: std::sync::Once::new(),
        }))
    }

    /// The gateway's metrics (plugins, rate limits; shared with the request path).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The engine (for precompiling).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Finds `<name>.wasm` in `dir`, or with `allow_precompiled` also
    /// `<name>.cwasm` (the newer if both exist). A `.cwasm` is native code that
    /// runs outside the sandbox's checks, so it loads only when the operator
    /// opted in.
    pub fn locate(dir: &Path, name: &str, allow_precompiled: bool) -> Result<PathBuf, LoadError> {
        let wasm = dir.join(format!("{name}.wasm"));
        let cwasm = dir.join(format!("{name}.cwasm"));
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (mtime(&wasm), mtime(&cwasm)) {
            (Some(w), Some(c)) if allow_precompiled => Ok(if c >= w { cwasm } else { wasm }),
            (Some(_), _) => Ok(wasm),
            (None, Some(_)) if allow_precompiled => Ok(cwasm),
            (None, Some(_)) => Err(LoadError::Precompiled {
                name: name.into(),
                path: cwasm.display().to_string(),
            }),
            (None, None) => Err(LoadError::Missing {
                name: name.into(),
                dir: dir.display().to_string(),
            }),
        }
    }

    /// Compiles (or fetches from cache) the plugin file at `path`. Blocking: call
    /// from `spawn_blocking` or a non-runtime thread.
    pub fn compile(&self, name: &str, path: &Path) -> Result<Compiled, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
            name: name.into(),
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(c) = self.lock_compiled().get(&hash) {
            return Ok(c.clone());
        }
        let component = if path.extension().is_some_and(|e| e == "cwasm") {
            self.deserialize(name, &bytes)?
        } else {
            self.compile_cached(name, path, &bytes, &hash)?
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| LoadError::Link {
                name: name.into(),
                message: format!("{e:#}"),
            })?;
        let compiled = Compiled {
            pre,
            version: hex::encode(&hash[..8]).into(),
            sha256: hex::encode(hash).into(),
        };
        self.lock_compiled().insert(hash, compiled.clone());
        Ok(compiled)
    }

    /// Loads a precompiled artifact.
    fn deserialize(&self, name: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        // SAFETY: a `.cwasm` is native code. Only files in the operator's
        // `plugin_dir` (or its cache, which only this process writes) are loaded,
        // and wasmtime rejects artifacts from an incompatible engine.
        #[allow(unsafe_code)]
        let c = unsafe { Component::deserialize(&self.engine, bytes) };
        c.map_err(|e| LoadError::Compile {
            name: name.into(),
            message: format!("{e:#}"),
        })
    }

    /// Compiles `bytes`, reusing `<plugin_dir>/.gatehouse-cache/<hash>.cwasm` when a
    /// previous run left one, so that restarts do not pay compilation again.
    fn compile_cached(
        &self,
        name: &str,
        path: &Path,
        bytes: &[u8],
        hash: &[u8; 32],
    ) -> Result<Component, LoadError> {
        let cache = path
            .parent()
            .map(|d| d.join(".gatehouse-cache").join(self.cache_name(hash)));
        if let Some(file) = cache.as_ref().filter(|f| f.exists())
            && let Ok(bytes) = std::fs::read(file)
        {
            match self.deserialize(name, &bytes) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(cache = %file.display(), error = %e, "ignoring unusable cache entry")
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            name: name.into(),
            message: format!("{e:#}"),
        })?;
        if let (Some(file), Ok(art)) = (cache, component.serialize())
            && let Err(e) = crate::files::write_atomically(&file, &art)
        {
            tracing::debug!(cache = %file.display(), error = %e, "cannot write the compile cache");
        }
        Ok(component)
    }

    /// Cache entries are keyed by content and by engine build, so an upgraded
    /// gateway never tries an old artifact.
    fn cache_name(&self, hash: &[u8; 32]) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{}-{:016x}.cwasm", hex::encode(hash), h.finish())
    }

    /// Writes a precompiled `.cwasm` for `wasm` next to it (or to `out`).
    pub fn precompile(&self, wasm: &Path, out: &Path) -> Result<(), String> {
        let bytes = std::fs::read(wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
        let art = self
            .engine
            .precompile_component(&bytes)
            .map_err(|e| format!("{}: {e:#}", wasm.display()))?;
        crate::files::write_atomically(out, &art).map_err(|e| format!("{}: {e}", out.display()))
    }

    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Compiled>> {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state a plugin keeps across instances, routes and versions.
    pub fn shared(&self, name: &Arc<str>) -> Arc<PluginShared> {
        let bounds = *self.bounds.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.clone())
            .or_insert_with(|| Arc::new(self.fresh(name, bounds)))
            .clone()
    }

    /// New, empty host state for plugin `name` within `bounds`.
    fn fresh(&self, name: &Arc<str>, bounds: crate::config::PluginStateBounds) -> PluginShared {
        let kv = Kv::default();
        kv.set_bounds(bounds.kv_keys, bounds.kv_bytes);
        let rate = RateLimiter::default();
        rate.set_max_keys(bounds.rate_limit_keys);
        let answers = Kv::default();
        answers.set_bounds(bounds.kv_keys, bounds.callout_cache_bytes);
        PluginShared {
            name: name.clone(),
            kv: Arc::new(kv),
            callout_cache: Arc::new(answers),
            rate: Arc::new(rate),
            redis: self.redis.clone(),
            limits: self.metrics.limits(name),
            custom: self.metrics.custom(name),
            credentials: self.credentials.clone(),
            script: None,
            trace: Default::default(),
        }
    }

    /// Applies `plugin_state` bounds to every plugin's state, present and future.
    pub fn use_state_bounds(&self, bounds: crate::config::PluginStateBounds) {
        *self.bounds.lock().unwrap_or_else(|p| p.into_inner()) = bounds;
        let map = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        for s in map.values() {
            s.kv.set_bounds(bounds.kv_keys, bounds.kv_bytes);
            s.callout_cache
                .set_bounds(bounds.kv_keys, bounds.callout_cache_bytes);
            s.rate.set_max_keys(bounds.rate_limit_keys);
        }
    }

    /// Consumers' API keys, as plugins see them through `host.credential`.
    pub fn credentials(&self) -> &Arc<crate::credentials::Credentials> {
        &self.credentials
    }

    /// Points the Redis rate-limit backend at `config` (from a snapshot that is
    /// going live). Unchanged settings keep the existing connection.
    pub fn use_redis(&self, config: Option<&RedisConfig>) -> Result<(), String> {
        let current = self.redis.load();
        if current.as_deref().map(RedisLimiter::config) == config {
            return Ok(());
        }
        let next = config.map(RedisLimiter::new).transpose()?.map(Arc::new);
        self.redis.store(next);
        Ok(())
    }

    /// Starts the epoch ticker that enforces call deadlines, the first time a
    /// plugin is used: a gateway without plugins has no thread waking every 1 ms.
    fn ensure_ticker(&self) {
        self.ticker.call_once(|| {
            let engine = self.engine.clone();
            let stop = self.stop.clone();
            let spawned = std::thread::Builder::new()
                .name("gatehouse-epoch".into())
                .spawn(move || {
                    // Deadlines are checked at each tick: 1 ms granularity.
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1));
                        engine.increment_epoch();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the epoch thread: plugin deadlines are not enforced");
            }
        });
    }

    /// Starts a pool for `cfg` running `compiled` (one instance, `init` run).
    pub async fn start_pool(
        &self,
        compiled: &Compiled,
        cfg: &AttachmentConfig,
    ) -> Result<Arc<Pool>, LoadError> {
        let shared = self.shared(&cfg.name);
        self.start_pool_on(compiled, cfg, shared).await
    }

    /// State of its own for one offline test case: a fresh key-value store
    /// and limiter, `credentials`, and `script`'s answers. Nothing is shared
    /// with another case or kept in the runtime.
    pub fn scripted(
        &self,
        name: &Arc<str>,
        script: Arc<super::script::Script>,
        credentials: Arc<crate::credentials::Credentials>,
    ) -> Arc<PluginShared> {
        let bounds = *self.bounds.lock().unwrap_or_else(|p| p.into_inner());
        Arc::new(PluginShared {
            // Nothing shared with the gateway's Redis.
            redis: Arc::default(),
            credentials,
            script: Some(script),
            ..self.fresh(name, bounds)
        })
    }

    /// [`Self::start_pool`] on the given state.
    pub async fn start_pool_on(
        &self,
        compiled: &Compiled,
        cfg: &AttachmentConfig,
        shared: Arc<PluginShared>,
    ) -> Result<Arc<Pool>, LoadError> {
        self.ensure_ticker();
        Pool::start(
            self.engine.clone(),
            compiled.pre.clone(),
            cfg.clone(),
            shared,
            compiled.version.clone(),
        )
        .await
        .map(Arc::new)
        .map_err(|message| LoadError::Init {
            name: cfg.name.to_string(),
            message,
        })
    }

    /// Drops compiled components that no attachment of the live snapshot
    /// (`live`: their versions) uses, so that memory does not grow across
    /// swaps. Pools of older snapshots still serving requests keep their own
    /// handle on what they run.
    pub fn prune(&self, live: &[Arc<str>]) {
        self.lock_compiled()
            .retain(|_, c| live.contains(&c.version));
    }
}
