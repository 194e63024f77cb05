//! Watches the config file and `plugin_dir`: a changed config is reloaded as a
//! whole new snapshot, a changed `<name>.wasm`/`.cwasm` hot-swaps that plugin.
//! Editors and deploy tools replace files by rename, so directories are watched,
//! not files, and bursts of events are absorbed before acting.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::control::ControlPlane;

/// How long to wait for a burst of file events to settle.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Starts watching; the task ends when `shutdown` flips.
pub fn watch(
    shared: Arc<ControlPlane>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Reading a file raises access events: acting on them would make every
        // reload trigger the next one.
        let Ok(ev) = res else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        for p in ev.paths {
            let _ = tx.send(p);
        }
    })?;
    let config_path = absolute(&shared.config_path);
    let config_dir = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
    let mut plugin_dir = absolute(&shared.snapshot().config.plugin_dir);
    if let Err(e) = watcher.watch(&plugin_dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %plugin_dir.display(), error = %e, "cannot watch plugin_dir");
    }
    Ok(tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                p = rx.recv() => p,
                _ = shutdown.changed() => None,
            };
            let Some(first) = first else { break };
            let mut paths = BTreeSet::from([first]);
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(p) = rx.try_recv() {
                paths.insert(p);
            }
            if paths.iter().any(|p| absolute(p) == config_path) && shared.reload().await.is_ok() {
                let new_dir = absolute(&shared.snapshot().config.plugin_dir);
                if new_dir != plugin_dir {
                    let _ = watcher.unwatch(&plugin_dir);
                    if let Err(e) = watcher.watch(&new_dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %new_dir.display(), error = %e, "cannot watch plugin_dir");
                    }
                    plugin_dir = new_dir;
                }
            }
            let names: BTreeSet<String> = paths
                .iter()
                .filter(|p| absolute(p).parent() == Some(plugin_dir.as_path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wasm" || e == "cwasm"))
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect();
            for name in names {
                let _ = shared.swap_plugin(&name).await;
            }
        }
        drop(watcher);
    }))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
