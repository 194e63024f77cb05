//! Tokens that verified, remembered per instance so that a client reusing its
//! token (the usual case: a token lives for minutes or hours) does not pay for
//! the signature and JSON parsing on every request. Envoy's `jwt_authn` does
//! the same (`jwt_cache_config`, 100 entries by default).
//!
//! A hit re-checks the time claims against the clock, with the same leeway, so
//! an entry never outlives its token; anything a hit cannot decide goes to the
//! full verification, which gives the exact error. Entries are keyed by the
//! whole token (no hash that could collide), and the cache is emptied when the
//! JWKS file's keys change, so a removed key stops verifying at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::keys::Key;

/// What a verified token yields, ready to apply.
pub type Attributes = Vec<(&'static str, String)>;

/// A bounded map from token to its attributes.
pub struct TokenCache {
    capacity: usize,
    leeway: u64,
    check_nbf: bool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The JWKS file's key set the entries were verified against.
    keys: Option<Arc<Vec<Key>>>,
    entries: HashMap<String, Entry>,
}

struct Entry {
    attributes: Attributes,
    exp: Option<f64>,
    nbf: Option<f64>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize, leeway: u64, check_nbf: bool) -> Self {
        Self {
            capacity,
            leeway,
            check_nbf,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `apply` on the attributes of `token` when it verified before, is
    /// still within its time claims at `now` (seconds) and `file_keys` are the
    /// keys it was verified with. False when the token must be verified.
    pub fn with_hit(
        &self,
        token: &str,
        now: u64,
        file_keys: Option<&Arc<Vec<Key>>>,
        apply: impl FnOnce(&Attributes),
    ) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let mut inner = self.lock();
        if !same_keys(inner.keys.as_ref(), file_keys) {
            inner.entries.clear();
            inner.keys = file_keys.cloned();
            return false;
        }
        let Some(e) = inner.entries.get(token) else {
            return false;
        };
        if !self.in_time(e, now) {
            inner.entries.remove(token);
            return false;
        }
        apply(&e.attributes);
        true
    }

    /// Remembers a token that just verified with `claims`.
    pub fn insert(
        &self,
        token: &str,
        claims: &Map<String, Value>,
        attributes: Attributes,
        now: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let entry = Entry {
            attributes,
            exp: claims.get("exp").and_then(Value::as_f64),
            nbf: claims.get("nbf").and_then(Value::as_f64),
        };
        let mut inner = self.lock();
        if inner.entries.len() >= self.capacity {
            inner.entries.retain(|_, e| self.in_time(e, now));
        }
        if inner.entries.len() >= self.capacity
            && let Some(victim) = inner.entries.keys().next().cloned()
        {
            inner.entries.remove(&victim);
        }
        inner.entries.insert(token.to_string(), entry);
    }

    /// The checks a hit repeats: strictly inside what the full verification
    /// accepts, so a hit never admits a token that verification would refuse.
    fn in_time(&self, e: &Entry, now: u64) -> bool {
        let now = now as f64;
        let leeway = self.leeway as f64;
        let exp_ok = e.exp.is_none_or(|exp| exp > now - leeway);
        let nbf_ok = !self.check_nbf || e.nbf.is_none_or(|nbf| nbf < now + leeway);
        exp_ok && nbf_ok
    }

    /// Entries held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

fn same_keys(a: Option<&Arc<Vec<Key>>>, b: Option<&Arc<Vec<Key>>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).expect("claims")
    }

    fn hit(c: &TokenCache, token: &str, now: u64) -> Option<Attributes> {
        let mut out = None;
        c.with_hit(token, now, None, |a| out = Some(a.clone()));
        out
    }

    #[test]
    fn hits_only_within_the_time_claims() {
        let c = TokenCache::new(10, 60, true);
        let attrs = vec![("consumer", "alice".to_string())];
        c.insert(
            "t1",
            &claims(r#"{"exp":1000,"nbf":500}"#),
            attrs.clone(),
            600,
        );
        assert_eq!(hit(&c, "t1", 600), Some(attrs.clone()));
        assert_eq!(hit(&c, "t1", 1059), Some(attrs));
        // Past exp + leeway: a miss, and the entry is gone.
        assert_eq!(hit(&c, "t1", 1060), None);
        assert_eq!(c.len(), 0);
        c.insert("t2", &claims(r#"{"nbf":500}"#), vec![], 600);
        // Before nbf - leeway: a miss (verification gives the error).
        assert_eq!(hit(&c, "t2", 440), None);
        assert_eq!(hit(&c, "other", 600), None);
    }

    #[test]
    fn stays_within_capacity_dropping_expired_entries_first() {
        let c = TokenCache::new(2, 0, true);
        c.insert("old", &claims(r#"{"exp":100}"#), vec![], 50);
        c.insert("a", &claims(r#"{"exp":1000}"#), vec![], 50);
        c.insert("b", &claims(r#"{"exp":1000}"#), vec![], 200);
        assert_eq!(c.len(), 2);
        assert!(hit(&c, "a", 200).is_some() && hit(&c, "b", 200).is_some());
        c.insert("c", &claims(r#"{"exp":1000}"#), vec![], 200);
        assert_eq!(c.len(), 2);
        assert!(hit(&c, "c", 200).is_some());
    }

    #[test]
    fn zero_capacity_disables_it() {
        let c = TokenCache::new(0, 0, true);
        c.insert("t", &claims(r#"{"exp":1000}"#), vec![], 10);
        assert_eq!(hit(&c, "t", 10), None);
    }

    #[test]
    fn new_file_keys_empty_the_cache() {
        let c = TokenCache::new(10, 0, true);
        let v1 = Arc::new(Vec::new());
        let v2 = Arc::new(Vec::new());
        // The first lookup adopts the key set.
        assert!(!c.with_hit("t", 10, Some(&v1), |_| {}));
        c.insert("t", &claims(r#"{"exp":1000}"#), vec![], 10);
        assert!(c.with_hit("t", 10, Some(&v1), |_| {}));
        assert!(!c.with_hit("t", 10, Some(&v2), |_| {}));
        assert_eq!(c.len(), 0);
    }
}
