//! The in-memory store: moka (TinyLFU admission, LRU eviction) bounded by
//! bytes, each entry expiring when nothing can serve it any more; and the
//! fills in flight, so concurrent misses for one key make one upstream fetch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName};
use tokio::sync::watch;

use super::key::Key;
use super::object::Object;

/// How long an uncacheable answer keeps its key out of coalescing: later
/// misses go upstream at once instead of queueing behind each other.
pub const PASS_FOR: Duration = Duration::from_secs(10);

/// What the store holds under a key.
#[derive(Debug, Clone)]
pub enum Slot {
    /// A stored response.
    Object(Arc<Object>),
    /// The primary key of responses that named `Vary`: the objects are under
    /// variant keys built from these headers.
    Vary(Arc<[HeaderName]>),
    /// The last answer was not storable: don't coalesce for a while.
    Pass,
}

impl Slot {
    fn weight(&self, key: &Key) -> u32 {
        let own = match self {
            Self::Object(o) => o.size(),
            Self::Vary(names) => names.iter().map(|n| n.as_str().len() + 16).sum(),
            Self::Pass => 0,
        };
        u32::try_from(key.size() + own + 64).unwrap_or(u32::MAX)
    }

    fn keep_for(&self) -> Duration {
        match self {
            Self::Object(o) => o.keep_for(),
            // A marker outlives nothing it points to by much; a fresh variant
            // re-inserts it.
            Self::Vary(_) => Duration::from_secs(3600),
            Self::Pass => PASS_FOR,
        }
    }
}

struct Expiry;

impl moka::Expiry<Key, Slot> for Expiry {
    fn expire_after_create(&self, _: &Key, v: &Slot, _: Instant) -> Option<Duration> {
        Some(v.keep_for())
    }

    fn expire_after_update(
        &self,
        _: &Key,
        v: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.keep_for())
    }
}

/// How a fill ended, for the misses waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// Still fetching.
    Pending,
    /// Stored: look again.
    Stored,
    /// Not storable: go upstream, without waiting on each other.
    Uncacheable,
    /// Failed or abandoned (upstream error, client gone): fetch yourselves.
    Aborted,
}

/// The response cache of one gateway, kept across reloads.
pub struct Store {
    cache: moka::sync::Cache<Key, Slot>,
    fills: Mutex<HashMap<Key, watch::Sender<Filled>>>,
    evictions: Arc<AtomicU64>,
    max_bytes: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// The store's totals, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    /// Weighted bytes held.
    pub bytes: u64,
    /// Entries (objects and markers).
    pub entries: u64,
    /// Entries evicted for room.
    pub evictions: u64,
    /// The bound.
    pub max_bytes: u64,
}

/// What a miss does: fetch (and fill) or wait for the fetch in flight.
pub enum Join {
    /// Fetch; finish the fill with the returned [`Fill`].
    Lead(Fill),
    /// Another request is fetching this key.
    Wait(watch::Receiver<Filled>),
}

/// The right, and the duty, to finish one key's fill: dropping it
/// unfinished tells the waiters [`Filled::Aborted`].
pub struct Fill {
    store: Arc<Store>,
    key: Key,
    tx: watch::Sender<Filled>,
    done: bool,
}

impl Fill {
    /// The key being filled.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Ends the fill and wakes the waiters with `how`.
    pub fn finish(mut self, how: Filled) {
        self.end(how);
    }

    fn end(&mut self, how: Filled) {
        if self.done {
            return;
        }
        self.done = true;
        if how == Filled::Uncacheable {
            self.store.cache.insert(self.key.clone(), Slot::Pass);
        }
        let mut fills = self.store.fills.lock().unwrap_or_else(|p| p.into_inner());
        if fills
            .get(&self.key)
            .is_some_and(|tx| tx.same_channel(&self.tx))
        {
            fills.remove(&self.key);
        }
        drop(fills);
        self.tx.send_replace(how);
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.end(Filled::Aborted);
    }
}

