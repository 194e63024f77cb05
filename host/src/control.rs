//! The control plane: config reload, admin writes and plugin hot swap. Each
//! builds a whole new snapshot off the request path and publishes it to the
//! `DataPlane`; a rejected change keeps the last good snapshot serving and
//! is kept, typed, for operators.

mod error;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use error::{ControlError, ReloadError, SwapError, WriteError};

use crate::config::{self, ConfigErrors, document};
use crate::data_plane::DataPlane;
use crate::fleet::{self, Record};
use crate::plugin::PluginRuntime;
use crate::snapshot::Snapshot;
use crate::versions::Versions;

/// Counters describing reloads and swaps (`gatehouse_config_reloads_total`,
/// `gatehouse_plugin_swaps_total`).
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

/// Where the config comes from and where admin writes go.
pub enum Origin {
    /// A file: reloaded when it changes; admin writes replace it.
    File,
    /// etcd: the fleet's document (with this node's overrides); admin writes
    /// are transactions there, and every node applies what etcd holds.
    Fleet(Arc<fleet::Link>),
}

/// What the control plane owns.
pub struct ControlPlane {
    /// What it publishes to.
    pub data: Arc<DataPlane>,
    /// The plugin runtime.
    pub runtime: Arc<PluginRuntime>,
    /// The config file being served (in fleet mode, `etcd:{prefix}/config`:
    /// a name for errors, not a file).
    pub config_path: PathBuf,
    /// Where the config comes from.
    pub origin: Origin,
    /// The directory relative paths in the config are read from.
    anchor: PathBuf,
    /// Reload and swap counters.
    pub stats: Stats,
    /// Config versions (admin API).
    pub versions: Versions,
    /// Serialises reloads and swaps so that two never build at once.
    control: tokio::sync::Mutex<()>,
    /// The last reload or swap rejected.
    last_error: Mutex<Option<ControlError>>,
    /// SHA-256 of the live config text.
    live_hash: Mutex<Option<[u8; 32]>>,
    /// The last swap error of each plugin, cleared by a good swap.
    plugin_errors: Mutex<HashMap<String, SwapError>>,
    /// Instances found by service discovery.
    pub(crate) discovery: crate::discovery::Discovery,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ControlPlane {
    /// The control plane of `data`, whose snapshot was built from `text`.
    pub fn new(
        data: Arc<DataPlane>,
        runtime: Arc<PluginRuntime>,
        config_path: PathBuf,
        text: &str,
    ) -> Self {
        let versions = Versions::default();
        versions.push(
            document::parse(&config_path, text).unwrap_or_default(),
            "file",
        );
        let anchor = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ".".into());
        Self {
            data,
            runtime,
            config_path,
            origin: Origin::File,
            anchor,
            stats: Stats::default(),
            versions,
            control: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
            live_hash: Mutex::new(Some(digest(text))),
            plugin_errors: Mutex::default(),
            discovery: crate::discovery::Discovery::new(None),
        }
        .discovering()
    }

    /// Starts the discovery watchers the live snapshot needs.
    fn discovering(self) -> Self {
        self.discovery.reconcile(&self.snapshot().config);
        self
    }

    /// The control plane of a fleet node whose snapshot was built from `rec`.
    pub fn fleet(
        data: Arc<DataPlane>,
        runtime: Arc<PluginRuntime>,
        link: Arc<fleet::Link>,
        rec: &Record,
    ) -> Self {
        let versions = Versions::default();
        versions.record(rec);
        let text = link.render(&rec.document);
        Self {
            data,
            runtime,
            config_path: link.name(),
            origin: Origin::Fleet(link.clone()),
            anchor: link.anchor().to_path_buf(),
            stats: Stats::default(),
            versions,
            control: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
            live_hash: Mutex::new(Some(digest(&text))),
            plugin_errors: Mutex::default(),
            discovery: crate::discovery::Discovery::new(Some(link)),
        }
        .discovering()
    }

