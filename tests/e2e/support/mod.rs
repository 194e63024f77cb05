//! Shared support for the end-to-end tests: a real gateway on port 0, real
//! upstream HTTP servers that record what they receive, plugins built once per
//! run from this repository, and a small HTTP client.

#![allow(dead_code)]

pub mod client;
pub mod gateway;
pub mod load;
pub mod plugins;
pub mod process;
pub mod redis;
pub mod upstream;

pub use client::{get, request};
pub use gateway::TestGateway;
pub use load::Load;
pub use plugins::plugin_path;
pub use process::GatewayProcess;
pub use redis::RedisServer;
pub use upstream::{Behavior, Upstream};

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub async fn eventually(timeout: std::time::Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A config with one catch-all route to `up` through the plugin named `tag`.
pub fn tagged_route(up: &Upstream) -> String {
    format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n    plugins: [{{ name: tag }}]\n",
        up.url()
    )
}
