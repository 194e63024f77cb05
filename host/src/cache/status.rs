//! What the cache did for one request: the `Cache-Status` response header
//! (RFC 9211), the access log's `cache` field and the route's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

/// The detail of a stale answer standing in for a failed upstream.
pub const STALE_IF_ERROR: &str = "stale-if-error";
/// The detail of a stale answer served while it is refreshed.
pub const STALE_WHILE_REVALIDATE: &str = "stale-while-revalidate";

/// The cache's part in one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache, fresh.
    Hit,
    /// Served from the cache, stale (`stale-while-revalidate`, `stale-if-error`).
    Stale,
    /// A stored response the upstream confirmed with `304`.
    Revalidated,
    /// Waited on another request's fetch and served what it stored.
    Coalesced,
    /// Fetched from the upstream.
    Miss,
    /// Not looked up (method, upgrade, range, the client's `no-store`).
    Bypass,
}

impl Outcome {
    /// Its name in the access log and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Revalidated => "revalidated",
            Self::Coalesced => "coalesced",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// Everything `Cache-Status` says of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// What happened.
    pub outcome: Outcome,
    /// Seconds of freshness left (negative: stale by that much).
    pub ttl: Option<i64>,
    /// The upstream's status, when the request went forward.
    pub fwd_status: Option<u16>,
    /// The response was stored.
    pub stored: bool,
    /// Why (not stored, bypassed, served stale).
    pub detail: Option<&'static str>,
}

impl Status {
    /// A status with nothing but `outcome`.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            ttl: None,
            fwd_status: None,
            stored: false,
            detail: None,
        }
    }

    /// With a detail.
    pub fn because(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The `Cache-Status` entry of this cache.
    pub fn header(&self) -> HeaderValue {
        let mut s = String::from("gatehouse; ");
        s.push_str(match self.outcome {
            // Served stale after the upstream failed: it was asked first.
            Outcome::Stale if self.detail == Some(STALE_IF_ERROR) => "fwd=stale",
            Outcome::Hit | Outcome::Stale => "hit",
            Outcome::Revalidated => "fwd=stale",
            Outcome::Coalesced => "fwd=miss; collapsed",
            Outcome::Miss => "fwd=miss",
            Outcome::Bypass => "fwd=bypass",
        });
        if let Some(code) = self.fwd_status {
            s.push_str(&format!("; fwd-status={code}"));
        }
        if let Some(ttl) = self.ttl {
            s.push_str(&format!("; ttl={ttl}"));
        }
        if self.stored {
            s.push_str("; stored");
        }
        if let Some(d) = self.detail {
            s.push_str(&format!("; detail={d}"));
        }
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("gatehouse"))
    }
}

/// One cached route's counters.
#[derive(Debug, Default)]
pub struct CacheMetrics {
    /// Answers by [`Outcome`], in its declaration order.
    pub outcomes: [AtomicU64; 6],
    /// Responses stored.
    pub stored: AtomicU64,
}

impl CacheMetrics {
    /// Counts one answer.
    pub fn record(&self, s: &Status) {
        self.outcomes[s.outcome as usize].fetch_add(1, Ordering::Relaxed);
        if s.stored {
            self.stored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts by outcome name.
    pub fn by_outcome(&self) -> [(&'static str, u64); 6] {
        use Outcome::*;
        [Hit, Stale, Revalidated, Coalesced, Miss, Bypass].map(|o| {
            (
                o.as_str(),
                self.outcomes[o as usize].load(Ordering::Relaxed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_follows_rfc_9211() {
        let mut s = Status::new(Outcome::Hit);
        s.ttl = Some(42);
        assert_eq!(s.header(), "gatehouse; hit; ttl=42");
        let mut s = Status::new(Outcome::Miss);
        s.fwd_status = Some(200);
        s.stored = true;
        assert_eq!(s.header(), "gatehouse; fwd=miss; fwd-status=200; stored");
        let s = Status::new(Outcome::Bypass).because("method");
        assert_eq!(s.header(), "gatehouse; fwd=bypass; detail=method");
        let mut s = Status::new(Outcome::Stale).because("stale-if-error");
        s.ttl = Some(-3);
        s.fwd_status = Some(503);
        assert_eq!(
            s.header(),
            "gatehouse; fwd=stale; fwd-status=503; ttl=-3; detail=stale-if-error"
        );
    }
}