    /// The fleet link, in fleet mode.
    pub fn fleet_link(&self) -> Option<&Arc<fleet::Link>> {
        match &self.origin {
            Origin::Fleet(l) => Some(l),
            Origin::File => None,
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.data.snapshot()
    }

    /// The last reload or swap that was rejected, if any.
    pub fn last_error(&self) -> Option<ControlError> {
        lock(&self.last_error).clone()
    }

    /// The last rejected version of plugin `name`, if its current version is older.
    pub fn plugin_error(&self, name: &str) -> Option<SwapError> {
        lock(&self.plugin_errors).get(name).cloned()
    }

    fn record_error(&self, e: ControlError) {
        tracing::error!("{e}");
        *lock(&self.last_error) = Some(e);
    }

    /// The lock that serialises config changes and plugin swaps (admin writes
    /// hold it across read-modify-apply so that none is lost).
    pub async fn lock_control(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.control.lock().await
    }

    /// Re-reads the config file and publishes a new snapshot. An invalid config
    /// keeps the current snapshot serving; the errors are logged and returned.
    /// A file identical to the live config (e.g. just written by the admin
    /// API) is a no-op.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _guard = self.control.lock().await;
        let result = self.try_reload().await;
        // A file that cannot be read is usually one being replaced: the
        // watcher sees it again once it is there. Only a rejected config counts.
        if let Err(e @ ReloadError::Rejected(_)) = &result {
            self.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
            self.record_error(e.clone().into());
        }
        result
    }

