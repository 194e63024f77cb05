//! The consumer store in memory: consumers, their keys by hash, and the
//! checks every change passes before the journal records it.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::record::{KeyRecord, Record, digest, instant_ms};
use super::{ByHash, Credential};

/// Why a change to the store was refused, or the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No store is open (a fleet node keeps consumers in the fleet's document).
    #[error("no consumer store is open")]
    Closed,
    /// The journal could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The journal.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of the journal is not a record (and not a torn last line).
    #[error("{}:{line}: {message}", path.display())]
    Journal {
        /// The journal.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The consumer exists.
    #[error("consumer `{0}` exists")]
    ConsumerExists(String),
    /// No such consumer.
    #[error("no consumer `{0}`")]
    NoConsumer(String),
    /// No such key.
    #[error("consumer `{consumer}` has no key `{id}`")]
    NoKey {
        /// The consumer.
        consumer: String,
        /// The key id.
        id: String,
    },
    /// The consumer has a key with that id.
    #[error("consumer `{consumer}` has a key `{id}` already")]
    KeyExists {
        /// The consumer.
        consumer: String,
        /// The key id.
        id: String,
    },
    /// Another key has the same hash: two keys would be one secret.
    #[error("the hash of key `{id}` is already the hash of another key")]
    DuplicateHash {
        /// The refused key's id.
        id: String,
    },
    /// A field is malformed.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`hash`, `expires`, `consumer`, `id`).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// One record of a batch was refused (nothing was written).
    #[error("record {}: {source}", index + 1)]
    InRecord {
        /// 0-based index in the batch.
        index: usize,
        /// Why.
        source: Box<StoreError>,
    },
}

/// One consumer of the store.
#[derive(Debug, Default)]
struct Entry {
    created: Option<String>,
    /// Hashes of its keys, in the order they were made.
    keys: Vec<[u8; 32]>,
}

/// Consumers and keys.
#[derive(Debug, Default)]
pub struct Store {
    consumers: BTreeMap<String, Entry>,
    by_hash: ByHash,
}

/// A key as the admin API lists it: never its hash.
#[derive(Debug, Serialize)]
pub struct KeyView {
    /// Its id.
    pub id: String,
    /// Whether it is accepted.
    pub enabled: bool,
    /// When it was made.
    pub created: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Rate-limit tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// When it stops being accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The last request that presented it (RFC 3339), if any.
    pub last_used_at: Option<String>,
}

impl KeyView {
    /// The view of `c`.
    pub fn of(c: &Credential) -> Self {
        Self {
            id: c.id.to_string(),
            enabled: c.enabled,
            created: c.created.clone(),
            scopes: c.scopes.clone(),
            tier: c.tier.clone(),
            expires: c.expires.clone(),
            last_used_at: c.last_used().map(crate::telemetry::access_log::rfc3339),
        }
    }
}

/// A consumer as the admin API lists it.
#[derive(Debug, Serialize)]
pub struct ConsumerView {
    /// Its name.
    pub name: String,
    /// `store` (written by the admin API) or `config` (the config's `consumers:`).
    pub source: &'static str,
    /// When it was made (store consumers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Its keys.
    pub keys: Vec<KeyView>,
}

/// A name the admin API can address and a header can carry.
fn check_name(field: &'static str, name: &str) -> Result<(), StoreError> {
    let bad = name.is_empty()
        || name.len() > 256
        || name.contains('/')
        || name.bytes().any(|b| b.is_ascii_control())
        || name.trim() != name;
    if bad {
        return Err(StoreError::Invalid {
            field,
            message: format!(
                "{name:?}: 1 to 256 characters, no `/`, control characters or surrounding spaces"
            ),
        });
    }
    Ok(())
}

/// The hash and expiry of a key record, checked.
pub fn parse_key(k: &KeyRecord) -> Result<([u8; 32], Option<u64>), StoreError> {
    check_name("consumer", &k.consumer)?;
    check_name("id", &k.id)?;
    let hash = digest(&k.hash).ok_or_else(|| StoreError::Invalid {
        field: "hash",
        message: "expected sha256:<64 hex digits>".into(),
    })?;
    let expires = k
        .expires
        .as_deref()
        .map(|e| {
            instant_ms(e).ok_or_else(|| StoreError::Invalid {
                field: "expires",
                message: format!("{e:?} is not an RFC 3339 time like 2027-01-31T00:00:00Z"),
            })
        })
        .transpose()?;
    Ok((hash, expires))
}

