//! Service discovery: instances that register themselves under an etcd
//! prefix (each on its own lease, so a dead one vanishes when its lease
//! expires), or the addresses and SRV targets of a DNS name, join the
//! service's static `instances`. One watcher per discovered service follows
//! its source; each change rebuilds the snapshot with the new list, and
//! instances still listed keep their health and ejection state
//! (`Service::build`).

mod dns;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, WatchOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, Discovery as Source, EtcdDiscovery, InstanceConfig};
use crate::fleet::Link;

/// A discovered list for one service.
pub type Update = (Arc<str>, Vec<InstanceConfig>);

/// A watched service: its name and where its instances register.
type Watched = (Arc<str>, Source);

/// The discovered instances and the watchers that find them.
pub struct Discovery {
    found: Mutex<HashMap<Arc<str>, Vec<InstanceConfig>>>,
    watchers: Mutex<HashMap<Watched, JoinHandle<()>>>,
    tx: mpsc::UnboundedSender<Update>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Update>>>,
    fleet: Option<Arc<Link>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Discovery {
    /// Discovery for a gateway; a fleet node's services without `endpoints`
    /// use the fleet's etcd.
    pub fn new(fleet: Option<Arc<Link>>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            found: Mutex::default(),
            watchers: Mutex::default(),
            tx,
            rx: Mutex::new(Some(rx)),
            fleet,
        }
    }

    /// The stream of changed lists (taken once, by the task that applies them).
    pub fn take_updates(&self) -> Option<mpsc::UnboundedReceiver<Update>> {
        lock(&self.rx).take()
    }

    /// Adds what was discovered to each discovered service's instances.
    pub fn overlay(&self, cfg: &mut Config) {
        let found = lock(&self.found);
        for s in &mut cfg.services {
            if s.discovery.is_some()
                && let Some(list) = found.get(&s.name)
            {
                s.instances.extend(list.iter().cloned());
            }
        }
    }

    /// Records `list` for `service`; false when it is what was known.
    pub fn record(&self, service: &Arc<str>, mut list: Vec<InstanceConfig>) -> bool {
        // Sources list in no stable order (DNS answers rotate).
        list.sort_by_cached_key(|i| (i.url.to_string(), i.weight));
        let mut found = lock(&self.found);
        if found.get(service) == Some(&list) {
            return false;
        }
        found.insert(service.clone(), list);
        true
    }

    /// Starts a watcher for each discovered service of `cfg` that has none
    /// and stops those no longer configured.
    pub fn reconcile(&self, cfg: &Config) {
        let wanted: Vec<Watched> = cfg
            .services
            .iter()
            .filter_map(|s| s.discovery.clone().map(|d| (s.name.clone(), d)))
            .collect();
        let mut watchers = lock(&self.watchers);
        watchers.retain(|k, task| {
            let keep = wanted.contains(k);
            if !keep {
                task.abort();
                lock(&self.found).remove(&k.0);
            }
            keep
        });
        for (name, d) in wanted {
            if watchers.contains_key(&(name.clone(), d.clone())) {
                continue;
            }
            let task = match &d {
                Source::Etcd(e) => tokio::spawn(watch(
                    name.clone(),
                    e.clone(),
                    self.fleet.clone(),
                    self.tx.clone(),
                )),
                Source::Dns(n) => {
                    tokio::spawn(dns::watch(name.clone(), n.clone(), self.tx.clone()))
                }
            };
            watchers.insert((name, d), task);
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for (_, t) in lock(&self.watchers).drain() {
            t.abort();
        }
    }
}

/// Follows one prefix for good: reads it whole, watches it, reads it whole
/// again on every change; after an etcd failure, the same after a backoff
/// (the last list keeps serving meanwhile).
async fn watch(
    service: Arc<str>,
    d: EtcdDiscovery,
    fleet: Option<Arc<Link>>,
    tx: mpsc::UnboundedSender<Update>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = follow(&service, &d, fleet.as_deref(), &tx).await;
        tracing::warn!(service = %service, prefix = %d.prefix, error = %ended, "discovery watch lost; keeping the last instances");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow(
    service: &Arc<str>,
    d: &EtcdDiscovery,
    fleet: Option<&Link>,
    tx: &mpsc::UnboundedSender<Update>,
) -> String {
    let run = async {
        let mut client = client(d, fleet).await?;
        let (list, rev) = read(&mut client, &d.prefix).await?;
        let _ = tx.send((service.clone(), list));
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1);
        let mut stream = client.watch(d.prefix.as_str(), Some(opts)).await?;
        while let Some(resp) = stream.message().await? {
            if resp.canceled() {
                return Err(etcd_client::Error::WatchError(resp.cancel_reason().into()));
            }
            if !resp.events().is_empty() {
                let (list, _) = read(&mut client, &d.prefix).await?;
                let _ = tx.send((service.clone(), list));
            }
        }
        Ok::<_, etcd_client::Error>(())
    };
    match run.await {
        Ok(()) => "watch closed".into(),
        Err(e) => e.to_string(),
    }
}

async fn client(d: &EtcdDiscovery, fleet: Option<&Link>) -> Result<Client, etcd_client::Error> {
    if d.endpoints.is_empty() {
        return match fleet {
            Some(link) => link
                .connect()
                .await
                .map(|s| s.client())
                .map_err(|e| etcd_client::Error::InvalidArgs(e.to_string())),
            None => Err(etcd_client::Error::InvalidArgs(
                "discovery.etcd.endpoints is required on a gateway that is not a fleet node".into(),
            )),
        };
    }
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(3))
        .with_require_leader(true);
    Client::connect(&d.endpoints, Some(opts)).await
}

/// Every instance registered under `prefix`, and the revision read at.
async fn read(
    client: &mut Client,
    prefix: &str,
) -> Result<(Vec<InstanceConfig>, i64), etcd_client::Error> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let rev = resp.header().map_or(0, |h| h.revision());
    let list = resp
        .kvs()
        .iter()
        .filter_map(|kv| match parse(kv.value()) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "ignoring a registration");
                None
            }
        })
        .collect();
    Ok((list, rev))
}

/// `{"url": "...", "weight": n}` or a bare URL.
pub fn parse(value: &[u8]) -> Result<InstanceConfig, String> {
    let text = std::str::from_utf8(value).map_err(|_| "not UTF-8".to_string())?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => {
            let url = o
                .get("url")
                .and_then(serde_json::Value::as_str)
                .ok_or("no `url`")?;
            let weight = o
                .get("weight")
                .map_or(Some(1), serde_json::Value::as_u64)
                .and_then(|w| u32::try_from(w).ok())
                .ok_or("`weight` is not a whole number")?;
            InstanceConfig::parse(url, weight)
        }
        Ok(serde_json::Value::String(url)) => InstanceConfig::parse(&url, 1),
        _ => InstanceConfig::parse(text.trim(), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_json_or_a_bare_url() {
        let i = parse(br#"{"url": "http://10.0.0.5:8080", "weight": 3}"#).expect("json");
        assert_eq!(
            (i.url.to_string().as_str(), i.weight),
            ("http://10.0.0.5:8080/", 3)
        );
        assert_eq!(parse(b"https://a.internal:8443").expect("bare").weight, 1);
        assert_eq!(parse(br#""http://b:1""#).expect("json string").weight, 1);
        assert!(parse(b"ftp://x").is_err());
        assert!(parse(br#"{"url": "http://a:1", "weight": 0}"#).is_err());
        assert!(parse(br#"{"weight": 2}"#).is_err());
    }
}
