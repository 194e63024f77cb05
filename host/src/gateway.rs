//! The running gateway: builds the first snapshot, binds the listeners, and
//! starts the data plane (listeners, proxy), the control plane (reload, hot
//! swap, admin API) and the file watcher, or for a fleet node the etcd
//! watch and the node registry.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, ConfigErrors};
use crate::control::ControlPlane;
use crate::data_plane::DataPlane;
use crate::fleet::{self, Bootstrap, Link};
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
    /// A fleet node found no config: etcd unreachable and no local copy, or
    /// nothing pushed yet.
    #[error("{0}")]
    Fleet(#[from] fleet::FleetError),
    /// The consumer store's journal cannot be read.
    #[error("consumer store: {0}")]
    ConsumerStore(#[from] crate::credentials::StoreError),
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<ControlPlane>,
    admin_addr: Option<SocketAddr>,
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The admin listener outlives the data plane's drain, so `/ready` can
    /// say 503 while in-flight requests finish.
    admin_shutdown: watch::Sender<bool>,
    admin_task: Option<JoinHandle<()>>,
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
        let store = cfg.consumer_store.clone();
        runtime.credentials().open(&store.journal(&path))?;
        let snapshot = Snapshot::build(cfg, &runtime, None)
            .await
            .map_err(|errors| ConfigErrors::new(&path, errors))?;
        let mut gw = Self::launch(snapshot, runtime, |data, rt| {
            ControlPlane::new(data, rt, path, &text)
        })
        .await?;
        let credentials = gw.shared.runtime.credentials().clone();
        let flush = crate::credentials::flush_every(
            credentials,
            store.flush_interval,
            gw.shutdown.subscribe(),
        );
        gw.tasks.push(tokio::spawn(flush));
        match crate::reload::watch(gw.shared.clone(), gw.shutdown.subscribe()) {
            Ok(task) => gw.tasks.push(task),
            Err(e) => tracing::warn!(error = %e, "file watching unavailable; reload by restarting"),
        }
        Ok(gw)
    }

    /// Starts a fleet node: the config from etcd (or the local copy when etcd
    /// is down), pushed plugins installed into `plugin_dir`, then the same
    /// gateway as [`Self::start`], kept on what etcd holds by a watch instead
    /// of a file watcher, and registered under `{prefix}/nodes/`.
    pub async fn start_fleet(bootstrap: Bootstrap) -> Result<Self, StartError> {
        let (link, rec) = Link::open(bootstrap).await?;
        let name = link.name();
        let cfg = config::parse_in(&name, link.anchor(), &link.render(&rec.document))?;
        fleet::sync::install_all(&link, &rec.document, &cfg.plugin_dir).await;
        let runtime = PluginRuntime::new()?;
        // The local copy of the fleet's consumers: what this node serves
        // until its first read of etcd replaces it.
        runtime
            .credentials()
            .open(&link.state_dir().join("consumers.jsonl"))?;
        let flush_interval = cfg.consumer_store.flush_interval;
        let snapshot = Snapshot::build(cfg, &runtime, None)
            .await
            .map_err(|errors| ConfigErrors::new(&name, errors))?;
        if !link.status().stale {
            // The copy a restart falls back on when etcd is down.
            link.applied(&rec, (0, 0)).await;
        }
        let fleet_link = link.clone();
        let mut gw = Self::launch(snapshot, runtime, move |data, rt| {
            ControlPlane::fleet(data, rt, fleet_link, &rec)
        })
        .await?;
        let rx = gw.shutdown.subscribe();
        let credentials = gw.shared.runtime.credentials().clone();
        let flush = crate::credentials::flush_every(credentials, flush_interval, rx.clone());
        gw.tasks.push(tokio::spawn(flush));
        let sync = fleet::sync::run(gw.shared.clone(), link.clone(), rx.clone());
        gw.tasks.push(tokio::spawn(sync));
        gw.tasks.push(tokio::spawn(fleet::rollout::guard(
            link.clone(),
            rx.clone(),
        )));
        let addrs = fleet::registry::Addresses {
            listeners: gw.addrs.clone(),
            admin: gw.admin_addr,
        };
        let registry = fleet::registry::run(gw.shared.clone(), link, addrs, rx);
        gw.tasks.push(tokio::spawn(registry));
        Ok(gw)
    }

    /// Binds the listeners of `snapshot` and starts serving it, with the
    /// control plane `control` makes.
    async fn launch(
        snapshot: Snapshot,
        runtime: Arc<PluginRuntime>,
        control: impl FnOnce(Arc<DataPlane>, Arc<PluginRuntime>) -> ControlPlane,
    ) -> Result<Self, StartError> {
        let listeners = bind_listeners(&snapshot.config.listeners).await?;
        let addrs = listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect();
        let admin = match &snapshot.config.admin {
            Some(a) => Some((bind(a.addr).await?, a.clone())),
            None => None,
        };
        let metrics = runtime.metrics().clone();
        let telemetry = crate::telemetry::Telemetry::start(&snapshot.config, &metrics)
            .map_err(StartError::AccessLog)?;
        let data = Arc::new(DataPlane::new(snapshot, metrics, telemetry));
        let shared = Arc::new(control(data.clone(), runtime));
        let (tx, rx) = watch::channel(false);
        let (admin_tx, admin_rx) = watch::channel(false);
        let mut tasks = serve_listeners(listeners, &data, &rx);
        let mut admin_task = None;
        let admin_addr = admin.and_then(|(listener, cfg)| {
            let addr = listener.local_addr().ok();
            let admin = crate::admin::run(listener, cfg, shared.clone(), admin_rx);
            admin_task = Some(tokio::spawn(admin));
            addr
        });
        if let Some(updates) = shared.discovery.take_updates() {
            tasks.push(tokio::spawn(apply_discovered(
                shared.clone(),
                updates,
                rx.clone(),
            )));
        }
        Ok(Self {
            shared,
            admin_addr,
            addrs,
            shutdown: tx,
            tasks,
            admin_shutdown: admin_tx,
            admin_task,
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
    ///
    /// `/ready` answers 503 from the first moment; listeners keep accepting
    /// for `limits.drain_delay` so that load balancers see it and stop sending
    /// before the sockets close, as Envoy's drain and a Kubernetes preStop
    /// sleep do. The admin listener stops last.
    pub async fn shutdown(self) {
        self.shared.data.start_draining();
        let delay = self.shared.snapshot().limits.drain_delay;
        if !delay.is_zero() {
            tracing::info!(
                ?delay,
                "draining: /ready answers 503; listeners still accept"
            );
            tokio::time::sleep(delay).await;
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.admin_shutdown.send(true);
        if let Some(t) = self.admin_task {
            let _ = t.await;
        }
    }
}

/// Applies each discovered instance list as it comes, until shutdown.
async fn apply_discovered(
    shared: Arc<ControlPlane>,
    mut updates: tokio::sync::mpsc::UnboundedReceiver<crate::discovery::Update>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            u = updates.recv() => match u {
                Some((name, list)) => shared.rediscover(&name, list).await,
                None => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// A bound listener socket and, for TLS listeners, its certificates.
type Bound = (TcpListener, Option<Arc<crate::tls::TlsServer>>);

/// Binds every listener (and loads its certificates) before anything is
/// spawned, so a port in use or a bad certificate fails the start cleanly.
async fn bind_listeners(listeners: &[config::ListenerConfig]) -> Result<Vec<Bound>, StartError> {
    let mut bound = Vec::with_capacity(listeners.len());
    for l in listeners {
        let tls = match &l.tls {
            Some(t) => Some(Arc::new(crate::tls::TlsServer::build(t).map_err(
                |source| StartError::Tls {
                    addr: l.addr,
                    source,
                },
            )?)),
            None => None,
        };
        bound.push((bind(l.addr).await?, tls));
    }
    Ok(bound)
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// One accept loop per listener (sharing the per-IP connection counts), and
/// a certificate watcher per TLS listener.
fn serve_listeners(
    listeners: Vec<Bound>,
    data: &Arc<DataPlane>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let per_ip = Arc::new(crate::listener::PerIp::default());
    let mut tasks = Vec::new();
    for (l, t) in listeners {
        if let Some(t) = &t {
            tasks.push(tokio::spawn(t.clone().watch(shutdown.clone())));
        }
        tasks.push(tokio::spawn(crate::listener::run(
            l,
            t,
            data.clone(),
            per_ip.clone(),
            shutdown.clone(),
        )));
    }
    tasks
}