impl Store {
    /// A store holding at most `max_bytes` (weighted: bodies, headers, keys).
    pub fn new(max_bytes: u64) -> Arc<Self> {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Key, v: &Slot| v.weight(k))
            .expire_after(Expiry)
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Arc::new(Self {
            cache,
            fills: Mutex::new(HashMap::new()),
            evictions,
            max_bytes,
        })
    }

    /// Its bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// What is under `key`.
    pub fn get(&self, key: &Key) -> Option<Slot> {
        self.cache.get(key)
    }

    /// Stores `object`, the answer to a request with `headers` whose
    /// primary key is `primary`: under it, or, when the object named
    /// `Vary`, under the request's variant key with a marker under `primary`.
    pub fn put(&self, primary: &Key, headers: &HeaderMap, object: Arc<Object>) {
        let vary = object.vary.clone();
        let object = Slot::Object(object);
        if vary.is_empty() {
            self.cache.insert(primary.clone(), object);
            return;
        }
        let variant = primary.variant(&vary, headers);
        self.cache.insert(primary.clone(), Slot::Vary(vary));
        self.cache.insert(variant, object);
    }

    /// Drops what is under `key`.
    pub fn remove(&self, key: &Key) {
        self.cache.invalidate(key);
    }

    /// Joins the fill of `key`, or starts it.
    pub fn join(self: &Arc<Self>, key: &Key) -> Join {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = fills.get(key) {
            return Join::Wait(tx.subscribe());
        }
        let (tx, _) = watch::channel(Filled::Pending);
        fills.insert(key.clone(), tx.clone());
        Join::Lead(Fill {
            store: self.clone(),
            key: key.clone(),
            tx,
            done: false,
        })
    }

    /// Removes every entry `pick` selects; returns how many.
    pub fn purge(&self, pick: impl Fn(&Key) -> bool) -> usize {
        let doomed: Vec<Arc<Key>> = self
            .cache
            .iter()
            .filter(|(k, _)| pick(k))
            .map(|(k, _)| k)
            .collect();
        for k in &doomed {
            self.cache.invalidate(&**k);
        }
        doomed.len()
    }

    /// Its totals, after applying pending evictions (so `bytes` is within the bound).
    pub fn totals(&self) -> Totals {
        self.cache.run_pending_tasks();
        Totals {
            bytes: self.cache.weighted_size(),
            entries: self.cache.entry_count(),
            evictions: self.evictions.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
        }
    }
}

/// Waits for a fill to end, at most `timeout`; `Aborted` past it.
pub async fn wait(mut rx: watch::Receiver<Filled>, timeout: Duration) -> Filled {
    let ended = rx.wait_for(|f| *f != Filled::Pending);
    match tokio::time::timeout(timeout, ended).await {
        Ok(Ok(f)) => *f,
        _ => Filled::Aborted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::object::storable;
    use crate::config::CachePolicy;
    use bytes::Bytes;
    use http::StatusCode;

    fn key(path: &str) -> Key {
        Key {
            route: "r".into(),
            path: path.into(),
            rest: "".into(),
            variant: None,
        }
    }

    fn object(body: usize) -> Object {
        let mut h = HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, "max-age=60".parse().unwrap());
        let f = storable(StatusCode::OK, &h, false, &CachePolicy::default()).unwrap();
        Object::new(
            StatusCode::OK,
            h,
            Bytes::from(vec![b'x'; body]),
            f,
            Instant::now(),
        )
    }

    #[test]
    fn the_bound_holds_under_a_stream_of_distinct_keys() {
        let store = Store::new(200_000);
        for i in 0..2_000 {
            store.put(
                &key(&format!("/{i}")),
                &HeaderMap::new(),
                Arc::new(object(1_000)),
            );
        }
        let t = store.totals();
        assert!(t.bytes <= 200_000, "{t:?}");
        assert!(t.entries < 2_000 && t.entries > 50, "{t:?}");
        assert!(t.evictions > 0, "{t:?}");
    }

    #[test]
    fn one_fill_per_key_and_waiters_learn_how_it_ended() {
        let store = Store::new(1 << 20);
        let Join::Lead(fill) = store.join(&key("/a")) else {
            panic!("first miss must lead")
        };
        let Join::Wait(rx) = store.join(&key("/a")) else {
            panic!("second miss must wait")
        };
        assert!(matches!(store.join(&key("/b")), Join::Lead(_)));
        fill.finish(Filled::Uncacheable);
        assert_eq!(*rx.borrow(), Filled::Uncacheable);
        assert!(matches!(store.get(&key("/a")), Some(Slot::Pass)));
        // The fill is over: the next miss leads again.
        let Join::Lead(again) = store.join(&key("/a")) else {
            panic!("after the fill, a miss leads")
        };
        let Join::Wait(rx) = store.join(&key("/a")) else {
            panic!("waits")
        };
        drop(again);
        assert_eq!(*rx.borrow(), Filled::Aborted);
    }

    #[test]
    fn purge_removes_what_the_predicate_picks() {
        let store = Store::new(1 << 20);
        for p in ["/a/1", "/a/2", "/b/1"] {
            store.put(&key(p), &HeaderMap::new(), Arc::new(object(10)));
        }
        assert_eq!(store.purge(|k| k.path.starts_with("/a/")), 2);
        assert!(store.get(&key("/a/1")).is_none());
        assert!(store.get(&key("/b/1")).is_some());
    }
}
