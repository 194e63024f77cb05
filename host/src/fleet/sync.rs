//! Keeps a node on what etcd holds: on every (re)connection it reads the
//! live config and the plugin names, applies what differs, then watches both
//! from the revision it read at, so no change between the read and the watch
//! is missed. A broken watch (etcd down, leader lost, history compacted)
//! starts over after a backoff; the node serves what it has meanwhile.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::rollout::{Canary, canary_from};
use super::{FleetError, Link, PluginRecord, Record, Store};
use crate::control::ControlPlane;

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `shutdown`.
pub async fn run(shared: Arc<ControlPlane>, link: Arc<Link>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut watched = false;
        let ended = tokio::select! {
            e = session(&shared, &link, &mut watched) => e,
            _ = shutdown.changed() => return,
        };
        // A session that got as far as watching was a working connection:
        // the next one starts from the shortest wait again, so a leader
        // election after hours of quiet costs 100 ms, not the wait that an
        // earlier outage had grown to.
        if watched {
            backoff = Duration::from_millis(100);
        }
        tracing::warn!(error = %ended, retry_in = ?backoff, "lost the etcd watch; serving the last applied config");
        link.connected(Some(&ended));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's worth of catching up and watching; returns why it ended.
async fn session(shared: &ControlPlane, link: &Link, watched: &mut bool) -> FleetError {
    match watch_once(shared, link, watched).await {
        Ok(()) => FleetError::Etcd("watch closed".into()),
        Err(e) => e,
    }
}

async fn watch_once(
    shared: &ControlPlane,
    link: &Link,
    watched: &mut bool,
) -> Result<(), FleetError> {
    let store = link.connect().await?;
    let (stable, config_rev) = store.config().await?;
    let canary = store.canary().await?.map(|(c, _)| c);
    let mut state = Desired { stable, canary };
    state.apply(shared, link, &store).await;
    let (plugins, plugins_rev) = store.plugins().await?;
    for (name, p) in &plugins {
        sync_plugin(shared, link, &store, name, p).await;
    }
    let (consumers, consumers_rev) = store.consumers().await?;
    let creds = shared.runtime.credentials().clone();
    let n = consumers.len();
    match tokio::task::spawn_blocking(move || creds.replace(consumers)).await {
        Ok(Ok(())) => tracing::debug!(records = n, "consumers read from etcd"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the local copy of the consumers"),
        Err(e) => tracing::warn!(error = %e, "consumer sync failed"),
    }
    let mut client = store.client();
    let consumers_prefix = store.consumers_prefix();
    let mut consumer_watch = client
        .watch(
            consumers_prefix.as_str(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(consumers_rev + 1),
            ),
        )
        .await?;
    let mut config = client
        .watch(
            store.key("config"),
            Some(WatchOptions::new().with_start_revision(config_rev + 1)),
        )
        .await?;
    let mut rollout = client
        .watch(
            store.key("canary"),
            Some(WatchOptions::new().with_start_revision(config_rev + 1)),
        )
        .await?;
    let names = store.key("plugins/names/");
    let mut plugin_names = client
        .watch(
            names.as_str(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(plugins_rev + 1),
            ),
        )
        .await?;
    link.connected(None);
    *watched = true;
    tracing::info!(prefix = store.prefix(), "watching etcd");
    loop {
        tokio::select! {
            m = config.message() => {
                let Some(resp) = m? else { return Ok(()) };
                if resp.canceled() {
                    return Err(FleetError::Etcd(format!("config watch canceled: {}", resp.cancel_reason())));
                }
                // Only the newest put of a batch matters: each is a whole document.
                let newest = resp.events().iter().rev().find(|e| e.event_type() == EventType::Put);
                if let Some(kv) = newest.and_then(|e| e.kv()) {
                    match serde_json::from_slice::<Record>(kv.value()) {
                        Ok(mut rec) => {
                            rec.revision = kv.mod_revision();
                            state.stable = Some(rec);
                            state.apply(shared, link, &store).await;
                        }
                        Err(e) => tracing::error!(error = %e, "ignoring an unreadable config record in etcd"),
                    }
                }
            }
            m = rollout.message() => {
                let Some(resp) = m? else { return Ok(()) };
                if resp.canceled() {
                    return Err(FleetError::Etcd(format!("rollout watch canceled: {}", resp.cancel_reason())));
                }
                let Some(last) = resp.events().last() else { continue };
                state.canary = match (last.event_type(), last.kv()) {
                    (EventType::Put, Some(kv)) => match canary_from(kv) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::error!(error = %e, "ignoring an unreadable rollout in etcd");
                            continue;
                        }
                    },
                    _ => None,
                };
                state.apply(shared, link, &store).await;
            }
            m = consumer_watch.message() => {
                let Some(resp) = m? else { return Ok(()) };
                if resp.canceled() {
                    return Err(FleetError::Etcd(format!("consumer watch canceled: {}", resp.cancel_reason())));
                }
                let records: Vec<_> = resp
                    .events()
                    .iter()
                    .filter_map(|e| super::consumers::event_record(&consumers_prefix, e))
                    .collect();
                let creds = shared.runtime.credentials().clone();
                match tokio::task::spawn_blocking(move || creds.apply_replicated(records)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the local copy of the consumers"),
                    Err(e) => tracing::warn!(error = %e, "consumer sync failed"),
                }
            }
            m = plugin_names.message() => {
                let Some(resp) = m? else { return Ok(()) };
                if resp.canceled() {
                    return Err(FleetError::Etcd(format!("plugin watch canceled: {}", resp.cancel_reason())));
                }
                for e in resp.events().iter().filter(|e| e.event_type() == EventType::Put) {
                    let Some(kv) = e.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key());
                    let name = key.strip_prefix(&names).unwrap_or(&key).to_string();
                    match serde_json::from_slice::<PluginRecord>(kv.value()) {
                        Ok(p) => sync_plugin(shared, link, &store, &name, &p).await,
                        Err(e) => link.plugin_result(&name, Some(format!("unreadable record: {e}"))),
                    }
                }
                // A version refused for want of this plugin can build now
                // (a no-op when the node already serves what it should).
                state.apply(shared, link, &store).await;
            }
        }
    }
}

