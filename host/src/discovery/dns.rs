//! DNS discovery: looks the name up (A, AAAA, or SRV and then each target's
//! addresses), sends the list, and looks again when the answer's TTL runs
//! out (at most `refresh` later, at least a second). A failed lookup keeps
//! the last list; a name with no records is an empty list.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::sync::mpsc;

use super::Update;
use crate::config::{DnsDiscovery, DnsRecord, InstanceConfig};

/// Never look up more often than this, whatever the TTL.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Follows `d` for good.
pub(super) async fn watch(service: Arc<str>, d: DnsDiscovery, tx: mpsc::UnboundedSender<Update>) {
    let resolver = match resolver(&d) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(service = %service, error = %e, "DNS discovery cannot start");
            return;
        }
    };
    loop {
        let wait = match resolve(&resolver, &d).await {
            Ok((list, ttl)) => {
                let _ = tx.send((service.clone(), list));
                ttl.clamp(MIN_INTERVAL, d.refresh)
            }
            Err(e) => {
                tracing::warn!(service = %service, name = %d.name, error = %e, "DNS lookup failed; keeping the last instances");
                MIN_INTERVAL.max(d.refresh / 10).min(d.refresh)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn resolver(d: &DnsDiscovery) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if d.servers.is_empty() {
        TokioResolver::builder(provider)
            .map_err(|e| format!("reading the system resolver config: {e}"))?
    } else {
        let servers = d
            .servers
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    // The name is used as written: no search domains tried first.
    builder.options_mut().ndots = 0;
    builder.build().map_err(|e| e.to_string())
}

/// The instances `d` names now, and how long the answer is valid.
async fn resolve(
    r: &TokioResolver,
    d: &DnsDiscovery,
) -> Result<(Vec<InstanceConfig>, Duration), String> {
    let kind = match d.record {
        DnsRecord::A => RecordType::A,
        DnsRecord::Aaaa => RecordType::AAAA,
        DnsRecord::Srv => RecordType::SRV,
    };
    let lookup = match r.lookup(d.name.as_str(), kind).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() => return Ok((Vec::new(), d.refresh)),
        Err(e) => return Err(e.to_string()),
    };
    let mut ttl = lookup
        .valid_until()
        .saturating_duration_since(Instant::now());
    let mut targets: Vec<(SocketAddr, u32)> = Vec::new();
    if d.record == DnsRecord::Srv {
        // Lower priorities are backups for the lowest one: only it serves.
        let srvs: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::SRV(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let best = srvs.iter().map(|s| s.priority).min();
        for s in srvs.iter().filter(|s| Some(s.priority) == best) {
            let ips = r
                .lookup_ip(s.target.clone())
                .await
                .map_err(|e| format!("{}: {e}", s.target))?;
            ttl = ttl.min(ips.valid_until().saturating_duration_since(Instant::now()));
            for ip in ips.iter() {
                targets.push((SocketAddr::new(ip, s.port), u32::from(s.weight).max(1)));
            }
        }
    } else {
        let port = d.port.unwrap_or(80);
        for rec in lookup.answers() {
            let ip = match &rec.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
            };
            targets.push((SocketAddr::new(ip, port), 1));
        }
    }
    let list = targets
        .into_iter()
        .filter_map(|(addr, w)| InstanceConfig::parse(&format!("{}://{addr}", d.scheme), w).ok())
        .collect();
    Ok((list, ttl))
}
