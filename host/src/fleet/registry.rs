//! The node registry: each node keeps `{prefix}/nodes/{id}` on a lease of
//! its own, saying what it serves (config version, plugin hashes), what it
//! refused, and how many requests it answered. A node that dies vanishes
//! when its lease expires; one that stops cleanly revokes it at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{FleetError, Link};
use crate::control::ControlPlane;

/// Lease time to live: how long a dead node stays listed.
pub const TTL_SECONDS: i64 = 10;
/// How often the entry is refreshed (and the lease kept alive).
const REFRESH: Duration = Duration::from_secs(2);

/// Where this node serves.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// Its listeners.
    pub listeners: Vec<SocketAddr>,
    /// Its admin listener.
    pub admin: Option<SocketAddr>,
}

/// Runs until `shutdown`, re-registering after any etcd failure.
pub async fn run(
    shared: Arc<ControlPlane>,
    link: Arc<Link>,
    addrs: Addresses,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = crate::telemetry::access_log::rfc3339(std::time::SystemTime::now());
    loop {
        let mut lease = None;
        let ended = tokio::select! {
            e = keep(&shared, &link, &addrs, &started, &mut lease) => e,
            _ = shutdown.changed() => {
                if let (Some(id), Ok(store)) = (lease, link.store()) {
                    let _ = tokio::time::timeout(Duration::from_secs(1), store.client().lease_revoke(id)).await;
                }
                return;
            }
        };
        tracing::debug!(error = %ended, "node registration lost; registering again");
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn keep(
    shared: &ControlPlane,
    link: &Link,
    addrs: &Addresses,
    started: &str,
    lease: &mut Option<i64>,
) -> FleetError {
    let run = async {
        let store = link.connect().await?;
        let mut client = store.client();
        let id = client.lease_grant(TTL_SECONDS, None).await?.id();
        *lease = Some(id);
        let (mut keeper, mut acks) = client.lease_keep_alive(id).await?;
        loop {
            store
                .put_node(link.id(), &entry(shared, link, addrs, started), id)
                .await?;
            keeper.keep_alive().await?;
            match acks.message().await? {
                Some(ack) if ack.ttl() > 0 => {}
                _ => return Err(FleetError::Etcd("the node's lease expired".into())),
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = link.changed() => {}
            }
        }
    };
    match run.await {
        Ok(()) => FleetError::Etcd("registration ended".into()),
        Err(e) => e,
    }
}

/// This node's registry entry.
pub fn entry(shared: &ControlPlane, link: &Link, addrs: &Addresses, started: &str) -> Value {
    let status = link.status();
    let snap = shared.snapshot();
    let mut plugins = serde_json::Map::new();
    for a in snap.attachments() {
        if let Some(v) = a.version() {
            plugins.insert(a.config().name.to_string(), json!(v));
        }
    }
    let totals = shared.data.metrics.answered();
    let (since_requests, since_errors) = link.since_apply(totals);
    let (requests, errors) = totals;
    json!({
        "id": link.id(),
        "labels": link.labels(),
        "listeners": addrs.listeners.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "admin": addrs.admin.map(|a| a.to_string()),
        "gatehouse": env!("CARGO_PKG_VERSION"),
        "started_at": started,
        "updated_at": crate::telemetry::access_log::rfc3339(std::time::SystemTime::now()),
        "config": {
            "version": status.version,
            "revision": status.revision,
            "stale": status.stale,
            "rejected": status.rejected,
        },
        "plugins": plugins,
        "plugin_errors": status.plugin_errors,
        "requests": requests,
        "responses_5xx": errors,
        "since_apply": { "requests": since_requests, "responses_5xx": since_errors },
    })
}
