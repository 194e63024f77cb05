//! Gatehouse: an API gateway whose policies run as WebAssembly components.
//!
//! # Request flow
//!
//! ```text
//! client ─► listener            TLS (SNI, mTLS, ALPN), HTTP/1.1 + h2, connection limits
//!        ─► proxy::accept        one canonical request (crate::accept), client address, size
//!        ─► proxy::route         host → path trie → methods/headers → priority
//!        ─► proxy::prepare       the head and body the upstream will get
//!        ─► proxy::request       plugin chain on-request (+ body), in order; a plugin may answer
//!        ─► proxy::cache         on cached routes: a stored answer, or one fetch per key (crate::cache)
//!        ─► proxy::forward       the route's service through `dispatch`: bulkhead,
//!                                breaker, balancer, upstream try, retries
//!        ─► proxy::respond       plugin chain on-response (+ body), reverse order; or a tunnel
//!        ─► client
//! ```
//! `proxy::handle` is that flow, one call per stage, on one
//! [`exchange::Exchange`] lent to each. Where things are decided:
//! - an open breaker's 503: `proxy::forward` sends through `dispatch`, whose
//!   `Try::admit` asks the service's `resilience::breaker::Breaker` to admit
//!   the try and turns a refusal into
//!   `error::GatewayError::CircuitOpen`; `error::render` (the one place any
//!   error becomes a response) gives it 503 `circuit_open` and `Retry-After`.
//! - a plugin's answer: [`plugin::ChainRun`] returns [`plugin::Flow::Respond`];
//!   `proxy::handle` makes it a `proxy::respond::Answer::Plugin`, and
//!   `proxy::respond::respond` turns it into the client's response after the
//!   response hooks.
//!
//! # Layout
//! - [`config`]: file → validated model (every error with its path).
//! - [`snapshot`]: the immutable unit a request runs on; built whole, swapped whole.
//! - `data_plane`: what requests read (the live snapshot, metrics, telemetry).
//! - [`control`]: config reload, admin writes, plugin hot swap; typed errors.
//! - [`exchange`]: one request, owned by the spine and lent to every stage.
//! - [`router`], [`plugin`], `balancer`, `upstream`: what the stages use.
//! - [`cache`]: the response cache (RFC 9111 rules, keys, the bounded store, coalescing).
//! - `service`, `dispatch`: a service (instances, balancer, client, breaker,
//!   probes) and one request to it under its policies; the forward stage and
//!   plugin callouts ([`plugin::callout`]) both send through `dispatch`.
//! - [`pem`]: reading certificates and keys (config validation and TLS).
//! - `listener`, [`tls`], `proxy`: connections, TLS and the request path.
//! - `accept`: the canonical request (path canonicaliser, Host rules, identity stripping).
//! - `resilience`: health, outlier ejection, circuit breaker, bulkhead, retries.
//! - `gateway`, `reload`: starting everything; the file watcher.
//! - `error`: the one place errors become HTTP responses.
//! - `metrics`, `telemetry`: metric types, access log, trace spans.
//! - `admin`, `versions`: the admin API (and `/metrics`), config versions.
//! - [`credentials`]: consumers' API keys (the consumer store's journal and
//!   the config's `consumers:`), found by hash through `host.credential`.
//! - [`scaffold`]: `gatehouse plugin new`, plugin skeletons per language.
//! - [`allocator`]: the binary's allocator options (mimalloc), set first in `main`.

pub(crate) mod accept;
pub(crate) mod admin;
pub mod allocator;
pub(crate) mod balancer;
pub(crate) mod body;
pub mod cache;
pub mod config;
pub mod control;
pub mod credentials;
pub(crate) mod data_plane;
pub(crate) mod discovery;
pub(crate) mod dispatch;
pub(crate) mod error;
pub mod exchange;
pub(crate) mod files;
pub mod fleet;
pub(crate) mod gateway;
pub(crate) mod listener;
pub(crate) mod metrics;
pub mod pem;
pub mod plugin;
pub(crate) mod proxy;
pub(crate) mod reload;
pub(crate) mod resilience;
pub mod router;
pub mod scaffold;
pub(crate) mod service;
pub mod snapshot;
pub(crate) mod telemetry;
pub mod tls;
pub(crate) mod upstream;
pub(crate) mod versions;

pub use gateway::{Gateway, StartError};
