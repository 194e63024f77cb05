//! Connection caps, checked at accept: `limits.max_connections` per listener
//! and `limits.max_connections_per_ip` over all listeners. A connection past
//! either is closed before any byte is read, and counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Limits;

/// Open connections per client address, shared by every listener.
#[derive(Debug, Default)]
pub struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds `max_connections`.
    Listener,
    /// The client's address holds `max_connections_per_ip`.
    PerIp,
}

/// One admitted connection; its slots are given back on drop.
#[derive(Debug)]
pub struct Slot {
    listener: Arc<AtomicUsize>,
    per_ip: Option<(Arc<PerIp>, IpAddr)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::Relaxed);
        if let Some((table, ip)) = &self.per_ip {
            let mut open = table.open.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = open.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(ip);
                }
            }
        }
    }
}

/// Takes a slot for a connection from `ip`, or says which cap is full.
pub fn admit(
    limits: &Limits,
    listener: &Arc<AtomicUsize>,
    per_ip: &Arc<PerIp>,
    ip: IpAddr,
) -> Result<Slot, Refusal> {
    if listener.fetch_add(1, Ordering::Relaxed) >= limits.max_connections {
        listener.fetch_sub(1, Ordering::Relaxed);
        return Err(Refusal::Listener);
    }
    let mut slot = Slot {
        listener: listener.clone(),
        per_ip: None,
    };
    if let Some(max) = limits.max_connections_per_ip {
        let ip = ip.to_canonical();
        let mut open = per_ip.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        slot.per_ip = Some((per_ip.clone(), ip));
    }
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_slots_come_back() {
        let limits = Limits {
            max_connections: 3,
            max_connections_per_ip: Some(2),
            ..Limits::default()
        };
        let (l, t) = (Arc::new(AtomicUsize::new(0)), Arc::new(PerIp::default()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let s1 = admit(&limits, &l, &t, a).unwrap();
        let _s2 = admit(&limits, &l, &t, a).unwrap();
        assert_eq!(admit(&limits, &l, &t, a).unwrap_err(), Refusal::PerIp);
        let _s3 = admit(&limits, &l, &t, b).unwrap();
        assert_eq!(admit(&limits, &l, &t, b).unwrap_err(), Refusal::Listener);
        drop(s1);
        assert!(admit(&limits, &l, &t, a).is_ok(), "a slot came back");
        assert_eq!(l.load(Ordering::Relaxed), 2);
    }
}
