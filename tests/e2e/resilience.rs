//! Upstream resilience against real failing upstreams: retries (and what is
//! never retried), timeouts, resets, the circuit breaker, health checks,
//! outlier ejection, the retry budget and the bulkhead.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::support::{Behavior, TestGateway, Upstream, eventually, get, request};

fn service(name: &str, urls: &[String], extra: &str) -> String {
    let instances: Vec<String> = urls.iter().map(|u| format!("{{ url: \"{u}\" }}")).collect();
    format!(
        "  - name: {name}\n    instances: [{}]\n{extra}",
        instances.join(", ")
    )
}

fn one_route(svc: &str) -> String {
    format!("services:\n{svc}routes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_retried_around_but_posts_are_never_sent_twice() {
    let a = Upstream::start("a", Behavior::Echo).await;
    let b = Upstream::start("b", Behavior::Echo).await;
    let svc = service(
        "s",
        &[a.url(), b.url()],
        // Round robin sends every other first try to the dead instance; a
        // budget of 1.0 lets each of those retry (the default 0.2 would cap
        // them, see the_retry_budget_caps_retries_when_everything_fails).
        "    retries: { attempts: 2, on: [connect_failure, reset], budget: 1.0 }\n",
    );
    let gw = TestGateway::start(&one_route(&svc)).await;
    for _ in 0..4 {
        assert_eq!(get(&gw.url("/warm")).await.status, 200);
    }
    a.kill();
    // Every GET succeeds: the try that lands on the dead instance moves to b.
    for i in 0..20 {
        let r = get(&gw.url(&format!("/get/{i}"))).await;
        assert_eq!(r.status, 200, "GET {i}: {}", r.text());
        assert_eq!(r.header("x-upstream"), Some("b"));
    }
    // POSTs are not retried: some fail (502), and b never sees one twice.
    let before = b.hits();
    let mut failed = 0;
    for i in 0..20 {
        let r = request(
            Method::POST,
            &gw.url(&format!("/post/{i}")),
            &[],
            Bytes::from("order"),
        )
        .await;
        match r.status.as_u16() {
            200 => {}
            502 => failed += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        failed > 0,
        "round robin sent some POSTs to the dead instance"
    );
    let posts: Vec<String> = b
        .received()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.uri)
        .collect();
    assert_eq!(posts.len(), 20 - failed);
    assert_eq!(b.hits() - before, 20 - failed);
    let mut unique = posts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        posts.len(),
        "a POST reached the upstream twice"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_may_opt_in_to_retrying_posts() {
    let a = Upstream::start("a", Behavior::Status(503)).await;
    let b = Upstream::start("b", Behavior::Echo).await;
    let svc = service(
        "s",
        &[a.url(), b.url()],
        "    retries: { attempts: 2, on: [\"503\"] }\n",
    );
    let yaml = format!(
        "services:\n{svc}routes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n    retry_non_idempotent: true\n"
    );
    let gw = TestGateway::start(&yaml).await;
    for i in 0..6 {
        let r = request(
            Method::POST,
            &gw.url(&format!("/p/{i}")),
            &[],
            Bytes::from("x"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["body"], "x", "the kept body is sent again");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstreams_time_out_per_try_and_in_total() {
    let slow = Upstream::start("slow", Behavior::Delay(Duration::from_secs(5))).await;
    let svc = service(
        "s",
        &[slow.url()],
        "    timeout: 600ms\n    per_try_timeout: 200ms\n    retries: { attempts: 5, on: [timeout], backoff_base: 1ms }\n",
    );
    let gw = TestGateway::start(&one_route(&svc)).await;
    let started = std::time::Instant::now();
    let r = get(&gw.url("/slow")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the gateway did not hang"
    );
    // The total timeout cut the retries short: at most 600ms / 200ms tries.
    assert!((2..=4).contains(&slow.hits()), "tries: {}", slow.hits());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_response_ends_the_client_response_without_hanging() {
    let bad = Upstream::start("bad", Behavior::ResetMidResponse).await;
    let ok = Upstream::start("ok", Behavior::Echo).await;
    let yaml = format!(
        "services:\n{}{}routes:\n  - id: bad\n    match: {{ path: /reset }}\n    upstream: bad\n  - id: ok\n    match: {{ path: /ok }}\n    upstream: ok\n",
        service("bad", &[bad.url()], ""),
        service("ok", &[ok.url()], "")
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..3 {
        let req = http::Request::get(gw.url("/reset"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let outcome =
            tokio::time::timeout(Duration::from_secs(5), crate::support::client::send(req)).await;
        let outcome = outcome.expect("the client is not left hanging");
        // The head (200, 1 MiB promised) was already forwarded: the body must
        // fail, not read as complete.
        assert!(
            outcome.is_err(),
            "a truncated body read as complete: {outcome:?}"
        );
    }
    assert_eq!(bad.hits(), 3);
    assert_eq!(
        get(&gw.url("/ok")).await.status,
        200,
        "the gateway still serves"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_on_5xx_then_half_opens_and_closes_on_recovery() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let svc = service(
        "s",
        &[up.url()],
        "    circuit_breaker: { failure_threshold: 3, open_for: 1s, half_open_requests: 1 }\n",
    );
    let gw = TestGateway::start(&one_route(&svc)).await;
    up.set_status(Some(500));
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/x")).await.status, 500);
    }
    let hits = up.hits();
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "circuit_open");
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(
        up.hits(),
        hits,
        "an open breaker does not touch the upstream"
    );
    // Still failing when the breaker probes: it opens again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&gw.url("/probe")).await.status, 500);
    assert_eq!(get(&gw.url("/x")).await.json()["error"], "circuit_open");
    // Recovered: the next probe closes it and traffic flows.
    up.set_status(None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&gw.url("/probe")).await.status, 200);
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/x")).await.status, 200);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_a_failing_instance_out_and_put_it_back() {
    let a = Upstream::start("a", Behavior::Echo).await;
    let b = Upstream::start("b", Behavior::Echo).await;
    let svc = service(
        "s",
        &[a.url(), b.url()],
        "    health_check: { path: /healthz, interval: 100ms, timeout: 500ms, unhealthy_threshold: 2, healthy_threshold: 2 }\n",
    );
    let gw = TestGateway::start(&one_route(&svc)).await;
    assert!(
        eventually(Duration::from_secs(5), async || a
            .received()
            .iter()
            .any(|r| r.uri == "/healthz"))
        .await,
        "a is probed"
    );
    a.set_status(Some(503));
    // Once a is out, every request lands on b.
    let only_b = eventually(Duration::from_secs(5), async || {
        let mut all_b = true;
        for _ in 0..6 {
            let r = get(&gw.url("/x")).await;
            all_b &= r.status == 200 && r.header("x-upstream") == Some("b");
        }
        all_b
    })
    .await;
    assert!(only_b, "the failing instance was not taken out");
    a.set_status(None);
    let a_back = eventually(Duration::from_secs(5), async || {
        let mut seen_a = false;
        for _ in 0..4 {
            seen_a |= get(&gw.url("/x")).await.header("x-upstream") == Some("a");
        }
        seen_a
    })
    .await;
    assert!(a_back, "the recovered instance was not put back");
    // With every instance failing its checks, requests get 503 at once.
    a.set_status(Some(503));
    b.set_status(Some(503));
    let none = eventually(Duration::from_secs(5), async || {
        let r = get(&gw.url("/x")).await;
        r.status == 503 && r.text().contains("no_healthy_upstream")
    })
    .await;
    assert!(none);
    let r = get(&gw.url("/x")).await;
    assert!(
        r.json()["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_an_instance_that_keeps_failing() {
    let a = Upstream::start("a", Behavior::Status(502)).await;
    let b = Upstream::start("b", Behavior::Echo).await;
    let svc = service(
        "s",
        &[a.url(), b.url()],
        "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1s }\n",
    );
    let gw = TestGateway::start(&one_route(&svc)).await;
    for _ in 0..6 {
        get(&gw.url("/x")).await;
    }
    let a_hits = a.hits();
    assert_eq!(a_hits, 2, "ejected after two consecutive failures");
    for _ in 0..10 {
        assert_eq!(get(&gw.url("/x")).await.header("x-upstream"), Some("b"));
    }
    assert_eq!(a.hits(), a_hits);
    // After the ejection period it gets traffic again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..4 {
        get(&gw.url("/x")).await;
    }
    assert!(
        a.hits() > a_hits,
        "the instance came back after its ejection"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_when_everything_fails() {
    let down = Upstream::start("down", Behavior::Status(503)).await;
    let svc = service(
        "s",
        &[down.url()],
        "    retries: { attempts: 3, on: [\"503\"], backoff_base: 1ms, backoff_max: 2ms, budget: 0.2 }\n",
    );
    let gw = TestGateway::start(&one_route(&svc)).await;
    for _ in 0..100 {
        assert_eq!(get(&gw.url("/x")).await.status, 503);
    }
    let tries = down.hits();
    // Without a budget: 300 tries. With it: 100 + 20 % + the 10 banked at start.
    assert!(tries > 110, "retries happen at all ({tries})");
    assert!(
        tries <= 131,
        "the budget held retries to ~20 %: {tries} tries"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulkhead_answers_503_at_its_cap() {
    let slow = Upstream::start("slow", Behavior::Delay(Duration::from_millis(700))).await;
    let svc = service("s", &[slow.url()], "    max_concurrent_requests: 2\n");
    let gw = TestGateway::start(&one_route(&svc)).await;
    let url = gw.url("/x");
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let mut ok = 0;
    let mut overloaded = 0;
    for c in calls {
        let r = c.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(r.json()["error"], "upstream_overloaded");
                overloaded += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((ok, overloaded), (2, 3));
    assert_eq!(slow.hits(), 2, "nothing past the cap reached the upstream");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resilience_settings_are_named_errors() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let cases = [
        (
            "    retries: { attempts: 0 }\n",
            "retries.attempts: must be at least 1",
        ),
        ("    retries: { on: [\"404\"] }\n", "retries.on[0]"),
        ("    retries: { budget: 1.5 }\n", "retries.budget"),
        (
            "    circuit_breaker: { failure_threshold: 0 }\n",
            "circuit_breaker.failure_threshold",
        ),
        (
            "    health_check: { path: healthz }\n",
            "health_check.path: must start with `/`",
        ),
        (
            "    max_concurrent_requests: 0\n",
            "max_concurrent_requests: must be at least 1",
        ),
        (
            "    protocol: h2\n",
            "services[0].protocol: h2 is HTTP/2 over TLS",
        ),
        ("    protocol: spdy\n", "`spdy`: expected http1, h2 or h2c"),
    ];
    for (extra, expected) in cases {
        let err = TestGateway::try_start(&one_route(&service("s", &[up.url()], extra)))
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted: {extra}"));
        assert!(err.contains(expected), "for {extra:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_state_of_services_it_did_not_change() {
    let up = Upstream::start("up", Behavior::Status(500)).await;
    let svc = service(
        "s",
        &[up.url()],
        "    circuit_breaker: { failure_threshold: 2, open_for: 30s }\n",
    );
    let gw = TestGateway::start(&one_route(&svc)).await;
    for _ in 0..2 {
        assert_eq!(get(&gw.url("/x")).await.status, 500);
    }
    assert_eq!(get(&gw.url("/x")).await.json()["error"], "circuit_open");
    // A new route, same service settings: the open breaker carries over.
    gw.write_config(&format!(
        "{}  - id: extra\n    match: {{ path: /extra }}\n    upstream: s\n",
        one_route(&svc)
    ));
    let reloads = || {
        gw.shared()
            .stats
            .reloads_ok
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert!(
        eventually(Duration::from_secs(5), async || reloads() == 1).await,
        "reloaded"
    );
    assert_eq!(gw.shared().snapshot().routes.len(), 2);
    assert_eq!(get(&gw.url("/extra")).await.json()["error"], "circuit_open");
    assert_eq!(get(&gw.url("/x")).await.json()["error"], "circuit_open");
    // Changing the service's settings builds it anew (closed breaker).
    let changed = service(
        "s",
        &[up.url()],
        "    circuit_breaker: { failure_threshold: 3, open_for: 30s }\n",
    );
    gw.write_config(&one_route(&changed));
    assert!(
        eventually(Duration::from_secs(5), async || reloads() == 2).await,
        "reloaded"
    );
    assert_eq!(
        get(&gw.url("/x")).await.status,
        500,
        "a fresh, closed breaker"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_rate_opens_the_breaker_without_consecutive_failures() {
    let bad = Upstream::start("bad", Behavior::Status(500)).await;
    let good = Upstream::start("good", Behavior::Echo).await;
    // Round robin alternates: never two failures in a row, half of them failed.
    let svc = service(
        "s",
        &[bad.url(), good.url()],
        "    circuit_breaker: { failure_threshold: 100, failure_rate: 0.5, window: 60s, min_requests: 10, open_for: 30s }\n",
    );
    let gw = TestGateway::start(&one_route(&svc)).await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get(&gw.url("/x")).await.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        5,
        "{statuses:?}"
    );
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.json()["error"], "circuit_open", "5 of 10 tries failed");
    let err = TestGateway::try_start(&one_route(&service(
        "s",
        &[good.url()],
        "    circuit_breaker: { window: 10s }\n",
    )))
    .await
    .err()
    .expect("window without failure_rate");
    assert!(
        err.contains("`window` and `min_requests` need `failure_rate`"),
        "{err}"
    );
    gw.stop().await;
}
