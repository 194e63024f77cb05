//! Gatehouse: an API gateway whose policies run as WebAssembly components.
//!
//! # Request flow
//!
//! ```text
//! client ─► listener   accept, TLS (SNI, mTLS, ALPN), HTTP/1.1 + h2, limits
//!        ─► accept     one canonical request: path, authority, identity headers
//!        ─► router     host → path trie → methods/headers → priority
//!        ─► plugin     chain on-request, in order; a plugin may answer
//!        ─► balancer   healthy instances only; breaker; bulkhead
//!        ─► upstream   pooled hyper client (h1/h2/h2c, TLS); timeouts, retries
//!        ─► plugin     chain on-response, reverse order
//!        ─► client
//! ```
//! [`proxy::serve`] is that flow in one function.
//!
//! # Layout
//! - [`config`]: file → validated model (every error with its path).
//! - [`snapshot`]: the immutable unit a request runs on; built whole, swapped whole.
//! - [`router`], [`plugin`], [`balancer`], [`upstream`]: one module per stage.
//! - [`listener`], [`tls`], [`proxy`]: connections, TLS and the request path.
//! - [`accept`]: the canonical request (path canonicaliser, Host rules, identity stripping).
//! - [`resilience`]: health, outlier ejection, circuit breaker, bulkhead, retries.
//! - [`gateway`], [`reload`]: the running process, config reload and plugin hot swap.
//! - [`error`]: the one place errors become HTTP responses.
//! - [`metrics`], [`telemetry`]: Prometheus metrics, access log, trace spans.
//! - [`admin`], [`versions`]: the admin API and config versions.
//! - [`scaffold`]: `gatehouse plugin new`, plugin skeletons per language.

pub mod accept;
pub mod admin;
pub mod balancer;
pub mod body;
pub mod config;
pub mod error;
pub mod exchange;
pub mod gateway;
pub mod listener;
pub mod metrics;
pub mod plugin;
pub mod proxy;
pub mod reload;
pub mod resilience;
pub mod router;
pub mod scaffold;
pub mod snapshot;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod versions;

pub use gateway::{Gateway, StartError};
