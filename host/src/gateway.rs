//! The running gateway: the current snapshot behind an `ArcSwap`, the listeners,
//! the plugin runtime, and reload / hot swap entry points.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, ConfigErrors};
use crate::plugin::{PluginRuntime, runtime::LoadError};
use crate::snapshot::Snapshot;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file is invalid (every error listed).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TLS listener's certificates could not be loaded.
    #[error("listener {addr}: {source}")]
    Tls {
        /// The listener.
        addr: SocketAddr,
        /// What is wrong.
        source: crate::tls::TlsError,
    },
    /// The plugin runtime could not start.
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

/// Counters describing reloads and swaps (read by tests and, later, metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Config reloads applied.
    pub reloads_ok: AtomicU64,
    /// Config reloads rejected (last-known-good kept).
    pub reloads_failed: AtomicU64,
    /// Plugin versions swapped in.
    pub swaps_ok: AtomicU64,
    /// Plugin files rejected (old version kept).
    pub swaps_failed: AtomicU64,
}

/// State shared by listeners, the watcher and the control entry points.
pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    /// The plugin runtime.
    pub runtime: Arc<PluginRuntime>,
    /// The config file being served.
    pub config_path: PathBuf,
    /// Reload and swap counters.
    pub stats: Stats,
    /// The last reload or swap error, for operators.
    pub last_error: Mutex<Option<String>>,
    /// Serialises reloads and swaps so that two never build at once.
    pub(crate) control: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The current snapshot (an `Arc` the caller keeps for the whole request).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn record_error(&self, e: String) {
        tracing::error!("{e}");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// Re-reads the config file and swaps in a new snapshot. An invalid config
    /// keeps the current snapshot serving; the errors are logged and returned.
    pub async fn reload(&self) -> Result<(), String> {
        let _guard = self.control.lock().await;
        let path = self.config_path.clone();
        let parsed = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| e.to_string())?;
        let result = match parsed {
            Err(e) => Err(format!(
                "config reload rejected, keeping the last good config:\n{e}"
            )),
            Ok(cfg) => {
                let current = self.snapshot();
                match Snapshot::build(cfg, &self.runtime, Some(&current)).await {
                    Ok(snap) => {
                        self.snapshot.store(Arc::new(snap));
                        self.runtime.prune();
                        Ok(())
                    }
                    Err(errors) => Err(format!(
                        "config reload rejected, keeping the last good config:\n{}",
                        ConfigErrors::new(&self.config_path, errors)
                    )),
                }
            }
        };
        match &result {
            Ok(()) => {
                self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(config = %self.config_path.display(), "config reloaded");
            }
            Err(e) => {
                self.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                self.record_error(e.clone());
            }
        }
        result
    }

    /// Compiles the new file of plugin `name`, starts it for every attachment, and
    /// switches them all at once. Any failure keeps the old version everywhere.
    pub async fn swap_plugin(&self, name: &str) -> Result<(), String> {
        let _guard = self.control.lock().await;
        let result = self.try_swap(name).await;
        match &result {
            Ok(0) => {}
            Ok(n) => {
                self.stats.swaps_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = name, attachments = n, "plugin swapped");
            }
            Err(e) => {
                self.stats.swaps_failed.fetch_add(1, Ordering::Relaxed);
                self.record_error(format!(
                    "plugin swap rejected, keeping the running version: {e}"
                ));
            }
        }
        result.map(|_| ())
    }

    async fn try_swap(&self, name: &str) -> Result<usize, String> {
        let snap = self.snapshot();
        let attachments: Vec<_> = snap
            .attachments()
            .into_iter()
            .filter(|a| &*a.config().name == name)
            .collect();
        if attachments.is_empty() {
            return Ok(0);
        }
        let path = match PluginRuntime::locate(&snap.config.plugin_dir, name) {
            Ok(p) => p,
            Err(LoadError::Missing { .. }) => return Ok(0),
            Err(e) => return Err(e.to_string()),
        };
        let rt = self.runtime.clone();
        let owned = name.to_string();
        let compiled = tokio::task::spawn_blocking(move || rt.compile(&owned, &path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut pools = Vec::with_capacity(attachments.len());
        for a in &attachments {
            if a.version().as_deref() == Some(&*compiled.version) {
                continue;
            }
            pools.push((
                a,
                self.runtime
                    .start_pool(&compiled, a.config())
                    .await
                    .map_err(|e| e.to_string())?,
            ));
        }
        let n = pools.len();
        for (a, pool) in pools {
            a.swap(pool);
        }
        self.runtime.prune();
        Ok(n)
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Loads `config_path`, builds the first snapshot (every plugin loaded and
    /// initialized), binds every listener and starts serving and watching.
    pub async fn start(config_path: &Path) -> Result<Self, StartError> {
        let path = config_path.to_path_buf();
        let cfg = config::load(&path)?;
        let runtime = PluginRuntime::new().map_err(StartError::Runtime)?;
        let snapshot = Snapshot::build(cfg, &runtime, None)
            .await
            .map_err(|errors| ConfigErrors::new(&path, errors))?;
        let mut listeners = Vec::new();
        let mut tls = Vec::new();
        for l in &snapshot.config.listeners {
            let server = match &l.tls {
                Some(t) => Some(Arc::new(crate::tls::TlsServer::build(t).map_err(
                    |source| StartError::Tls {
                        addr: l.addr,
                        source,
                    },
                )?)),
                None => None,
            };
            tls.push(server);
            let sock = TcpListener::bind(l.addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: l.addr,
                    source,
                })?;
            listeners.push(sock);
        }
        let addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            runtime,
            config_path: path,
            stats: Stats::default(),
            last_error: Mutex::new(None),
            control: tokio::sync::Mutex::new(()),
        });
        let (tx, rx) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        for (l, t) in listeners.into_iter().zip(tls) {
            if let Some(t) = &t {
                tasks.push(tokio::spawn(t.clone().watch(rx.clone())));
            }
            tasks.push(tokio::spawn(crate::listener::run(
                l,
                t,
                shared.clone(),
                rx.clone(),
            )));
        }
        match crate::reload::watch(shared.clone(), rx) {
            Ok(task) => tasks.push(task),
            Err(e) => tracing::warn!(error = %e, "file watching unavailable; reload by restarting"),
        }
        Ok(Self {
            shared,
            addrs,
            shutdown: tx,
            tasks,
        })
    }

    /// The bound listener addresses, in config order (port 0 resolved).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Shared state: snapshot, runtime, stats, reload and swap.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout)
    /// and stops the watchers.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
