//! Shared support for the end-to-end tests: a real gateway on port 0, real
//! upstream HTTP servers that record what they receive, plugins built once per
//! run from this repository, and a small HTTP client.

#![allow(dead_code)]

pub mod client;
pub mod dns;
pub mod etcd;
pub mod examples;
pub mod fleet;
pub mod gateway;
pub mod idp;
pub mod load;
pub mod origin;
pub mod plugins;
pub mod process;
pub mod raw;
pub mod redis;
pub mod tls;
pub mod upstream;
pub mod ws;

pub use client::{get, request};
pub use dns::DnsServer;
pub use etcd::EtcdCluster;
pub use examples::{example_plugin, example_variant};
pub use gateway::TestGateway;
pub use idp::Idp;
pub use load::Load;
pub use plugins::{plugin_path, precompile};
pub use process::GatewayProcess;
pub use redis::RedisServer;
pub use upstream::{Behavior, Recorded, Upstream};

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

/// `services:` with one service per upstream, named as the upstream.
pub fn services_yaml(ups: &[&Upstream]) -> String {
    let mut yaml = String::from("services:\n");
    for u in ups {
        yaml.push_str(&format!(
            "  - name: {}\n    instances: [{{ url: \"{}\" }}]\n",
            u.name,
            u.url()
        ));
    }
    yaml
}

/// A config with one catch-all route to `up` through the plugin named `tag`.
pub fn tagged_route(up: &Upstream) -> String {
    format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n    plugins: [{{ name: tag }}]\n",
        up.url()
    )
}

/// A config with `head` (top-level keys), one service `s` at `up`, and routes
/// given as (id, path pattern, plugin attachments as JSON).
pub fn json_routes(
    up: &Upstream,
    head: &str,
    routes: &[(&str, &str, Vec<serde_json::Value>)],
) -> String {
    let mut yaml = format!(
        "{head}services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n",
        up.url()
    );
    for (id, path, plugins) in routes {
        yaml += &format!(
            "  - id: {id}\n    match: {{ path: \"{path}\" }}\n    upstream: s\n    plugins: {}\n",
            serde_json::Value::Array(plugins.clone())
        );
    }
    yaml
}

/// Starts a gateway on `yaml` with the repository's plugins `names` installed.
pub async fn start_with(yaml: &str, names: &[&str]) -> TestGateway {
    let paths: Vec<_> = names.iter().map(|n| plugin_path(n)).collect();
    let plugins: Vec<(&str, &std::path::Path)> = names
        .iter()
        .zip(&paths)
        .map(|(n, p)| (*n, p.as_path()))
        .collect();
    TestGateway::start_with_plugins(yaml, &plugins).await
}

/// An attachment of plugin `name` with `config`, as JSON.
pub fn attach(name: &str, config: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "name": name, "config": config })
}

/// The load error for plugin `name` attached with `config` to a route to `up`
/// (panics if the gateway starts).
pub async fn load_error(up: &Upstream, name: &str, config: serde_json::Value) -> String {
    let yaml = json_routes(up, "", &[("r", "/*", vec![attach(name, config)])]);
    let path = plugin_path(name);
    TestGateway::try_start_with_plugins(&yaml, &[(name, &path)])
        .await
        .err()
        .unwrap_or_else(|| panic!("{name}: the config was accepted"))
}
