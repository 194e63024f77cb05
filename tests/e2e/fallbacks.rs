//! Fallbacks against real failing upstreams: a static answer when the
//! breaker is open, another service when the instance is gone or answers a
//! listed 5xx, what is never a fallback's business, and the access log line
//! that says a fallback answered.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::support::{Behavior, TestGateway, Upstream, get, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_fallback_answers_while_the_breaker_is_open() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&format!(
        r#"access_log: {{ path: access.log }}
services:
  - name: s
    instances: [{{ url: "{}" }}]
    circuit_breaker: {{ failure_threshold: 2, open_for: 30s }}
routes:
  - id: r
    match: {{ path: /* }}
    upstream: s
    fallback:
      status: 200
      headers: {{ content-type: application/json, x-fallback: "catalog" }}
      body: '{{"items":[]}}'
"#,
        up.url()
    ))
    .await;
    up.set_status(Some(500));
    // A 500 the route does not list in `on_status` is passed on as it is.
    for _ in 0..2 {
        assert_eq!(get(&gw.url("/items")).await.status, 500);
    }
    let hits = up.hits();
    let r = get(&gw.url("/items")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"items":[]}"#);
    assert_eq!(r.header("x-fallback"), Some("catalog"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-length"), Some("12"));
    assert_eq!(
        up.hits(),
        hits,
        "the open breaker kept the upstream out of it"
    );
    let lines = gw.access_log_lines(3).await;
    assert_eq!(lines[0]["status"], 500);
    assert!(lines[0].get("fallback").is_none(), "{}", lines[0]);
    assert_eq!(lines[2]["status"], 200);
    assert_eq!(lines[2]["fallback"], "circuit_open");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_fallback_gets_the_same_request_when_the_instance_is_gone() {
    let primary = Upstream::start("primary", Behavior::Echo).await;
    let backup = Upstream::start("backup", Behavior::Echo).await;
    let gw = TestGateway::start(&format!(
        r#"access_log: {{ path: access.log }}
services:
  - name: primary
    instances: [{{ url: "{}" }}]
    fallback: {{ service: backup, on_status: [503] }}
  - name: backup
    instances: [{{ url: "{}" }}]
routes:
  - {{ id: r, match: {{ path: /* }}, upstream: primary }}
"#,
        primary.url(),
        backup.url()
    ))
    .await;
    // A listed status from the primary: the backup answers the same request.
    primary.set_status(Some(503));
    let r = request(
        Method::POST,
        &gw.url("/orders?x=1"),
        &[("x-tag", "t1")],
        Bytes::from("order-1"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(primary.hits(), 1);
    let got = backup.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.uri, "/orders?x=1");
    assert_eq!(got.body, Bytes::from("order-1"));
    assert_eq!(got.headers["x-tag"], "t1");
    // The primary gone altogether (connection refused).
    primary.kill();
    let r = request(
        Method::POST,
        &gw.url("/orders"),
        &[],
        Bytes::from("order-2"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(backup.last().body, Bytes::from("order-2"));
    assert_eq!(backup.hits(), 2);
    let lines = gw.access_log_lines(2).await;
    assert_eq!(lines[0]["fallback"], "upstream_status");
    assert_eq!(lines[0]["service"], "backup");
    assert_eq!(lines[1]["fallback"], "upstream_connect_failed");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_fallback_overrides_the_service_fallback_and_timeouts_trigger_it() {
    let slow = Upstream::start("slow", Behavior::Delay(Duration::from_secs(3))).await;
    let backup = Upstream::start("backup", Behavior::Echo).await;
    let gw = TestGateway::start(&format!(
        r#"services:
  - name: slow
    instances: [{{ url: "{}" }}]
    timeout: 300ms
    fallback: {{ service: backup }}
  - name: backup
    instances: [{{ url: "{}" }}]
routes:
  - {{ id: own, match: {{ path: /own }}, upstream: slow, fallback: {{ status: 503, body: "try later" }} }}
  - {{ id: inherited, match: {{ path: /inherited }}, upstream: slow }}
"#,
        slow.url(),
        backup.url()
    ))
    .await;
    let r = get(&gw.url("/own")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "try later");
    assert_eq!(backup.hits(), 0, "the route's own fallback answered");
    let r = get(&gw.url("/inherited")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(backup.last().uri, "/inherited");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_service_that_fails_too_gets_the_gateway_error() {
    let primary = Upstream::start("primary", Behavior::Echo).await;
    let backup = Upstream::start("backup", Behavior::Echo).await;
    primary.kill();
    backup.kill();
    let gw = TestGateway::start(&format!(
        r#"services:
  - name: primary
    instances: [{{ url: "{}" }}]
    fallback: {{ service: backup }}
  - name: backup
    instances: [{{ url: "{}" }}]
    fallback: {{ service: primary }}
routes:
  - {{ id: r, match: {{ path: /* }}, upstream: primary }}
"#,
        primary.url(),
        backup.url()
    ))
    .await;
    // The backup's own fallback (back to the primary) is not followed.
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"], "upstream_connect_failed");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fallbacks_are_named_errors() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let cases = [
        (
            "{ status: 200, service: s }",
            "routes[0].fallback: set either `status`",
        ),
        ("{ body: x }", "routes[0].fallback: set `status`"),
        (
            "{ service: nope }",
            "routes[0].fallback.service: unknown service \"nope\"",
        ),
        ("{ status: 99 }", "routes[0].fallback.status"),
        (
            "{ status: 200, on_status: [404] }",
            "routes[0].fallback.on_status[0]",
        ),
        (
            "{ status: 200, headers: { content-length: \"5\" } }",
            "routes[0].fallback.headers.content-length",
        ),
        (
            "{ service: s, body: x }",
            "`headers` and `body` belong to a static fallback",
        ),
    ];
    for (fallback, expected) in cases {
        let yaml = format!(
            "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s, fallback: {fallback} }}\n",
            up.url()
        );
        let err = TestGateway::try_start(&yaml)
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted: {fallback}"));
        assert!(err.contains(expected), "for {fallback}: {err}");
    }
    let own = format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\n    fallback: {{ service: s }}\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s }}\n",
        up.url()
    );
    let err = TestGateway::try_start(&own).await.err().expect("accepted");
    assert!(
        err.contains("services[0].fallback.service: a service cannot be its own fallback"),
        "{err}"
    );
    let cached = format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s, cache: {{}}, fallback: {{ status: 503 }} }}\n",
        up.url()
    );
    let err = TestGateway::try_start(&cached)
        .await
        .err()
        .expect("accepted");
    assert!(
        err.contains("routes[0].fallback: not available on a cached route"),
        "{err}"
    );
}
