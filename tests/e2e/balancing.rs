//! Load balancers and weighted splits over real upstreams.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;

use crate::support::*;

async fn upstreams(n: usize) -> Vec<Upstream> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Upstream::start(&format!("u{i}"), Behavior::Echo).await);
    }
    v
}

fn service(name: &str, lb: &str, ups: &[Upstream], weights: &[u32]) -> String {
    let inst: Vec<String> = ups
        .iter()
        .zip(weights.iter().chain(std::iter::repeat(&1)))
        .map(|(u, w)| format!("{{ url: \"{}\", weight: {w} }}", u.url()))
        .collect();
    format!(
        "  - name: {name}\n    load_balancer: {lb}\n    hash_header: x-user\n    instances: [{}]\n",
        inst.join(", ")
    )
}

async fn tally(
    gw: &TestGateway,
    n: usize,
    headers: impl Fn(usize) -> Vec<(String, String)>,
) -> (HashMap<String, usize>, Vec<String>) {
    let mut counts = HashMap::new();
    let mut seq = Vec::new();
    for i in 0..n {
        let h = headers(i);
        let hr: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let r = request(Method::GET, &gw.url("/"), &hr, "").await;
        let who = r.header("x-upstream").unwrap_or("none").to_string();
        *counts.entry(who.clone()).or_insert(0) += 1;
        seq.push(who);
    }
    (counts, seq)
}

fn route(upstream: &str) -> String {
    format!("routes:\n  - {{ id: r, match: {{ path: /* }}, upstream: {upstream} }}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_and_random_spread_evenly() {
    let ups = upstreams(3).await;
    for lb in ["round_robin", "random", "least_connections"] {
        let gw = TestGateway::start(&format!(
            "services:\n{}{}",
            service("s", lb, &ups, &[]),
            route("s")
        ))
        .await;
        let (counts, _) = tally(&gw, 300, |_| vec![]).await;
        for u in &ups {
            let c = counts.get(&u.name).copied().unwrap_or(0);
            assert!((70..=130).contains(&c), "{lb}: {counts:?}");
        }
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_interleaves() {
    let ups = upstreams(3).await;
    let gw = TestGateway::start(&format!(
        "services:\n{}{}",
        service("s", "weighted_round_robin", &ups, &[3, 1, 1]),
        route("s")
    ))
    .await;
    let (counts, seq) = tally(&gw, 10, |_| vec![]).await;
    assert_eq!(
        seq,
        ["u0", "u1", "u0", "u2", "u0", "u0", "u1", "u0", "u2", "u0"],
        "{counts:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_prefers_the_idle_instance() {
    let slow = Upstream::start("slow", Behavior::Delay(Duration::from_millis(1500))).await;
    let fast = Upstream::start("fast", Behavior::Echo).await;
    let yaml = format!(
        "services:\n  - name: s\n    load_balancer: least_connections\n    instances: [{{ url: \"{}\" }}, {{ url: \"{}\" }}]\n{}",
        slow.url(),
        fast.url(),
        route("s")
    );
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("/");
    // Keep the slow instance busy, then see where new requests go.
    let mut busy = Vec::new();
    for _ in 0..4 {
        let u = url.clone();
        busy.push(tokio::spawn(async move { get(&u).await }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (counts, _) = tally(&gw, 20, |_| vec![]).await;
    assert!(counts.get("fast").copied().unwrap_or(0) >= 18, "{counts:?}");
    for b in busy {
        b.await.unwrap();
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_hash_is_consistent_and_moves_few_keys() {
    let ups = upstreams(4).await;
    let yaml3 = format!(
        "services:\n{}{}",
        service("s", "header_hash", &ups[..3], &[]),
        route("s")
    );
    let gw = TestGateway::start(&yaml3).await;
    let keys = 200;
    let user = |i: usize| vec![("x-user".to_string(), format!("user-{i}"))];
    let (_, first) = tally(&gw, keys, user).await;
    let (_, again) = tally(&gw, keys, user).await;
    assert_eq!(first, again, "same key, same instance");
    gw.write_config(&format!(
        "services:\n{}{}",
        service("s", "header_hash", &ups, &[]),
        route("s")
    ));
    let reloaded = eventually(Duration::from_secs(5), async || {
        gw.shared()
            .stats
            .reloads_ok
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    assert!(reloaded);
    let (counts, after) = tally(&gw, keys, user).await;
    let moved = first.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(moved * 100 <= keys * 40, "moved {moved} of {keys}");
    assert!(
        counts.contains_key("u3"),
        "the new instance gets some keys: {counts:?}"
    );
    assert!(
        first.iter().zip(&after).all(|(a, b)| a == b || b == "u3"),
        "keys only move to the new instance"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_and_sticky_split() {
    let a = Upstream::start("stable", Behavior::Echo).await;
    let b = Upstream::start("canary", Behavior::Echo).await;
    let services = format!(
        "services:\n  - name: stable\n    instances: [{{ url: \"{}\" }}]\n  - name: canary\n    instances: [{{ url: \"{}\" }}]\n",
        a.url(),
        b.url()
    );
    let gw = TestGateway::start(&format!(
        "{services}routes:\n  - {{ id: r, match: {{ path: / }}, split: [{{ service: stable, weight: 90 }}, {{ service: canary, weight: 10 }}] }}\n  - {{ id: s, match: {{ path: /sticky }}, split: [{{ service: stable, weight: 50 }}, {{ service: canary, weight: 50 }}], split_key: \"header:x-user\" }}\n"
    ))
    .await;
    let (counts, _) = tally(&gw, 2000, |_| vec![]).await;
    let canary = counts.get("canary").copied().unwrap_or(0) as f64 / 2000.0;
    assert!((0.07..=0.13).contains(&canary), "canary share {canary}");
    for user in 0..20 {
        let h = [("x-user", format!("u{user}"))];
        let hr: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let first = request(Method::GET, &gw.url("/sticky"), &hr, "")
            .await
            .header("x-upstream")
            .unwrap()
            .to_string();
        for _ in 0..5 {
            let again = request(Method::GET, &gw.url("/sticky"), &hr, "").await;
            assert_eq!(
                again.header("x-upstream").unwrap(),
                first,
                "user {user} stays on one side"
            );
        }
    }
    gw.stop().await;
}
