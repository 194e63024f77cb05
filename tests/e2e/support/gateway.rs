//! A real gateway, in process, listening on a free loopback port, with its own
//! temporary directory for the config file and plugins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatehouse::Gateway;

/// A running gateway and its files.
pub struct TestGateway {
    pub gateway: Option<Gateway>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl TestGateway {
    /// Writes `yaml` (a config without `listeners`/`plugin_dir`: both are added,
    /// on 127.0.0.1:0 and `<tmp>/plugins`) and starts the gateway.
    pub async fn start(yaml: &str) -> Self {
        Self::start_with_plugins(yaml, &[]).await
    }

    /// Like `start`, returning the start error.
    pub async fn try_start(yaml: &str) -> Result<Self, String> {
        Self::try_start_with_plugins(yaml, &[]).await
    }

    /// Starts with plugins copied into the plugin dir first (`(name, source)`).
    pub async fn start_with_plugins(yaml: &str, plugins: &[(&str, &Path)]) -> Self {
        Self::try_start_with_plugins(yaml, plugins)
            .await
            .unwrap_or_else(|e| panic!("gateway failed to start: {e}"))
    }

    /// Like `start_with_plugins`, returning the start error.
    pub async fn try_start_with_plugins(
        yaml: &str,
        plugins: &[(&str, &Path)],
    ) -> Result<Self, String> {
        let (dir, path) = prepare_dir(yaml, plugins);
        let gateway = Gateway::start(&path).await.map_err(|e| e.to_string())?;
        let addr = gateway.addrs()[0];
        Ok(Self {
            gateway: Some(gateway),
            dir,
            addr,
        })
    }

    /// A URL on the admin listener (the config must have `admin`).
    pub fn admin_url(&self, path: &str) -> String {
        let addr = self
            .gateway
            .as_ref()
            .and_then(|g| g.admin_addr())
            .expect("admin listener configured");
        format!("http://{addr}{path}")
    }

    /// A sample without labels from the admin `/metrics` (0 when absent),
    /// read with the admin `token`.
    pub async fn metric(&self, token: &str, series: &str) -> u64 {
        let r = super::request(
            http::Method::GET,
            &self.admin_url("/metrics"),
            &[("authorization", &format!("Bearer {token}"))],
            bytes::Bytes::new(),
        )
        .await;
        let needle = format!("{series} ");
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(needle.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gatehouse.yaml")
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Replaces the config file the way editors and deploy tools do: write a
    /// temporary file, then rename it over the old one.
    pub fn write_config(&self, yaml: &str) {
        replace_file(&self.config_path(), full_config(yaml).as_bytes());
    }

    /// Replaces plugin `name` by renaming a copy of `src` over it.
    pub fn install_plugin(&self, name: &str, src: &Path) {
        let bytes = std::fs::read(src).expect("read plugin");
        replace_file(&self.plugin_dir().join(format!("{name}.wasm")), &bytes);
    }

    pub fn shared(&self) -> &std::sync::Arc<gatehouse::control::ControlPlane> {
        self.gateway.as_ref().expect("running").shared()
    }

    /// The lines of `access.log` in the gateway's directory (the config's
    /// `access_log: { path: access.log }`), once there are at least `n`.
    pub async fn access_log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let log = self.dir.path().join("access.log");
        let read = || -> Vec<serde_json::Value> {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let enough = super::eventually(std::time::Duration::from_secs(5), async || {
            read().len() >= n
        });
        assert!(
            enough.await,
            "{} access log lines, expected {n}",
            read().len()
        );
        read()
    }

    /// Stops the gateway and starts a new one on the same directory (config,
    /// plugins, consumer store), as a process restart would.
    pub async fn restart(&mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
        let gateway = Gateway::start(&self.config_path())
            .await
            .unwrap_or_else(|e| panic!("gateway failed to restart: {e}"));
        self.addr = gateway.addrs()[0];
        self.gateway = Some(gateway);
    }

    pub async fn stop(mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
    }
}

/// Write-then-rename, so that readers never see a half-written file.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", fastrand::u32(..)));
    std::fs::write(&tmp, bytes).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A temporary directory holding `gatehouse.yaml` (from `yaml`, with a port-0
/// listener and `plugin_dir: ./plugins` added) and the given plugins.
pub fn prepare_dir(yaml: &str, plugins: &[(&str, &Path)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugin dir");
    for (name, src) in plugins {
        std::fs::copy(src, dir.path().join("plugins").join(format!("{name}.wasm")))
            .expect("copy plugin");
    }
    let path = dir.path().join("gatehouse.yaml");
    std::fs::write(&path, full_config(yaml)).expect("write config");
    (dir, path)
}

fn full_config(yaml: &str) -> String {
    if yaml.starts_with("listeners:") {
        // The test brings its own listeners (TLS).
        return format!("plugin_dir: ./plugins\n{yaml}");
    }
    format!("listeners:\n  - addr: 127.0.0.1:0\nplugin_dir: ./plugins\n{yaml}")
}
