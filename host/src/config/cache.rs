//! The validated `cache:` blocks: the store's bound (top level) and each
//! route's policy (the route's block over the top-level defaults).

use std::time::Duration;

use http::{HeaderName, StatusCode};

/// The response cache's store, shared by every cached route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStoreConfig {
    /// Bytes of cached objects (bodies, headers and keys) kept in memory.
    /// Default 64 MiB.
    pub max_bytes: u64,
}

impl Default for CacheStoreConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
        }
    }
}

/// What goes into a cache key beyond method, host, path and query: the
/// operator's word that responses differ by consumer, tenant or header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaryBy {
    /// `attr.<name>`: a plugin attribute (`consumer`, `tenant`, ...).
    Attribute(String),
    /// `header.<name>`: a request header, as the upstream would get it.
    Header(HeaderName),
}

/// How one route caches: RFC 9111 as a shared cache, with the defaults
/// below where the upstream says nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Freshness when the upstream gives none (`default_ttl`), for the
    /// statuses cacheable by default. `None`: only what the upstream marks
    /// cacheable is stored.
    pub default_ttl: Option<Duration>,
    /// Freshness by status when the upstream gives none (`status_ttl`);
    /// takes precedence over `default_ttl`.
    pub status_ttl: Vec<(StatusCode, Duration)>,
    /// Largest body stored; larger responses stream through uncached.
    /// Default 1 MiB.
    pub max_object_bytes: usize,
    /// Key parts chosen by the operator (`vary_by`).
    pub vary_by: Vec<VaryBy>,
    /// Query parameters left out of the key (`ignore_query`), e.g. `utm_source`.
    pub ignore_query: Vec<String>,
    /// Store responses that set cookies, without their `Set-Cookie` headers
    /// (`store_set_cookie`). Default false: they are not stored.
    pub store_set_cookie: bool,
    /// Serving stale while refreshing in the background, when the upstream
    /// gives no `stale-while-revalidate`. Default 0.
    pub stale_while_revalidate: Duration,
    /// Serving stale while the upstream fails, when the upstream gives no
    /// `stale-if-error`. Default 0.
    pub stale_if_error: Duration,
    /// Concurrent misses for one key wait for one upstream fetch. Default true.
    pub coalesce: bool,
    /// How long a coalesced miss waits before going upstream on its own.
    /// Default 5 s.
    pub coalesce_timeout: Duration,
    /// Act on the client's `Cache-Control` (`no-cache`, `max-age`,
    /// `no-store`, `only-if-cached`). Default true; false keeps clients from
    /// forcing upstream fetches.
    pub honor_client_cache_control: bool,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            default_ttl: None,
            status_ttl: Vec::new(),
            max_object_bytes: 1 << 20,
            vary_by: Vec::new(),
            ignore_query: Vec::new(),
            store_set_cookie: false,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            coalesce: true,
            coalesce_timeout: Duration::from_secs(5),
            honor_client_cache_control: true,
        }
    }
}

impl CachePolicy {
    /// Whether the key holds the consumer: the operator vouches that
    /// responses to different credentials are kept apart.
    pub fn keyed_by_consumer(&self) -> bool {
        self.vary_by
            .iter()
            .any(|v| matches!(v, VaryBy::Attribute(a) if a == "consumer"))
    }

    /// The configured freshness for `status`, if any.
    pub fn default_freshness(&self, status: StatusCode) -> Option<Duration> {
        if let Some((_, ttl)) = self.status_ttl.iter().find(|(s, _)| *s == status) {
            return Some(*ttl);
        }
        self.default_ttl.filter(|_| heuristically_cacheable(status))
    }
}

/// Statuses RFC 9110 §15.1 calls heuristically cacheable.
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}