/// What etcd says this node should serve.
struct Desired {
    /// `{prefix}/config`.
    stable: Option<Record>,
    /// `{prefix}/canary`, when a rollout is under way.
    canary: Option<Canary>,
}

impl Desired {
    /// Applies the rollout's version when this node is selected, else the
    /// config (so a rollback returns canary nodes to it).
    async fn apply(&self, shared: &ControlPlane, link: &Link, store: &Store) {
        let canary = self.canary.as_ref().filter(|c| c.selects(link.labels()));
        let target = canary.map(|c| &c.record).or(self.stable.as_ref());
        if let Some(rec) = target {
            let dir = shared.snapshot().config.plugin_dir.clone();
            install_pinned(store, link, &rec.document, &dir).await;
            let _ = shared.apply_record(rec).await;
        }
    }
}

fn pin_refusal(pushed: &str, pin: &str) -> String {
    format!("pushed {pushed} but the config pins {pin}; not installed")
}

/// Every `(name, sha256)` a document's attachments pin.
fn pins(doc: &serde_json::Value) -> Vec<(String, String)> {
    let global = doc["plugins"].as_array().into_iter().flatten();
    let routes = doc["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["plugins"].as_array().into_iter().flatten());
    global
        .chain(routes)
        .filter_map(|a| {
            let name = a["name"].as_str()?;
            let pin = a["sha256"].as_str()?;
            let hex = pin
                .strip_prefix("sha256:")
                .unwrap_or(pin)
                .to_ascii_lowercase();
            Some((name.to_string(), hex))
        })
        .collect()
}

/// Before a version that moves a pin is built: installs the pushed plugin it
/// pins when the file on disk is another (a push that an older pin kept
/// out). A pin that matches no pushed plugin is left to the build to refuse.
async fn install_pinned(store: &Store, link: &Link, doc: &serde_json::Value, dir: &Path) {
    for (name, pin) in pins(doc) {
        let Ok(rec) = store.plugin(&name).await else {
            continue;
        };
        if rec.sha256 == pin
            && let Err(e) = install(store, &name, &rec, dir).await
        {
            link.plugin_result(&name, Some(e));
        }
    }
}

/// Installs a pushed plugin and hot-swaps it like a file drop.
async fn sync_plugin(
    shared: &ControlPlane,
    link: &Link,
    store: &Store,
    name: &str,
    rec: &PluginRecord,
) {
    let snap = shared.snapshot();
    // A pin elsewhere keeps the pinned file on disk, so that a restart
    // finds what the config pins.
    let pinned_other = snap.attachments().iter().find_map(|a| {
        let c = a.config();
        c.sha256
            .as_ref()
            .filter(|p| &*c.name == name && ***p != *rec.sha256)
            .cloned()
    });
    if let Some(pin) = pinned_other {
        link.plugin_result(name, Some(pin_refusal(&rec.sha256, &pin)));
        return;
    }
    let dir = snap.config.plugin_dir.clone();
    match install(store, name, rec, &dir).await {
        Ok(true) => {
            let result = shared.swap_plugin(name).await;
            link.plugin_result(name, result.err().map(|e| e.to_string()));
            tracing::info!(plugin = name, sha256 = %rec.sha256, "plugin from etcd installed");
        }
        Ok(false) => {
            link.plugin_result(name, shared.plugin_error(name).map(|e| e.to_string()));
        }
        Err(e) => {
            tracing::error!(plugin = name, error = %e, "refusing a pushed plugin");
            link.plugin_result(name, Some(e));
        }
    }
}

/// Installs every pushed plugin into `dir` before the first snapshot of
/// `doc` is built (a node that cannot reach etcd starts with the files it
/// has); one `doc` pins to other bytes is left out.
pub async fn install_all(link: &Link, doc: &serde_json::Value, dir: &Path) {
    let pins = pins(doc);
    let Ok(store) = link.store() else { return };
    let plugins = match store.plugins().await {
        Ok((p, _)) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list pushed plugins; starting with plugin_dir as it is");
            return;
        }
    };
    for (name, rec) in &plugins {
        if let Some((_, pin)) = pins.iter().find(|(n, p)| n == name && *p != rec.sha256) {
            let e = format!(
                "pushed {} but the config pins {pin}; not installed",
                rec.sha256
            );
            link.plugin_result(name, Some(e));
            continue;
        }
        if let Err(e) = install(&store, name, rec, dir).await {
            tracing::error!(plugin = %name, error = %e, "refusing a pushed plugin");
            link.plugin_result(name, Some(e));
        }
    }
}

/// Makes `dir/<name>.wasm` the pushed blob: fetched, hash-checked, written
/// whole. A file already holding those bytes is left alone (a restart or a
/// reconnect costs a hash). `Ok(true)`: the file changed.
async fn install(
    store: &Store,
    name: &str,
    rec: &PluginRecord,
    dir: &Path,
) -> Result<bool, String> {
    if !valid_name(name) {
        return Err("not a valid plugin name".into());
    }
    let file = dir.join(format!("{name}.wasm"));
    let check = file.clone();
    let present = tokio::task::spawn_blocking(move || {
        std::fs::read(&check)
            .ok()
            .map(|b| hex::encode(Sha256::digest(&b)))
    })
    .await
    .ok()
    .flatten();
    if present.as_deref() == Some(rec.sha256.as_str()) {
        return Ok(false);
    }
    let bytes = store
        .plugin_blob(name, rec)
        .await
        .map_err(|e| e.to_string())?;
    let target = file.clone();
    let written =
        tokio::task::spawn_blocking(move || crate::files::write_atomically(&target, &bytes)).await;
    written
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(true)
}

/// A plugin name is a file name in `plugin_dir`: no separators, no dot files.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