/// What earlier records of the same batch add.
#[derive(Default)]
struct Pending {
    consumers: HashSet<String>,
    hashes: HashSet<[u8; 32]>,
    ids: HashSet<(String, String)>,
}

impl Store {
    /// The key whose hash is `digest`.
    pub fn key(&self, digest: &[u8; 32]) -> Option<Arc<Credential>> {
        self.by_hash.get(digest).cloned()
    }

    pub(super) fn find(&self, consumer: &str, id: &str) -> Option<([u8; 32], &Arc<Credential>)> {
        let entry = self.consumers.get(consumer)?;
        entry.keys.iter().find_map(|h| {
            let c = self.by_hash.get(h)?;
            (&*c.id == id).then_some((*h, c))
        })
    }

    /// Checks every record of a batch, in order, as if the earlier ones were applied.
    pub fn check_all(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut pending = Pending::default();
        for (index, r) in records.iter().enumerate() {
            self.check(r, &mut pending).map_err(|e| {
                if records.len() == 1 {
                    e
                } else {
                    StoreError::InRecord {
                        index,
                        source: Box::new(e),
                    }
                }
            })?;
        }
        Ok(())
    }

    fn check(&self, r: &Record, pending: &mut Pending) -> Result<(), StoreError> {
        let exists =
            |name: &str| self.consumers.contains_key(name) || pending.consumers.contains(name);
        match r {
            Record::Consumer { name, .. } => {
                check_name("name", name)?;
                if exists(name) {
                    return Err(StoreError::ConsumerExists(name.clone()));
                }
                pending.consumers.insert(name.clone());
            }
            Record::DeleteConsumer { name } => {
                if !self.consumers.contains_key(name) {
                    return Err(StoreError::NoConsumer(name.clone()));
                }
            }
            Record::Key(k) => {
                let (hash, _) = parse_key(k)?;
                let pair = (k.consumer.clone(), k.id.clone());
                if self.find(&k.consumer, &k.id).is_some() || pending.ids.contains(&pair) {
                    return Err(StoreError::KeyExists {
                        consumer: k.consumer.clone(),
                        id: k.id.clone(),
                    });
                }
                if self.by_hash.contains_key(&hash) || !pending.hashes.insert(hash) {
                    return Err(StoreError::DuplicateHash { id: k.id.clone() });
                }
                pending.ids.insert(pair);
                pending.consumers.insert(k.consumer.clone());
            }
            Record::Disable { consumer, id } | Record::DeleteKey { consumer, id } => {
                if !self.consumers.contains_key(consumer) {
                    return Err(StoreError::NoConsumer(consumer.clone()));
                }
                if self.find(consumer, id).is_none() {
                    return Err(StoreError::NoKey {
                        consumer: consumer.clone(),
                        id: id.clone(),
                    });
                }
            }
            Record::Used { .. } => {}
        }
        Ok(())
    }

    /// Applies a checked record (an unchecked one that does not fit is ignored).
    pub fn apply(&mut self, r: Record) {
        match r {
            Record::Consumer { name, created } => {
                self.consumers.entry(name).or_insert(Entry {
                    created,
                    keys: Vec::new(),
                });
            }
            Record::DeleteConsumer { name } => {
                if let Some(e) = self.consumers.remove(&name) {
                    for h in e.keys {
                        self.by_hash.remove(&h);
                    }
                }
            }
            Record::Key(k) => {
                let Ok((hash, expires)) = parse_key(&k) else {
                    return;
                };
                // A key written again (a replica's upsert: disabled, or
                // the same write seen twice) replaces itself.
                let old = self.find(&k.consumer, &k.id).map(|(h, c)| (h, c.clone()));
                if let Some(other) = self.by_hash.get(&hash)
                    && old.as_ref().is_none_or(|(h, _)| *h != hash)
                {
                    tracing::warn!(consumer = %k.consumer, id = %k.id, other = %other.id, "ignoring a key whose hash another key has");
                    return;
                }
                if let Some((old_hash, _)) = &old {
                    self.by_hash.remove(old_hash);
                    if let Some(e) = self.consumers.get_mut(&k.consumer) {
                        e.keys.retain(|h| h != old_hash);
                    }
                }
                let entry = self
                    .consumers
                    .entry(k.consumer.clone())
                    .or_insert_with(|| Entry {
                        created: k.created.clone(),
                        keys: Vec::new(),
                    });
                entry.keys.push(hash);
                let next = Credential::new(&k, expires);
                if let Some((old_hash, c)) = &old
                    && *old_hash == hash
                {
                    next.carry(c);
                }
                self.by_hash.insert(hash, Arc::new(next));
            }
            Record::Disable { consumer, id } => {
                let Some((hash, old)) = self.find(&consumer, &id) else {
                    return;
                };
                let mut k = old.record(&hash);
                k.enabled = false;
                let next = Credential::new(&k, old.expires_ms);
                next.carry(old);
                self.by_hash.insert(hash, Arc::new(next));
            }
            Record::DeleteKey { consumer, id } => {
                let Some((hash, _)) = self.find(&consumer, &id) else {
                    return;
                };
                self.by_hash.remove(&hash);
                if let Some(e) = self.consumers.get_mut(&consumer) {
                    e.keys.retain(|h| *h != hash);
                }
            }
            Record::Used { consumer, id, at } => {
                if let Some((_, c)) = self.find(&consumer, &id) {
                    c.last_used_ms.fetch_max(at, Ordering::Relaxed);
                    c.flushed_ms.fetch_max(at, Ordering::Relaxed);
                }
            }
        }
    }

