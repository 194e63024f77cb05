//! What a fleet node needs before it can read its config: where etcd is, who
//! the node is, where it keeps its local copy, and the node-local keys that
//! differ from the fleet's document (its listeners, say). From
//! `gatehouse run --etcd URL` flags or a small bootstrap file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::FleetError;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/gatehouse";

/// How to reach etcd.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdOptions {
    /// Client URLs of the members (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// Every key Gatehouse writes lives under this prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// etcd user, when etcd has authentication on.
    #[serde(default)]
    pub username: Option<String>,
    /// That user's password.
    #[serde(default)]
    pub password: Option<String>,
    /// TLS to etcd (`https://` endpoints).
    #[serde(default)]
    pub tls: Option<EtcdTls>,
}

/// TLS to etcd: the CA that signed its certificates and, for client
/// certificate authentication, this node's certificate and key (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// CA certificate(s) to trust.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
}

/// Who this node is.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeOptions {
    /// Unique in the fleet (default: the host name).
    #[serde(default)]
    pub id: Option<String>,
    /// Labels a staged rollout selects nodes by (`zone: a`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where the node keeps the last applied config (to start from when
    /// etcd is down); default `./gatehouse-state`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

/// A bootstrap file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// etcd.
    pub etcd: EtcdOptions,
    /// This node.
    #[serde(default)]
    pub node: NodeOptions,
    /// Node-local keys: a JSON merge patch applied to the fleet's document
    /// on this node only (`listeners`, `admin.addr`, `plugin_dir`, `workers`).
    #[serde(default)]
    pub overrides: Option<Value>,
    /// The directory relative paths (certificates, state_dir) are read from.
    #[serde(skip)]
    pub base: PathBuf,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.into()
}

impl Bootstrap {
    /// Reads a bootstrap file (YAML or JSON).
    pub fn load(path: &Path) -> Result<Self, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|e| FleetError::Bootstrap {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut b: Bootstrap = serde_yaml::from_str(&text).map_err(|e| FleetError::Bootstrap {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        b.base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ".".into());
        b.check().map_err(|message| FleetError::Bootstrap {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(b)
    }

    /// From `--etcd` and `--prefix`: no credentials, no overrides.
    pub fn from_flags(endpoints: &str, prefix: Option<&str>) -> Result<Self, FleetError> {
        let b = Self {
            etcd: EtcdOptions {
                endpoints: endpoints
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                prefix: prefix.unwrap_or(DEFAULT_PREFIX).to_string(),
                username: None,
                password: None,
                tls: None,
            },
            node: NodeOptions::default(),
            overrides: None,
            base: ".".into(),
        };
        b.check().map_err(|message| FleetError::Bootstrap {
            path: "--etcd".into(),
            message,
        })?;
        Ok(b)
    }

    fn check(&self) -> Result<(), String> {
        if self.etcd.endpoints.is_empty() {
            return Err("etcd.endpoints: at least one endpoint is required".into());
        }
        if !self.etcd.prefix.starts_with('/') || self.etcd.prefix.ends_with('/') {
            return Err(format!(
                "etcd.prefix: `{}` must start with `/` and not end with one",
                self.etcd.prefix
            ));
        }
        if self.etcd.username.is_some() != self.etcd.password.is_some() {
            return Err("etcd.username and etcd.password go together".into());
        }
        if let Some(o) = &self.overrides
            && !o.is_object()
        {
            return Err("overrides: must be a mapping of config keys".into());
        }
        if let Some(id) = &self.node.id
            && (id.is_empty() || id.contains('/'))
        {
            return Err(format!("node.id: `{id}` must be non-empty and have no `/`"));
        }
        Ok(())
    }

    /// This node's id: configured, or the host name.
    pub fn node_id(&self) -> String {
        self.node.id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| format!("node-{}", std::process::id()))
        })
    }

    /// The state directory, resolved against the bootstrap file's directory.
    pub fn state_dir(&self) -> PathBuf {
        self.base.join(
            self.node
                .state_dir
                .clone()
                .unwrap_or_else(|| "gatehouse-state".into()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_files_are_checked() {
        let b = Bootstrap::from_flags("http://a:2379, http://b:2379", None).expect("valid");
        assert_eq!(b.etcd.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(b.etcd.prefix, "/gatehouse");
        let bad = Bootstrap::from_flags("http://a:2379", Some("gatehouse/")).map(|_| ());
        assert!(
            matches!(bad, Err(FleetError::Bootstrap { message, .. }) if message.contains("etcd.prefix"))
        );
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("b.yaml");
        std::fs::write(
            &file,
            "etcd: { endpoints: [http://127.0.0.1:2379] }\nnode: { id: n1, labels: { zone: a }, state_dir: st }\noverrides: { listeners: [{ addr: 127.0.0.1:0 }] }\n",
        )
        .expect("write");
        let b = Bootstrap::load(&file).expect("loads");
        assert_eq!(b.node_id(), "n1");
        assert_eq!(b.state_dir(), dir.path().join("st"));
        std::fs::write(&file, "etcd: { endpoints: [x] }\nnodes: {}\n").expect("write");
        assert!(
            matches!(Bootstrap::load(&file), Err(FleetError::Bootstrap { message, .. }) if message.contains("nodes"))
        );
    }
}