    async fn try_reload(&self) -> Result<(), ReloadError> {
        let path = self.config_path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(&path)).await;
        let text = read
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| ReloadError::Read {
                path: self.config_path.clone(),
                source: Arc::new(e),
            })?;
        if self.is_live(&text) {
            return Ok(());
        }
        let snap = self.build(&text).await.map_err(ReloadError::Rejected)?;
        self.go_live(snap, &text, "file");
        self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(config = %self.config_path.display(), "config reloaded");
        Ok(())
    }

    /// Validates `document` exactly like the file, builds it, persists it
    /// (the config file, temp file + rename; or an etcd transaction on the
    /// live version) and makes it live as a new version by `author`. On any
    /// error nothing changes. Callers hold [`Self::lock_control`].
    pub async fn apply_document(
        &self,
        document: &serde_json::Value,
        author: &str,
    ) -> Result<u64, WriteError> {
        let text = self.render(document);
        let snap = self.build(&text).await?;
        let link = match &self.origin {
            Origin::File => {
                let path = self.config_path.clone();
                let written = text.clone();
                let write = tokio::task::spawn_blocking(move || {
                    crate::files::write_atomically(&path, written.as_bytes())
                })
                .await;
                if let Err(e) = write.map_err(std::io::Error::other).and_then(|r| r) {
                    let err =
                        config::ConfigError::new("", format!("cannot write the config file: {e}"));
                    return Err(ConfigErrors::single(&self.config_path, err).into());
                }
                let n = self.go_live(snap, &text, author);
                self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(version = n, author, "config changed through the admin API");
                return Ok(n);
            }
            Origin::Fleet(link) => link,
        };
        let base = self.versions.current().map(|v| v.record());
        let rec = link
            .store()?
            .write_config(document.clone(), author, base.as_ref())
            .await?;
        self.go_live_record(snap, &text, &rec);
        link.applied(&rec, self.data.metrics.answered()).await;
        self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(version = rec.version, author, "config written to etcd");
        Ok(rec.version)
    }

    /// Validates and builds `document` as this node would serve it, without
    /// publishing it (a staged rollout checks its version this way first).
    pub async fn check_document(&self, document: &serde_json::Value) -> Result<(), ConfigErrors> {
        self.build(&self.render(document)).await.map(drop)
    }

    /// Applies a version read from etcd: built and published like a reload,
    /// or rejected with the last good one serving. The version already live
    /// (this node's own write, seen again on the watch) is a no-op.
    pub async fn apply_record(&self, rec: &Record) -> Result<(), ReloadError> {
        let _guard = self.control.lock().await;
        let live = self.versions.current();
        if live
            .as_ref()
            .is_some_and(|v| v.version == rec.version && v.revision == rec.revision)
        {
            return Ok(());
        }
        let text = self.render(&rec.document);
        if self.is_live(&text) {
            // Same document under a new version (a rollback to it, say).
            self.versions.record(rec);
        } else {
            match self.build(&text).await {
                Ok(snap) => self.go_live_record(snap, &text, rec),
                Err(e) => {
                    let e = ReloadError::Rejected(e);
                    self.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                    self.record_error(e.clone().into());
                    if let Some(link) = self.fleet_link() {
                        link.rejected(rec, &e);
                    }
                    return Err(e);
                }
            }
            self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(link) = self.fleet_link() {
            link.applied(rec, self.data.metrics.answered()).await;
        }
        tracing::info!(version = rec.version, author = %rec.author, "config applied from etcd");
        Ok(())
    }

    /// The text the document is parsed from: as the file would hold it, or
    /// in fleet mode the fleet's document with this node's overrides.
    fn render(&self, document: &serde_json::Value) -> String {
        match &self.origin {
            Origin::File => document::render(&self.config_path, document),
            Origin::Fleet(link) => link.render(document),
        }
    }

    /// Parses, validates and builds `text` (off the request path).
    async fn build(&self, text: &str) -> Result<Snapshot, ConfigErrors> {
        let mut cfg = config::parse_in(&self.config_path, &self.anchor, text)?;
        self.discovery.overlay(&mut cfg);
        let current = self.snapshot();
        Snapshot::build(cfg, &self.runtime, Some(&current))
            .await
            .map_err(|errors| ConfigErrors::new(&self.config_path, errors))
    }

    fn is_live(&self, text: &str) -> bool {
        *lock(&self.live_hash) == Some(digest(text))
    }

    /// Publishes `snap` and records `text` as the new version.
    fn go_live(&self, snap: Snapshot, text: &str, author: &str) -> u64 {
        self.publish(snap);
        *lock(&self.live_hash) = Some(digest(text));
        let doc = document::parse(&self.config_path, text).unwrap_or_default();
        self.versions.push(doc, author)
    }

    /// Publishes `snap` and records `rec` (from etcd) as the live version.
    fn go_live_record(&self, snap: Snapshot, text: &str, rec: &Record) {
        self.publish(snap);
        *lock(&self.live_hash) = Some(digest(text));
        self.versions.record(rec);
    }

    /// Publishes `snap` and lets the runtime drop what no snapshot runs.
    fn publish(&self, snap: Snapshot) {
        let live = snap.versions();
        self.discovery.reconcile(&snap.config);
        self.data.publish(snap);
        self.runtime.prune(&live);
    }

    /// Service `name`'s discovered instances are now `list`: the live
    /// document is built again with them (no new version: the config did
    /// not change). Instances still listed keep their state.
    pub async fn rediscover(&self, name: &Arc<str>, list: Vec<crate::config::InstanceConfig>) {
        let _guard = self.control.lock().await;
        let n = list.len();
        if !self.discovery.record(name, list) {
            return;
        }
        let Some(doc) = self.versions.current().map(|v| v.document) else {
            return;
        };
        match self.build(&self.render(&doc)).await {
            Ok(snap) => {
                self.publish(snap);
                tracing::info!(service = %name, discovered = n, "service instances changed");
            }
            Err(e) => {
                tracing::error!(service = %name, error = %e, "discovered instances not applied")
            }
        }
    }

    /// Compiles the new file of plugin `name`, starts it for every attachment, and
    /// switches them all at once. Any failure keeps the old version everywhere.
    pub async fn swap_plugin(&self, name: &str) -> Result<(), SwapError> {
        let _guard = self.control.lock().await;
        match self.try_swap(name).await {
            // The file is the running version again (a rejected one was
            // replaced by it): nothing to swap, and nothing rejected now.
            Ok(0) => {
                lock(&self.plugin_errors).remove(name);
                Ok(())
            }
            Ok(n) => {
                lock(&self.plugin_errors).remove(name);
                self.stats.swaps_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = name, attachments = n, "plugin swapped");
                Ok(())
            }
            Err(e) => {
                lock(&self.plugin_errors).insert(name.to_string(), e.clone());
                self.stats.swaps_failed.fetch_add(1, Ordering::Relaxed);
                self.record_error(e.clone().into());
                Err(e)
            }
        }
    }

    /// Builds the snapshot with plugin `name` loaded again from its file
    /// (everything else carried over) and publishes it like a config reload;
    /// requests in flight finish on the snapshot they started with.
    async fn try_swap(&self, name: &str) -> Result<usize, SwapError> {
        let snap = self.snapshot();
        if !snap.attachments().iter().any(|a| a.config().uses(name)) {
            return Ok(0);
        }
        let next = snap
            .with_plugin(name, &self.runtime)
            .await
            .map_err(|errors| SwapError {
                plugin: name.to_string(),
                errors,
            })?;
        let n = next.changed_attachments(&snap, name);
        if n > 0 {
            self.publish(next);
        }
        Ok(n)
    }
}

fn digest(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}