    /// Takes over the `last_used` stamps of `old`'s keys that are here too.
    pub fn carry_stamps(&self, old: &Store) {
        for (h, c) in &self.by_hash {
            if let Some(o) = old.by_hash.get(h) {
                c.carry(o);
            }
        }
    }

    /// Consumers and keys: what a compacted journal holds.
    pub fn len(&self) -> usize {
        self.consumers.len() + self.by_hash.len()
    }

    /// Keys in the store.
    pub fn key_count(&self) -> usize {
        self.by_hash.len()
    }

    /// The records that rebuild this store (a compacted journal).
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.len());
        for (name, e) in &self.consumers {
            out.push(Record::Consumer {
                name: name.clone(),
                created: e.created.clone(),
            });
            for h in &e.keys {
                let Some(c) = self.by_hash.get(h) else {
                    continue;
                };
                out.push(Record::Key(c.record(h)));
                let at = c.last_used_ms.load(Ordering::Relaxed);
                if at > 0 {
                    out.push(Record::Used {
                        consumer: name.clone(),
                        id: c.id.to_string(),
                        at,
                    });
                }
            }
        }
        out
    }

    /// A `used` record for each key looked up since its last flush.
    pub fn unflushed(&self) -> Vec<(Record, Arc<Credential>)> {
        self.by_hash
            .values()
            .filter_map(|c| {
                let at = c.last_used_ms.load(Ordering::Relaxed);
                (at > c.flushed_ms.load(Ordering::Relaxed)).then(|| {
                    let r = Record::Used {
                        consumer: c.consumer.to_string(),
                        id: c.id.to_string(),
                        at,
                    };
                    (r, c.clone())
                })
            })
            .collect()
    }

    /// One consumer's view.
    pub fn consumer(&self, name: &str) -> Option<ConsumerView> {
        let e = self.consumers.get(name)?;
        let keys = e
            .keys
            .iter()
            .filter_map(|h| self.by_hash.get(h))
            .map(|c| KeyView::of(c))
            .collect();
        Some(ConsumerView {
            name: name.to_string(),
            source: "store",
            created: e.created.clone(),
            keys,
        })
    }

    /// Up to `limit` consumer names after `after`, in order.
    pub fn names(&self, after: Option<&str>, limit: usize) -> Vec<String> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        self.consumers
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

impl Credential {
    /// The record that makes this key again.
    pub(super) fn record(&self, hash: &[u8; 32]) -> KeyRecord {
        KeyRecord {
            consumer: self.consumer.to_string(),
            id: self.id.to_string(),
            hash: format!("sha256:{}", hex::encode(hash)),
            scopes: self.scopes.clone(),
            tier: self.tier.clone(),
            expires: self.expires.clone(),
            enabled: self.enabled,
            created: self.created.clone(),
        }
    }

    /// Takes over `old`'s stamps (a key replaced by an edit of itself).
    fn carry(&self, old: &Credential) {
        let used = old.last_used_ms.load(Ordering::Relaxed);
        self.last_used_ms.store(used, Ordering::Relaxed);
        let flushed = old.flushed_ms.load(Ordering::Relaxed);
        self.flushed_ms.store(flushed, Ordering::Relaxed);
    }
}
