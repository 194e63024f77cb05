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
use crate::plugin::PluginRuntime;
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
    /// The access log could not be opened.
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
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
    /// Every metric of this gateway.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Counters of requests no route matched.
    pub unmatched: Arc<crate::metrics::RouteMetrics>,
    /// Access log and span export.
    pub telemetry: crate::telemetry::Telemetry,
    /// Config versions (admin API).
    pub versions: crate::versions::Versions,
    /// SHA-256 of the live config text.
    live_hash: Mutex<Option<[u8; 32]>>,
    /// The last swap error of each plugin, cleared by a good swap.
    plugin_errors: Mutex<std::collections::HashMap<String, String>>,
    /// Open connections per client address, for `limits.max_connections_per_ip`.
    pub per_ip: Arc<crate::listener::PerIp>,
}

fn digest(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`,
/// so that readers see the old or the new file, never half of one.
fn atomic_write(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config");
    let tmp = dir.join(format!(".{name}.{}.tmp", fastrand::u64(..)));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl Shared {
    /// The current snapshot (an `Arc` the caller keeps for the whole request).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The last rejected version of plugin `name`, if its current version is older.
    pub fn plugin_error(&self, name: &str) -> Option<String> {
        self.plugin_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn record_error(&self, e: String) {
        tracing::error!("{e}");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// Re-reads the config file and swaps in a new snapshot. An invalid config
    /// keeps the current snapshot serving; the errors are logged and returned.
    /// A file identical to the live config (e.g. just written by the admin
    /// API) is a no-op.
    pub async fn reload(&self) -> Result<(), String> {
        let _guard = self.control.lock().await;
        let path = self.config_path.clone();
        let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read {}: {e}", self.config_path.display()))?;
        if self.is_live(&text) {
            return Ok(());
        }
        let result = match self.build(&text).await {
            Ok(snap) => {
                self.go_live(snap, &text, "file");
                Ok(())
            }
            Err(e) => Err(format!(
                "config reload rejected, keeping the last good config:\n{e}"
            )),
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

    /// Validates `document` exactly like the file, builds it, writes it to the
    /// config file (temp file + rename) and makes it live as a new version by
    /// `author`. On any error nothing changes. Callers hold [`Shared::control`].
    pub async fn apply_document(
        &self,
        document: &serde_json::Value,
        author: &str,
    ) -> Result<u64, ConfigErrors> {
        let text = crate::admin::document::render(&self.config_path, document);
        let snap = self.build(&text).await?;
        let path = self.config_path.clone();
        let written = text.clone();
        let write = tokio::task::spawn_blocking(move || atomic_write(&path, &written)).await;
        if let Err(e) = write.map_err(std::io::Error::other).and_then(|r| r) {
            let err = config::ConfigError::new("", format!("cannot write the config file: {e}"));
            return Err(ConfigErrors::single(&self.config_path, err));
        }
        let n = self.go_live(snap, &text, author);
        self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(version = n, author, "config changed through the admin API");
        Ok(n)
    }

    /// Parses, validates and builds `text` (off the request path).
    async fn build(&self, text: &str) -> Result<Snapshot, ConfigErrors> {
        let cfg = config::parse(&self.config_path, text)?;
        let current = self.snapshot();
        Snapshot::build(cfg, &self.runtime, Some(&current))
            .await
            .map_err(|errors| ConfigErrors::new(&self.config_path, errors))
    }

    fn is_live(&self, text: &str) -> bool {
        *self.live_hash.lock().unwrap_or_else(|p| p.into_inner()) == Some(digest(text))
    }

    /// Swaps `snap` in and records `text` as the new version.
    fn go_live(&self, snap: Snapshot, text: &str, author: &str) -> u64 {
        let live = snap.versions();
        self.snapshot.store(Arc::new(snap));
        self.runtime.prune(&live);
        *self.live_hash.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest(text));
        let doc = crate::admin::document::parse(&self.config_path, text).unwrap_or_default();
        self.versions.push(doc, author)
    }

    /// The lock that serialises config changes and plugin swaps (admin writes
    /// hold it across read-modify-apply so that none is lost).
    pub async fn lock_control(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.control.lock().await
    }

    /// Compiles the new file of plugin `name`, starts it for every attachment, and
    /// switches them all at once. Any failure keeps the old version everywhere.
    pub async fn swap_plugin(&self, name: &str) -> Result<(), String> {
        let _guard = self.control.lock().await;
        let result = self.try_swap(name).await;
        match &result {
            Ok(0) => {}
            Ok(n) => {
                self.plugin_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(name);
                self.stats.swaps_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = name, attachments = n, "plugin swapped");
            }
            Err(e) => {
                self.plugin_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_string(), e.clone());
                self.stats.swaps_failed.fetch_add(1, Ordering::Relaxed);
                self.record_error(format!(
                    "plugin swap rejected, keeping the running version: {e}"
                ));
            }
        }
        result.map(|_| ())
    }

    /// Builds the snapshot with plugin `name` loaded again from its file
    /// (everything else carried over) and swaps it in like a config reload;
    /// requests in flight finish on the snapshot they started with.
    async fn try_swap(&self, name: &str) -> Result<usize, String> {
        let snap = self.snapshot();
        if !snap.attachments().iter().any(|a| &*a.config().name == name) {
            return Ok(0);
        }
        let next = snap
            .with_plugin(name, &self.runtime)
            .await
            .map_err(|errors| {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                list.join("; ")
            })?;
        let n = next.changed_attachments(&snap, name);
        if n > 0 {
            let live = next.versions();
            self.snapshot.store(Arc::new(next));
            self.runtime.prune(&live);
        }
        Ok(n)
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    admin_addr: Option<SocketAddr>,
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Loads `config_path`, builds the first snapshot (every plugin loaded and
    /// initialized), binds every listener and starts serving and watching.
    pub async fn start(config_path: &Path) -> Result<Self, StartError> {
        let path = config_path.to_path_buf();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let err = config::ConfigError::new("", format!("cannot read file: {e}"));
            ConfigErrors::single(&path, err)
        })?;
        let cfg = config::parse(&path, &text)?;
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
        let metrics = runtime.metrics().clone();
        let telemetry = crate::telemetry::Telemetry::start(&snapshot.config, &metrics)
            .map_err(StartError::AccessLog)?;
        let versions = crate::versions::Versions::default();
        versions.push(
            crate::admin::document::parse(&path, &text).unwrap_or_default(),
            "file",
        );
        let admin = match &snapshot.config.admin {
            Some(a) => Some((
                TcpListener::bind(a.addr)
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: a.addr,
                        source,
                    })?,
                a.clone(),
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            versions,
            live_hash: Mutex::new(Some(digest(&text))),
            plugin_errors: Mutex::default(),
            per_ip: Arc::default(),
            unmatched: metrics.route(&Arc::from(crate::metrics::UNMATCHED)),
            metrics,
            telemetry,
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
        let admin_addr = match admin {
            Some((listener, cfg)) => {
                let addr = listener.local_addr().ok();
                tasks.push(tokio::spawn(crate::admin::run(
                    listener,
                    cfg,
                    shared.clone(),
                    rx.clone(),
                )));
                addr
            }
            None => None,
        };
        match crate::reload::watch(shared.clone(), rx) {
            Ok(task) => tasks.push(task),
            Err(e) => tracing::warn!(error = %e, "file watching unavailable; reload by restarting"),
        }
        Ok(Self {
            shared,
            admin_addr,
            addrs,
            shutdown: tx,
            tasks,
        })
    }

    /// The bound listener addresses, in config order (port 0 resolved).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin listener's bound address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
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
