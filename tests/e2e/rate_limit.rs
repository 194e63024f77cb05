//! The built-in `rate-limit` plugin with the local backend, end to end.

use std::time::Duration;

use http::Method;

use crate::support::*;

async fn gateway(up: &Upstream, routes: &str) -> TestGateway {
    let (rl, kit) = (plugin_path("rate-limit"), plugin_path("testkit"));
    let yaml = format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n{routes}",
        up.url()
    );
    TestGateway::start_with_plugins(&yaml, &[("rate-limit", &rl), ("testkit", &kit)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_passes_then_429_with_headers() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = gateway(
        &up,
        "  - id: r\n    match: { path: /* }\n    upstream: s\n    plugins:\n      - { name: rate-limit, config: { limits: [{ name: per-ip, scope: ip, limit: 5, window: 1m }] } }\n",
    )
    .await;
    for i in 0..5 {
        let r = get(&gw.url("/")).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some((4 - i).to_string().as_str())
        );
        assert_eq!(r.header("ratelimit-policy"), Some("\"per-ip\";q=5;w=60"));
    }
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"], "rate_limited");
    assert_eq!(r.json()["request_id"], r.header("x-request-id").unwrap());
    assert_eq!(r.header("retry-after"), Some("12"), "one token per 12 s");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with("\"per-ip\";r=0;t=")
    );
    assert_eq!(up.hits(), 5, "limited requests never reach the upstream");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_plugins_answer_carries_the_headers_too() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = gateway(
        &up,
        "  - id: r\n    match: { path: /* }\n    upstream: s\n    plugins:\n      - { name: rate-limit, config: { limits: [{ scope: ip, limit: 10, window: 1m }] } }\n      - { name: testkit, config: { mode: deny, status: 403 } }\n",
    )
    .await;
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 403, "answered by the second plugin");
    assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("9"));
    let r = request(Method::GET, &gw.url("/"), &[("x-allow", "yes")], "").await;
    assert_eq!(r.status, 200, "answered by the upstream");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("8"));
    assert_eq!(r.header("ratelimit-policy"), Some("\"limit0\";q=10;w=60"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refill_and_keys_are_isolated() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = gateway(
        &up,
        "  - id: r\n    match: { path: /* }\n    upstream: s\n    plugins:\n      - { name: rate-limit, config: { limits: [{ scope: \"header:x-user\", limit: 4, window: 4s }] } }\n",
    )
    .await;
    let as_user = async |u: &str| {
        request(Method::GET, &gw.url("/"), &[("x-user", u)], "")
            .await
            .status
    };
    for _ in 0..4 {
        assert_eq!(as_user("a").await, 200);
    }
    assert_eq!(as_user("a").await, 429);
    assert_eq!(as_user("b").await, 200, "another key has its own bucket");
    // One token per second: the burst above finishes well inside it even on a
    // loaded machine, and 1.2 s later exactly one token is back.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(as_user("a").await, 200, "refilled");
    assert_eq!(as_user("a").await, 429);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_follow_the_consumer_attribute() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let limit = "{ name: rate-limit, config: { limits: [{ scope: consumer, limit: 1, window: 1m, tiers: { free: 2, premium: 5 } }] } }";
    let gw = gateway(
        &up,
        &format!(
            "  - id: free\n    match: {{ path: /free }}\n    upstream: s\n    plugins:\n      - {{ name: testkit, config: {{ mode: set-attr, name: consumer, value: alice }} }}\n      - {{ name: testkit, config: {{ mode: set-attr, name: tier, value: free }} }}\n      - {limit}\n  - id: premium\n    match: {{ path: /premium }}\n    upstream: s\n    plugins:\n      - {{ name: testkit, config: {{ mode: set-attr, name: consumer, value: bob }} }}\n      - {{ name: testkit, config: {{ mode: set-attr, name: tier, value: premium }} }}\n      - {limit}\n  - id: anon\n    match: {{ path: /anon }}\n    upstream: s\n    plugins:\n      - {limit}\n"
        ),
    )
    .await;
    let passes = async |path: &str| {
        let mut n = 0;
        for _ in 0..8 {
            if get(&gw.url(path)).await.status == 200 {
                n += 1;
            }
        }
        n
    };
    assert_eq!(passes("/free").await, 2);
    assert_eq!(passes("/premium").await, 5);
    assert_eq!(
        passes("/anon").await,
        1,
        "no consumer, no tier: keyed by IP with the base limit"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_rejected_at_load() {
    let up = Upstream::start("up", Behavior::Echo).await;
    for (config, message) in [
        (
            "{ limits: [{ scope: cookie, limit: 1, window: 1m }] }",
            "unknown scope `cookie`",
        ),
        (
            "{ limits: [{ scope: ip, limit: 1, window: soon }] }",
            "window `soon` must start with a number",
        ),
        (
            "{ limits: [{ scope: ip, window: 1m }] }",
            "set `limit`, `tiers`, or both",
        ),
        ("{ limits: [] }", "at least one limit"),
    ] {
        let config: serde_json::Value = serde_yaml::from_str(config).unwrap();
        let err = load_error(&up, "rate-limit", config.clone()).await;
        assert!(err.contains(message), "{config}: {err}");
    }
}
