//! The running gateway: builds the first snapshot, binds the listeners, and
//! starts the data plane (listeners, proxy), the control plane (reload, hot
//! swap, admin API) and the file watcher.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, ConfigErrors};
use crate::control::ControlPlane;
use crate::data_plane::DataPlane;
use crate::plugin::{PluginRuntime, RuntimeError};
use crate::snapshot::Snapshot;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file is invalid (every error listed).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TLS listener's certificates could not be loaded.
    #[error("listener {addr}: {source}")]
    Tls {
        /// The listener.
        addr: SocketAddr,
        /// What is wrong.
        source: crate::tls::TlsError,
    },
    /// The access log could not be opened.
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
    /// The plugin runtime could not start.
    #[error("plugin runtime: {0}")]
    Runtime(#[from] RuntimeError),
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<ControlPlane>,
    admin_addr: Option<SocketAddr>,
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Loads `config_path`, builds the first snapshot (every plugin loaded and
    /// initialized), binds every listener and starts serving and watching.
    pub async fn start(config_path: &Path) -> Result<Self, StartError> {
        let path = config_path.to_path_buf();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let err = config::ConfigError::new("", format!("cannot read file: {e}"));
            ConfigErrors::single(&path, err)
        })?;
        let cfg = config::parse(&path, &text)?;
        let runtime = PluginRuntime::new()?;
        let snapshot = Snapshot::build(cfg, &runtime, None)
            .await
            .map_err(|errors| ConfigErrors::new(&path, errors))?;
        let mut listeners = Vec::new();
        let mut tls = Vec::new();
        for l in &snapshot.config.listeners {
            let server = match &l.tls {
                Some(t) => Some(Arc::new(crate::tls::TlsServer::build(t).map_err(
                    |source| StartError::Tls {
                        addr: l.addr,
                        source,
                    },
                )?)),
                None => None,
            };
            tls.push(server);
            let sock = TcpListener::bind(l.addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: l.addr,
                    source,
                })?;
            listeners.push(sock);
        }
        let addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let metrics = runtime.metrics().clone();
        let telemetry = crate::telemetry::Telemetry::start(&snapshot.config, &metrics)
            .map_err(StartError::AccessLog)?;
        let admin = match &snapshot.config.admin {
            Some(a) => Some((
                TcpListener::bind(a.addr)
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: a.addr,
                        source,
                    })?,
                a.clone(),
            )),
            None => None,
        };
        let data = Arc::new(DataPlane::new(snapshot, metrics, telemetry));
        let shared = Arc::new(ControlPlane::new(data.clone(), runtime, path, &text));
        let per_ip = Arc::new(crate::listener::PerIp::default());
        let (tx, rx) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        for (l, t) in listeners.into_iter().zip(tls) {
            if let Some(t) = &t {
                tasks.push(tokio::spawn(t.clone().watch(rx.clone())));
            }
            tasks.push(tokio::spawn(crate::listener::run(
                l,
                t,
                data.clone(),
                per_ip.clone(),
                rx.clone(),
            )));
        }
        let admin_addr = match admin {
            Some((listener, cfg)) => {
                let addr = listener.local_addr().ok();
                tasks.push(tokio::spawn(crate::admin::run(
                    listener,
                    cfg,
                    shared.clone(),
                    rx.clone(),
                )));
                addr
            }
            None => None,
        };
        match crate::reload::watch(shared.clone(), rx) {
            Ok(task) => tasks.push(task),
            Err(e) => tracing::warn!(error = %e, "file watching unavailable; reload by restarting"),
        }
        Ok(Self {
            shared,
            admin_addr,
            addrs,
            shutdown: tx,
            tasks,
        })
    }

    /// The bound listener addresses, in config order (port 0 resolved).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin listener's bound address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The control plane: snapshot, runtime, stats, reload and swap.
    pub fn shared(&self) -> &Arc<ControlPlane> {
        &self.shared
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout)
    /// and stops the watchers.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
