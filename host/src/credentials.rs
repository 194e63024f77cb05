//! Consumers' API keys, held by the host and looked up by the SHA-256 of the
//! key a client presents. Two sources feed one lookup:
//! - the consumer store (admin API writes on a single gateway): an
//!   append-only journal in a file, so that 100,000 keys are neither a
//!   100,000-entry config document nor a rewrite of one per key;
//! - the config's `consumers:` (hand-written, or a fleet's document),
//!   rebuilt with each snapshot.
//!
//! Plugins reach them through the `host.credential` import, so the keys are
//! not copied into any plugin's config. A lookup stamps the key's
//! `last_used_at` in memory (one atomic store); the stamps reach the journal
//! in one batch per `consumer_store.flush_interval`, not one write per request.

mod journal;
mod record;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

pub use record::{KeyRecord, Record, instant_ms};
pub use store::{ConsumerView, KeyView, StoreError, parse_key};

use journal::Journal;
use store::Store;

/// One API key: who it names and what it grants.
#[derive(Debug)]
pub struct Credential {
    /// The consumer the key belongs to.
    pub consumer: Arc<str>,
    /// The key's name, safe to log.
    pub id: Arc<str>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Rate-limit tier.
    pub tier: Option<String>,
    /// When the key stops being accepted, as written (RFC 3339).
    pub expires: Option<String>,
    /// The same instant, milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
    /// A disabled key is refused.
    pub enabled: bool,
    /// When it was made, as written.
    pub created: Option<String>,
    /// Milliseconds since the Unix epoch of the last lookup that found it (0: never).
    last_used_ms: AtomicU64,
    /// `last_used_ms` as the journal last recorded it.
    flushed_ms: AtomicU64,
}

impl Credential {
    /// A credential from its record (`hash` already checked).
    fn new(k: &KeyRecord, expires_ms: Option<u64>) -> Self {
        Self {
            consumer: k.consumer.as_str().into(),
            id: k.id.as_str().into(),
            scopes: k.scopes.clone(),
            tier: k.tier.clone(),
            expires: k.expires.clone(),
            expires_ms,
            enabled: k.enabled,
            created: k.created.clone(),
            last_used_ms: AtomicU64::new(0),
            flushed_ms: AtomicU64::new(0),
        }
    }

    /// The last time a lookup found this key.
    pub fn last_used(&self) -> Option<SystemTime> {
        match self.last_used_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        }
    }
}

/// Keys by their SHA-256.
type ByHash = HashMap<[u8; 32], Arc<Credential>>;

