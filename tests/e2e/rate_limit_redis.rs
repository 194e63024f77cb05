//! The `rate-limit` plugin on the Redis backend, against a real redis-server:
//! the same answers as local, one limit shared by several gateway processes,
//! and outages (killed, paused) handled by `on_backend_error`.

use std::time::Duration;

use crate::support::*;

fn config(up: &Upstream, redis: &RedisServer, routes: &str) -> String {
    format!(
        "redis: {{ url: \"{}\", timeout: 100ms }}\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n{routes}",
        redis.url(),
        up.url()
    )
}

fn limited(id: &str, path: &str, limit: &str) -> String {
    format!(
        "  - id: {id}\n    match: {{ path: \"{path}\" }}\n    upstream: s\n    plugins:\n      - {{ name: rate-limit, config: {{ backend: redis, {limit} }} }}\n"
    )
}

async fn gateway(up: &Upstream, redis: &RedisServer, routes: &str) -> TestGateway {
    let rl = plugin_path("rate-limit");
    TestGateway::start_with_plugins(&config(up, redis, routes), &[("rate-limit", &rl)]).await
}

/// A request that hangs is a failure in itself: the backend timeout must cut it.
async fn status(url: &str) -> u16 {
    tokio::time::timeout(Duration::from_secs(5), get(url))
        .await
        .unwrap_or_else(|_| panic!("{url} hung"))
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_counts_like_the_local_one() {
    let redis = RedisServer::start();
    let up = Upstream::start("up", Behavior::Echo).await;
    let routes = limited(
        "tb",
        "/tb",
        "limits: [{ name: per-ip, scope: ip, limit: 5, window: 1m }]",
    ) + &limited(
        "sw",
        "/sw",
        "algorithm: sliding_window, limits: [{ scope: ip, limit: 3, window: 1m }]",
    );
    let gw = gateway(&up, &redis, &routes).await;
    for i in 0..5 {
        let r = get(&gw.url("/tb")).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some((4 - i).to_string().as_str())
        );
    }
    let r = get(&gw.url("/tb")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("12"), "one token per 12 s");
    assert_eq!(r.header("ratelimit-policy"), Some("\"per-ip\";q=5;w=60"));
    let sw: Vec<u16> = futures_statuses(&gw.url("/sw"), 5).await;
    assert_eq!(sw, [200, 200, 200, 429, 429]);
    assert_eq!(up.hits(), 8);
    gw.stop().await;
}

async fn futures_statuses(url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(status(url).await);
    }
    out
}

/// Three gateway processes, each under concurrent load, share one global
/// limit through Redis: together they admit the limit, within 2 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_share_one_limit() {
    const LIMIT: usize = 300;
    let redis = RedisServer::start();
    let up = Upstream::start("up", Behavior::Echo).await;
    let rl = plugin_path("rate-limit");
    let yaml = config(
        &up,
        &redis,
        &limited(
            "r",
            "/*",
            &format!("limits: [{{ scope: global, limit: {LIMIT}, window: 1h }}]"),
        ),
    );
    let gateways: Vec<GatewayProcess> = (0..3)
        .map(|_| GatewayProcess::spawn(&yaml, &[("rate-limit", &rl)]))
        .collect();
    // 3 gateways × 4 clients × 80 requests = 960 attempts for 300 tokens.
    let mut tasks = Vec::new();
    for gw in &gateways {
        for _ in 0..4 {
            let url = gw.url("/x");
            tasks.push(tokio::spawn(async move {
                let mut admitted: usize = 0;
                for _ in 0..80 {
                    match status(&url).await {
                        200 => admitted += 1,
                        429 => {}
                        other => panic!("unexpected status {other}"),
                    }
                }
                admitted
            }));
        }
    }
    let mut admitted: usize = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    eprintln!("three gateways admitted {admitted} of 960 for a limit of {LIMIT}");
    let tolerance = LIMIT * 2 / 100;
    assert!(
        admitted.abs_diff(LIMIT) <= tolerance,
        "admitted {admitted}, limit {LIMIT}"
    );
    assert_eq!(
        up.hits(),
        admitted,
        "only admitted requests reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_applies_on_backend_error_and_recovers() {
    let mut redis = RedisServer::start();
    let up = Upstream::start("up", Behavior::Echo).await;
    let routes = limited(
        "allow",
        "/allow",
        "on_backend_error: allow, limits: [{ scope: ip, limit: 1000, window: 1m }]",
    ) + &limited(
        "deny",
        "/deny",
        "on_backend_error: deny, limits: [{ scope: ip, limit: 3, window: 1m }]",
    );
    let gw = gateway(&up, &redis, &routes).await;
    assert_eq!(status(&gw.url("/allow")).await, 200);
    assert_eq!(status(&gw.url("/deny")).await, 200);

    redis.kill();
    for _ in 0..3 {
        assert_eq!(
            status(&gw.url("/allow")).await,
            200,
            "allow lets traffic through"
        );
        let r = get(&gw.url("/deny")).await;
        assert_eq!(r.status, 503, "deny refuses traffic");
        assert_eq!(r.json()["error"], "rate_limit_unavailable");
    }

    // A fresh, empty Redis on the same port: enforcement resumes on its own.
    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), async || status(&gw.url("/deny"))
            .await
            == 200)
        .await,
        "the gateway reconnected"
    );
    let rest = futures_statuses(&gw.url("/deny"), 4).await;
    assert!(rest.contains(&429), "limit enforced again: {rest:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_takes_the_timeout_path() {
    let redis = RedisServer::start();
    let up = Upstream::start("up", Behavior::Echo).await;
    let routes = limited(
        "allow",
        "/allow",
        "limits: [{ scope: ip, limit: 1000, window: 1m }]",
    ) + &limited(
        "deny",
        "/deny",
        "on_backend_error: deny, limits: [{ scope: ip, limit: 1000, window: 1m }]",
    );
    let gw = gateway(&up, &redis, &routes).await;
    assert_eq!(status(&gw.url("/deny")).await, 200);

    redis.pause();
    for _ in 0..3 {
        assert_eq!(status(&gw.url("/allow")).await, 200, "allow is the default");
        assert_eq!(status(&gw.url("/deny")).await, 503);
    }
    redis.resume();
    assert!(
        eventually(Duration::from_secs(10), async || status(&gw.url("/deny"))
            .await
            == 200)
        .await,
        "answers again once Redis does"
    );
    gw.stop().await;
}
