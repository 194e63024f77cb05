//! A route's own terms over its service's: `timeout`, `per_try_timeout`,
//! `retries` and `enabled: false`, against real slow and failing upstreams.

use std::time::Duration;

use crate::support::{Behavior, TestGateway, Upstream, get};

fn gateway(up: &Upstream, service_extra: &str, routes: &str) -> String {
    format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\n{service_extra}routes:\n{routes}",
        up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_cuts_its_service_timeout_short() {
    let slow = Upstream::start("slow", Behavior::Delay(Duration::from_millis(1500))).await;
    let routes = "  - { id: quick, match: { path: /quick }, upstream: s, timeout: 300ms }\n  \
                  - { id: patient, match: { path: /patient }, upstream: s }\n";
    let gw = TestGateway::start(&gateway(&slow, "    timeout: 30s\n", routes)).await;
    let r = get(&gw.url("/quick")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert_eq!(slow.hits(), 1);
    // The route without an override waits as long as its service allows.
    let r = get(&gw.url("/patient")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(slow.last().uri, "/patient");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_retries_where_its_service_does_not() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let routes = "  - { id: retried, match: { path: /retried }, upstream: s, \
                  retries: { attempts: 3, on: [\"503\"], backoff_base: 1ms, budget: 1.0 } }\n  \
                  - { id: plain, match: { path: /plain }, upstream: s }\n";
    let gw = TestGateway::start(&gateway(&up, "", routes)).await;
    up.set_status(Some(503));
    assert_eq!(get(&gw.url("/plain")).await.status, 503);
    assert_eq!(up.hits(), 1, "the service has no retry policy");
    assert_eq!(get(&gw.url("/retried")).await.status, 503);
    assert_eq!(up.hits(), 4, "the route's policy: three tries in all");
    // Recovered upstream: one try, success.
    up.set_status(None);
    assert_eq!(get(&gw.url("/retried")).await.status, 200);
    assert_eq!(up.hits(), 5);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_per_try_timeout_retries_a_slow_try() {
    let slow = Upstream::start("slow", Behavior::Delay(Duration::from_secs(3))).await;
    let routes = "  - { id: r, match: { path: /* }, upstream: s, per_try_timeout: 200ms, \
                  retries: { attempts: 2, on: [timeout], backoff_base: 1ms, budget: 1.0 } }\n";
    let gw = TestGateway::start(&gateway(&slow, "    timeout: 10s\n", routes)).await;
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(slow.hits(), 2, "each try was cut at 200ms and retried once");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_route_matches_nothing_and_the_next_route_serves() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let routes = "  - { id: off, match: { path: /api/* }, upstream: s, enabled: false, priority: 10, rewrite: { path: /off } }\n  \
                  - { id: on, match: { path: /api/* }, upstream: s }\n  \
                  - { id: gone, match: { path: /gone }, upstream: s, enabled: false }\n";
    let gw = TestGateway::start(&gateway(&up, "", routes)).await;
    let r = get(&gw.url("/api/x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().uri,
        "/api/x",
        "the disabled route did not rewrite"
    );
    let r = get(&gw.url("/gone")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no_route");
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_route_terms_are_named_errors() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let cases = [
        ("timeout: 0s", "routes[0].timeout: must be more than 0s"),
        (
            "per_try_timeout: 0s",
            "routes[0].per_try_timeout: must be more than 0s",
        ),
        ("retries: { attempts: 0 }", "routes[0].retries.attempts"),
        ("enabled: maybe", "routes[0]"),
    ];
    for (extra, expected) in cases {
        let routes = format!("  - {{ id: r, match: {{ path: /* }}, upstream: s, {extra} }}\n");
        let err = TestGateway::try_start(&gateway(&up, "", &routes))
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted: {extra}"));
        assert!(err.contains(expected), "for {extra:?}: {err}");
    }
}
