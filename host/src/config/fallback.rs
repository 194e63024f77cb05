//! Fallbacks: what answers when a route's service cannot — its breaker is
//! open, no instance is healthy, it is at its concurrency cap, or every try
//! failed — instead of the gateway's 502/503/504.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

/// A route's or service's fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// What answers.
    pub answer: FallbackAnswer,
    /// Upstream statuses that count as failures too (after retries), besides
    /// the gateway's own `circuit_open`, `no_healthy_upstream`,
    /// `upstream_overloaded`, `upstream_connect_failed`, `upstream_failed`
    /// and `upstream_timeout`.
    pub on_status: Vec<StatusCode>,
}

/// What a fallback answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackAnswer {
    /// A fixed response.
    Static {
        /// Its status.
        status: StatusCode,
        /// Its headers.
        headers: Vec<(HeaderName, HeaderValue)>,
        /// Its body.
        body: Bytes,
    },
    /// Another service (by index), sent the same request; its own fallback
    /// is not followed, so fallbacks never chain or loop.
    Service(usize),
}
