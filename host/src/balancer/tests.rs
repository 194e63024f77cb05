use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn instances(weights: &[u32]) -> Vec<Arc<Instance>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            Arc::new(Instance::new(&InstanceConfig {
                url: format!("http://10.0.0.{}:80", i + 1).parse().unwrap(),
                weight: w,
            }))
        })
        .collect()
}

fn key(headers: &HeaderMap, last_octet: u8) -> SelectKey<'_> {
    SelectKey {
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 0, last_octet)),
        headers,
    }
}

#[test]
fn smooth_weighted_pattern_is_interleaved() {
    let insts = instances(&[3, 1, 1]);
    let b = Balancer::build(&LoadBalancerKind::WeightedRoundRobin, &insts);
    let h = HeaderMap::new();
    let seq: Vec<usize> = (0..10)
        .map(|_| b.select(&insts, &key(&h, 1)).unwrap())
        .collect();
    assert_eq!(seq, vec![0, 1, 0, 2, 0, 0, 1, 0, 2, 0]);
}

#[test]
fn round_robin_skips_unhealthy() {
    let insts = instances(&[1, 1, 1]);
    insts[1].set_healthy(false);
    let b = Balancer::build(&LoadBalancerKind::RoundRobin, &insts);
    let h = HeaderMap::new();
    let seq: Vec<usize> = (0..4)
        .map(|_| b.select(&insts, &key(&h, 1)).unwrap())
        .collect();
    assert!(!seq.contains(&1));
    insts[0].set_healthy(false);
    insts[2].set_healthy(false);
    assert_eq!(b.select(&insts, &key(&h, 1)), None);
}

#[test]
fn least_connections_prefers_idle() {
    let insts = instances(&[1, 1, 1]);
    let _busy = (insts[0].begin(), insts[2].begin());
    let b = Balancer::build(&LoadBalancerKind::LeastConnections, &insts);
    let h = HeaderMap::new();
    for _ in 0..5 {
        assert_eq!(b.select(&insts, &key(&h, 1)), Some(1));
    }
}

#[test]
fn consistent_hash_moves_few_keys_when_growing() {
    let three = instances(&[1, 1, 1]);
    let four = instances(&[1, 1, 1, 1]);
    let (r3, r4) = (Ring::new(&three), Ring::new(&four));
    let total = 10_000u64;
    let moved = (0..total)
        .filter(|k| {
            let h = stable_hash(&k.to_le_bytes());
            r3.select(h, &three) != r4.select(h, &four)
        })
        .count() as f64;
    // Ideal is 1/4 of the keys; anything near 1 would mean rehash-everything.
    assert!(moved / (total as f64) < 0.35, "moved {moved}");
    // Balanced within reason.
    let mut counts = [0u32; 3];
    for k in 0..total {
        counts[r3.select(stable_hash(&k.to_le_bytes()), &three).unwrap()] += 1;
    }
    assert!(counts.iter().all(|&c| c > 2_500), "{counts:?}");
}

#[test]
fn random_spreads_and_respects_health() {
    let insts = instances(&[1, 1, 1]);
    let b = Balancer::build(&LoadBalancerKind::Random, &insts);
    let h = HeaderMap::new();
    let mut counts = [0u32; 3];
    for _ in 0..3000 {
        counts[b.select(&insts, &key(&h, 1)).unwrap()] += 1;
    }
    assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    insts[0].set_healthy(false);
    assert!((0..100).all(|_| b.select(&insts, &key(&h, 1)) != Some(0)));
}
