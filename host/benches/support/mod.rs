//! Shared by the plugin benchmarks: build a plugin crate, an attachment
//! config, a request exchange.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gatehouse::config::AttachmentConfig;
use gatehouse::exchange::{PluginView, RequestHead};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

pub fn build(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "-p",
            name,
        ])
        .status()
        .expect("cargo");
    assert!(status.success(), "building {name}");
    root.join("target/wasm32-wasip2/plugin")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

pub fn attachment(name: &str, config: &str) -> AttachmentConfig {
    AttachmentConfig {
        config: config.into(),
        timeout: Duration::from_millis(100),
        max_instances: 4,
        ..AttachmentConfig::named(name)
    }
}

pub fn exchange(headers: usize) -> PluginView {
    let mut h = HeaderMap::new();
    for i in 0..headers {
        h.insert(
            HeaderName::try_from(format!("x-header-{i}")).unwrap(),
            HeaderValue::from_static("some-value-0123456789"),
        );
    }
    let mut view = PluginView::blank();
    view.request_id = HeaderValue::from_static("0123456789abcdef");
    view.route_id = "bench".into();
    view.client_ip = "127.0.0.1".parse().unwrap();
    view.req = RequestHead {
        method: Method::GET,
        uri: "/bench".parse().unwrap(),
        headers: h,
        scheme: "http",
        host: "localhost".into(),
    };
    view.counters = vec!["r#0".into()].into();
    view
}
