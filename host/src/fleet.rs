//! The fleet: many stateless nodes serving one config held in etcd.
//!
//! A node starts from etcd (or, when etcd is down, from its local copy of
//! what it last applied), then `sync` watches the config and the plugin
//! names and applies each change through the same build → swap path as a
//! file reload, and `registry` keeps a leased key saying what the node
//! serves. Admin writes on any node are transactions in etcd ([`Store`]).

mod bootstrap;
pub mod consumers;
mod error;
mod local;
pub mod registry;
pub mod rollout;
mod store;
pub mod sync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use serde_json::Value;

pub use bootstrap::{Bootstrap, DEFAULT_PREFIX, EtcdOptions, EtcdTls, NodeOptions};
pub use error::FleetError;
pub use local::LocalCopy;
pub use store::{CHUNK, PluginRecord, RETAINED, Record, Store};

/// What a node reports of its own state (its registry entry, `/ready`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// The watch on etcd is established.
    pub connected: bool,
    /// Serving a local copy that etcd has not confirmed since the start.
    pub stale: bool,
    /// The version and etcd revision live on this node.
    pub version: u64,
    /// Its etcd revision.
    pub revision: i64,
    /// The newest version this node refused, and why (it serves `version`).
    pub rejected: Option<Rejected>,
    /// Plugins whose pushed version this node could not take, and why.
    pub plugin_errors: BTreeMap<String, String>,
    /// The last etcd error, while disconnected.
    pub etcd_error: Option<String>,
}

/// A version a node did not apply.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// The version.
    pub version: u64,
    /// Why.
    pub error: String,
}

/// A node's link to the fleet: the store, its overrides, its local copy and
/// its status.
pub struct Link {
    bootstrap: Bootstrap,
    store: ArcSwapOption<Store>,
    local: LocalCopy,
    id: String,
    status: Mutex<Status>,
    /// Requests and 5xx answered when the live version was applied.
    baseline: Mutex<(u64, u64)>,
    changed: tokio::sync::Notify,
}

impl Link {
    /// Connects and reads the live config; when etcd cannot be reached, falls
    /// back to the local copy (and says so in the status). No config in
    /// either place is an error.
    pub async fn open(b: Bootstrap) -> Result<(Arc<Self>, Record), FleetError> {
        let local = LocalCopy::new(&b.state_dir());
        let link = Self {
            id: b.node_id(),
            store: ArcSwapOption::empty(),
            local,
            bootstrap: b,
            status: Mutex::default(),
            baseline: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        };
        let read = async {
            let store = link.connect().await?;
            store.config().await
        };
        let rec = match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
            Ok(Ok((Some(rec), _))) => {
                link.set(|s| s.connected = true);
                rec
            }
            Ok(Ok((None, _))) => {
                return Err(FleetError::NoConfig {
                    prefix: link.bootstrap.etcd.prefix.clone(),
                });
            }
            Ok(Err(e)) => link.fall_back(e)?,
            Err(_) => link.fall_back(FleetError::Etcd("timed out".into()))?,
        };
        link.set(|s| {
            s.version = rec.version;
            s.revision = rec.revision;
        });
        Ok((Arc::new(link), rec))
    }

    fn fall_back(&self, e: FleetError) -> Result<Record, FleetError> {
        match self.local.read() {
            Some(rec) => {
                tracing::warn!(error = %e, copy = %self.local.path().display(), version = rec.version,
                    "etcd unreachable: serving the local copy (stale) until it is back");
                self.set(|s| {
                    s.stale = true;
                    s.etcd_error = Some(e.to_string());
                });
                Ok(rec)
            }
            None => Err(e),
        }
    }

    /// The node's own directory (local copies of the config and the consumers).
    pub fn state_dir(&self) -> PathBuf {
        self.bootstrap.state_dir()
    }

    /// The store, connecting first if the node started without it.
    pub async fn connect(&self) -> Result<Arc<Store>, FleetError> {
        if let Some(s) = self.store.load_full() {
            return Ok(s);
        }
        let s = Arc::new(Store::connect(&self.bootstrap).await?);
        self.store.store(Some(s.clone()));
        Ok(s)
    }

    /// The store, if connected once.
    pub fn store(&self) -> Result<Arc<Store>, FleetError> {
        self.store
            .load_full()
            .ok_or_else(|| FleetError::Etcd("not connected yet".into()))
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.bootstrap.node.labels
    }

    /// The name errors give the config: `etcd:{prefix}/config`.
    pub fn name(&self) -> PathBuf {
        PathBuf::from(format!("etcd:{}/config", self.bootstrap.etcd.prefix))
    }

    /// Where relative paths in the config are read from: the bootstrap
    /// file's directory.
    pub fn anchor(&self) -> &Path {
        &self.bootstrap.base
    }

    /// The text this node parses: the fleet's document with its overrides.
    pub fn render(&self, document: &Value) -> String {
        let mut doc = document.clone();
        if let Some(o) = &self.bootstrap.overrides {
            crate::config::document::merge_patch(&mut doc, o);
        }
        serde_json::to_string(&doc).unwrap_or_default()
    }

    /// The node's status now.
    pub fn status(&self) -> Status {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.lock());
        self.changed.notify_one();
    }

    /// Resolves when the status changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Requests and 5xx answered since the live version was applied, from
    /// the totals now (what a staged rollout's guard compares).
    pub fn since_apply(&self, totals: (u64, u64)) -> (u64, u64) {
        let b = *self.baseline.lock().unwrap_or_else(|p| p.into_inner());
        (totals.0.saturating_sub(b.0), totals.1.saturating_sub(b.1))
    }

    /// `rec` is live (`totals`: requests and 5xx answered so far): status,
    /// and the local copy a restart starts from.
    pub async fn applied(&self, rec: &Record, totals: (u64, u64)) {
        let new_version = self.lock().version != rec.version;
        if new_version {
            *self.baseline.lock().unwrap_or_else(|p| p.into_inner()) = totals;
        }
        self.set(|s| {
            s.version = rec.version;
            s.revision = rec.revision;
            if s.rejected
                .as_ref()
                .is_some_and(|r| r.version <= rec.version)
            {
                s.rejected = None;
            }
        });
        let (local, rec) = (self.local.clone(), rec.clone());
        let written = tokio::task::spawn_blocking(move || local.write(&rec)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot keep the local config copy");
        }
    }

    /// `rec` was refused; the node keeps serving what it serves.
    pub fn rejected(&self, rec: &Record, e: &impl std::fmt::Display) {
        self.set(|s| {
            s.rejected = Some(Rejected {
                version: rec.version,
                error: e.to_string(),
            });
        });
    }

    /// The watch is up (or down, with why).
    pub fn connected(&self, error: Option<&FleetError>) {
        self.set(|s| {
            s.connected = error.is_none();
            s.etcd_error = error.map(ToString::to_string);
            if error.is_none() {
                s.stale = false;
            }
        });
    }

    /// Plugin `name` from etcd could not be taken (`None`: it was).
    pub fn plugin_result(&self, name: &str, error: Option<String>) {
        self.set(|s| match error {
            Some(e) => {
                s.plugin_errors.insert(name.to_string(), e);
            }
            None => {
                s.plugin_errors.remove(name);
            }
        });
    }
}
