//! End-to-end tests: a real gateway on loopback, real upstream servers, real
//! Wasm components built from this repository.

// Test code: a panic is a failed test with its message.
#![allow(clippy::unwrap_used)]

mod support;

mod admin;
mod aggregate;
mod auth;
mod balancing;
mod cache;
mod callouts;
mod cli;
mod connections;
mod consumers;
mod ext_authz;
mod fallbacks;
mod fleet;
mod hostile;
mod introspection;
mod languages;
mod lifecycle;
mod named_policies;
mod observability;
mod oidc;
mod overrides;
mod plugin_cases;
mod plugin_trace;
mod plugin_versions;
mod plugins;
mod policies;
mod protocols;
mod proxying;
mod quickstart;
mod rate_limit;
mod rate_limit_redis;
mod reload;
mod resilience;
mod routing;
mod sandbox;
mod security;
mod streaming;
mod tls;
