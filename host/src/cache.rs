//! The response cache: a shared cache in the sense of RFC 9111, run by the
//! proxy after the request hooks (`crate::proxy`'s cache stage), so that
//! authentication and authorization always come before a stored answer.
//!
//! - [`directives`]: `Cache-Control` of requests and responses.
//! - [`key`]: what tells stored answers apart (route, host, path, query,
//!   the operator's `vary_by`, the response's `Vary`).
//! - [`object`]: a stored response, its freshness and age, conditionals.
//! - [`store`]: the bounded store and the fills in flight (coalescing).
//! - [`status`]: `Cache-Status`, the access log field and the counters.

pub mod directives;
pub mod key;
pub mod object;
pub mod status;
pub mod store;

use std::sync::Arc;

pub use directives::CacheControl;
pub use key::Key;
pub use object::{Freshness, Object, State, storable};
pub use status::{CacheMetrics, Outcome, STALE_IF_ERROR, STALE_WHILE_REVALIDATE, Status};
pub use store::{Fill, Filled, Join, Slot, Store, Totals, wait};

use crate::config::CachePolicy;

/// A cached route's cache: its policy, the gateway's store, its counters.
#[derive(Debug)]
pub struct RouteCache {
    /// The route's policy (its block over the top-level defaults).
    pub policy: Arc<CachePolicy>,
    /// The store every cached route shares.
    pub store: Arc<Store>,
    /// The route's counters.
    pub metrics: Arc<CacheMetrics>,
}