/// The process's credentials (owned by the plugin runtime, which hands them
/// to plugins; written by the admin API and by each snapshot).
#[derive(Default)]
pub struct Credentials {
    /// From the config's `consumers:`, replaced whole with each snapshot.
    config: ArcSwap<ByHash>,
    /// The config's consumers and the hashes of their keys, for the admin API.
    config_consumers: ArcSwap<BTreeMap<String, Vec<[u8; 32]>>>,
    /// The consumer store. A read lock is held only for a map probe.
    store: RwLock<Store>,
    /// The store's file, once opened; its lock also orders writers.
    journal: Mutex<Option<Journal>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Credentials {
    /// The key whose SHA-256 is `digest`, stamped as used now. The store is
    /// asked first: a key there was written after the config's.
    pub fn lookup(&self, digest: &[u8; 32]) -> Option<Arc<Credential>> {
        let found = read(&self.store)
            .key(digest)
            .or_else(|| self.config.load().get(digest).cloned())?;
        found.last_used_ms.store(now_ms(), Ordering::Relaxed);
        Some(found)
    }

    /// Replaces the config's keys (from a snapshot going live). Stamps of
    /// keys that stay are kept.
    pub fn use_config(&self, consumers: &[crate::config::ConsumerConfig]) {
        let old = self.config.load();
        let mut next = ByHash::with_capacity(consumers.iter().map(|c| c.keys.len()).sum());
        for c in consumers {
            for k in &c.keys {
                let cred = Credential::new(&k.record, k.expires_ms);
                if let Some(prev) = old.get(&k.hash) {
                    let used = prev.last_used_ms.load(Ordering::Relaxed);
                    cred.last_used_ms.store(used, Ordering::Relaxed);
                }
                next.insert(k.hash, Arc::new(cred));
            }
        }
        self.config.store(Arc::new(next));
        let names = consumers
            .iter()
            .map(|c| (c.name.clone(), c.keys.iter().map(|k| k.hash).collect()))
            .collect();
        self.config_consumers.store(Arc::new(names));
    }

    /// Opens (or creates on first write) the store's journal at `path` and
    /// replays it. A torn last line (a crash mid-write) is dropped; any other
    /// bad line is an error naming it, and nothing is served from a store
    /// that cannot be read.
    pub fn open(&self, path: &Path) -> Result<(), StoreError> {
        let (journal, store) = Journal::open(path)?;
        *write(&self.store) = store;
        *lock(&self.journal) = Some(journal);
        Ok(())
    }

    /// The journal's path, when a store is open.
    pub fn path(&self) -> Option<PathBuf> {
        lock(&self.journal).as_ref().map(|j| j.path().to_path_buf())
    }

    /// Applies `records` as one write: each is checked against the store
    /// and the ones before it, then all are appended to the journal (one
    /// `fsync`), then applied. Nothing changes when any is refused. Blocks on
    /// the file: call it off the runtime's workers.
    pub fn apply(&self, records: Vec<Record>) -> Result<(), StoreError> {
        let mut journal = lock(&self.journal);
        let Some(journal) = journal.as_mut() else {
            return Err(StoreError::Closed);
        };
        read(&self.store).check_all(&records)?;
        journal.append(&records)?;
        let mut store = write(&self.store);
        for r in records {
            store.apply(r);
        }
        let live = store.len();
        drop(store);
        if journal.wants_compaction(live) {
            let snapshot = read(&self.store).records();
            journal.compact(&snapshot)?;
        }
        Ok(())
    }

    /// Checks `records` as [`Self::apply`] would, writing nothing (a fleet
    /// node checks a write before it goes to etcd).
    pub fn check(&self, records: &[Record]) -> Result<(), StoreError> {
        read(&self.store).check_all(records)
    }

    /// Applies records the fleet's store (etcd) already holds: no checks, a
    /// key seen again replaces itself. Appended to the local copy. Blocks on
    /// the file.
    pub fn apply_replicated(&self, records: Vec<Record>) -> Result<(), StoreError> {
        let mut journal = lock(&self.journal);
        if let Some(j) = journal.as_mut() {
            j.append(&records)?;
        }
        let mut store = write(&self.store);
        for r in records {
            store.apply(r);
        }
        let live = store.len();
        drop(store);
        if let Some(j) = journal.as_mut()
            && j.wants_compaction(live)
        {
            let snapshot = read(&self.store).records();
            j.compact(&snapshot)?;
        }
        Ok(())
    }

    /// The record of `consumer`'s key `id`, in the store.
    pub fn key_record(&self, consumer: &str, id: &str) -> Option<KeyRecord> {
        let store = read(&self.store);
        let (hash, c) = store.find(consumer, id)?;
        Some(c.record(&hash))
    }

    /// Replaces the whole store with `records` (a full read of etcd), keeping
    /// the stamps of keys that stay, and rewrites the local copy. Blocks on
    /// the file.
    pub fn replace(&self, records: Vec<Record>) -> Result<(), StoreError> {
        let mut next = Store::default();
        for r in records {
            next.apply(r);
        }
        let mut journal = lock(&self.journal);
        let mut store = write(&self.store);
        next.carry_stamps(&store);
        if let Some(j) = journal.as_mut() {
            j.compact(&next.records())?;
        }
        *store = next;
        Ok(())
    }

    /// Writes the `last_used_at` stamps taken since the last flush to the
    /// journal, in one append. Blocks on the file.
    pub fn flush_used(&self) -> Result<usize, StoreError> {
        let mut journal = lock(&self.journal);
        let Some(journal) = journal.as_mut() else {
            return Ok(0);
        };
        let used = read(&self.store).unflushed();
        if used.is_empty() {
            return Ok(0);
        }
        let records: Vec<Record> = used.iter().map(|(r, _)| r.clone()).collect();
        journal.append(&records)?;
        for (r, cred) in &used {
            if let Record::Used { at, .. } = r {
                cred.flushed_ms.store(*at, Ordering::Relaxed);
            }
        }
        let live = read(&self.store).len();
        if journal.wants_compaction(live) {
            let snapshot = read(&self.store).records();
            journal.compact(&snapshot)?;
        }
        Ok(used.len())
    }

    /// One consumer as the admin API shows it (store first, then config).
    pub fn consumer(&self, name: &str) -> Option<ConsumerView> {
        if let Some(c) = read(&self.store).consumer(name) {
            return Some(c);
        }
        let names = self.config_consumers.load();
        let hashes = names.get(name)?;
        let config = self.config.load();
        let keys = hashes
            .iter()
            .filter_map(|h| config.get(h))
            .map(|c| KeyView::of(c))
            .collect();
        Some(ConsumerView {
            name: name.to_string(),
            source: "config",
            created: None,
            keys,
        })
    }

    /// Whether `name` is a consumer of the config (not of the store).
    pub fn in_config(&self, name: &str) -> bool {
        self.config_consumers.load().contains_key(name)
    }

    /// Consumers in name order after `after`, at most `limit`, from both sources.
    pub fn consumers(&self, after: Option<&str>, limit: usize) -> Vec<ConsumerView> {
        use std::ops::Bound;
        let mut names: Vec<String> = read(&self.store).names(after, limit);
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        let config = self.config_consumers.load();
        names.extend(
            config
                .range((start, Bound::Unbounded))
                .take(limit)
                .map(|(n, _)| n.clone()),
        );
        names.sort();
        names.dedup();
        names.truncate(limit);
        names.iter().filter_map(|n| self.consumer(n)).collect()
    }

    /// Keys in the store and in the config.
    pub fn key_count(&self) -> (usize, usize) {
        (read(&self.store).key_count(), self.config.load().len())
    }
}

/// Flushes `last_used_at` stamps every `interval` until `stop` fires, and
/// once more then.
pub async fn flush_every(
    credentials: Arc<Credentials>,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let c = credentials.clone();
        match tokio::task::spawn_blocking(move || c.flush_used()).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(keys = n, "last_used_at flushed"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot write last_used_at to the consumer store")
            }
            Err(e) => tracing::warn!(error = %e, "last_used_at flush failed"),
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
