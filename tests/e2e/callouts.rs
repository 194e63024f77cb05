//! Plugin callouts end to end: a plugin (testkit `callout` mode) calls
//! services its attachment is granted, through the gateway's own upstream
//! machinery, against real upstream servers on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Method;

use crate::observability::{ADMIN, TOKEN};
use crate::support::idp;
use crate::support::*;

/// An `app` service (the route's upstream) and an `idp` service the
/// plugin may call; `attachment` is the testkit attachment's YAML body.
fn config(app: &Upstream, idp: &Upstream, attachment: &str) -> String {
    format!(
        "{ADMIN}services:\n  - name: app\n    instances: [{{ url: \"{}\" }}]\n  - name: idp\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /r }}\n    upstream: app\n    plugins:\n      - {{ name: testkit, {attachment} }}\n  - id: plain\n    match: {{ path: /plain }}\n    upstream: app\n",
        app.url(),
        idp.url()
    )
}

/// An echoing `app`, an `idp` that behaves as `idp`, and a gateway whose
/// route `/r` runs testkit with `attachment`.
async fn start(idp: Behavior, attachment: &str) -> (Upstream, Upstream, TestGateway) {
    let app = Upstream::start("app", Behavior::Echo).await;
    let idp = Upstream::start("idp", idp).await;
    let kit = plugin_path("testkit");
    let yaml = config(&app, &idp, attachment);
    let gw = TestGateway::start_with_plugins(&yaml, &[("testkit", &kit)]).await;
    (app, idp, gw)
}

/// Whether `/metrics` counts one callout of testkit to idp with `result`.
async fn counted(gw: &TestGateway, result: &str) -> bool {
    counted_n(gw, result, 1).await
}

/// Whether `/metrics` counts `n` callouts of testkit to idp with `result`.
async fn counted_n(gw: &TestGateway, result: &str, n: usize) -> bool {
    let m = request(
        Method::GET,
        &gw.admin_url("/metrics"),
        &[("authorization", TOKEN)],
        "",
    )
    .await;
    let line = format!(
        "gatehouse_plugin_callouts_total{{plugin=\"testkit\",service=\"idp\",result=\"{result}\"}} {n}"
    );
    m.text().contains(&line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_callout_goes_through_the_service_and_its_answer_reaches_the_plugin() {
    let (app, idp, gw) = start(
        Behavior::Echo,
        "callouts: [idp], config: { mode: callout, service: idp, paths: [\"/userinfo?fields=sub\"] }",
    )
    .await;
    let r = get(&gw.url("/r")).await;
    assert_eq!(r.status, 200);
    // The service saw the callout as the plugin wrote it, with the instance's Host.
    assert_eq!(idp.hits(), 1);
    let call = idp.last();
    assert_eq!(call.method, "GET");
    assert_eq!(call.uri, "/userinfo?fields=sub");
    assert_eq!(call.headers["x-from"], "testkit");
    assert_eq!(
        call.headers["host"].to_str().unwrap(),
        idp.url().trim_start_matches("http://")
    );
    // The plugin got the answer: status and body (the echo names the path).
    let seen = app.last();
    assert_eq!(seen.headers["x-callout-status"], "200");
    assert!(seen.headers.get("x-callout-error").is_none());
    let body = seen.headers["x-callout-body"].to_str().unwrap();
    assert!(body.contains("/userinfo?fields=sub"), "{body}");
    // Counted per plugin and service.
    assert!(
        counted(&gw, "answered").await,
        "one answered callout counted"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_to_a_service_not_granted_is_refused_and_sends_nothing() {
    // `app` exists as a service, but the attachment grants only `idp`.
    let (app, idp, gw) = start(
        Behavior::Echo,
        "callouts: [idp], config: { mode: callout, service: app, paths: [\"/internal\"] }",
    )
    .await;
    let r = get(&gw.url("/r")).await;
    assert_eq!(r.status, 200, "the plugin decides what a refusal means");
    assert_eq!(app.hits(), 1, "only the proxied request reached app");
    assert_eq!(app.last().uri, "/r");
    assert_eq!(idp.hits(), 0);
    let seen = app.last();
    assert_eq!(seen.headers["x-callout-status"], "error");
    let err = seen.headers["x-callout-error"].to_str().unwrap();
    assert!(err.starts_with("Error::NotGranted"), "{err}");
    assert!(err.contains("callouts: [idp]"), "{err}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_without_callouts_may_not_call_out() {
    let (app, idp, gw) = start(
        Behavior::Echo,
        "config: { mode: callout, service: idp, paths: [\"/userinfo\"] }",
    )
    .await;
    assert_eq!(get(&gw.url("/r")).await.status, 200);
    assert_eq!(idp.hits(), 0);
    let err = app.last().headers["x-callout-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(err.starts_with("Error::NotGranted"), "{err}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_naming_no_service_is_a_config_error() {
    let app = Upstream::start("app", Behavior::Echo).await;
    let idp = Upstream::start("idp", Behavior::Echo).await;
    let yaml = config(
        &app,
        &idp,
        "callouts: [idp, users], config: { mode: callout, service: idp, paths: [\"/\"] }",
    );
    let kit = plugin_path("testkit");
    let err = TestGateway::try_start_with_plugins(&yaml, &[("testkit", &kit)])
        .await
        .err()
        .expect("config refused");
    assert!(
        err.contains("routes[0].plugins[0].callouts[1]")
            && err.contains("no service named `users`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_callouts_are_in_flight_together() {
    let (app, idp, gw) = start(
        Behavior::Delay(Duration::from_millis(400)),
        "callouts: [idp], config: { mode: callout, service: idp, paths: [\"/a\", \"/b\", \"/c\"] }",
    )
    .await;
    // Watch the service's in-flight count while the request runs: sent one
    // after another it would never exceed 1.
    let peak = Arc::new(AtomicUsize::new(0));
    let watch = {
        let (active, peak) = (idp.active.clone(), peak.clone());
        tokio::spawn(async move {
            for _ in 0..300 {
                peak.fetch_max(active.load(Ordering::SeqCst), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let started = Instant::now();
    let r = get(&gw.url("/r")).await;
    let took = started.elapsed();
    watch.abort();
    assert_eq!(r.status, 200);
    assert_eq!(app.last().headers["x-callout-status"], "200,200,200");
    let mut paths: Vec<String> = idp.received().into_iter().map(|c| c.uri).collect();
    paths.sort();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "all three in flight at once"
    );
    eprintln!("callouts: 3 parallel callouts of 400 ms each answered in {took:?} (sum 1.2 s)");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_past_its_timeout_is_a_timeout_for_the_plugin() {
    let (app, _idp, gw) = start(
        Behavior::Delay(Duration::from_secs(3)),
        "callouts: [idp], callout_timeout: 200ms, config: { mode: callout, service: idp, paths: [\"/slow\"] }",
    )
    .await;
    let r = get(&gw.url("/r")).await;
    assert_eq!(r.status, 200);
    let seen = app.last();
    assert_eq!(seen.headers["x-callout-status"], "error");
    assert_eq!(seen.headers["x-callout-error"], "Error::Timeout");
    assert!(counted(&gw, "timeout").await, "one timeout callout counted");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_to_a_dead_service_is_unavailable() {
    let (app, idp, gw) = start(
        Behavior::Echo,
        "callouts: [idp], config: { mode: callout, service: idp, paths: [\"/x\"] }",
    )
    .await;
    idp.kill();
    assert_eq!(get(&gw.url("/r")).await.status, 200);
    let err = app.last().headers["x-callout-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(err.starts_with("Error::Unavailable"), "{err}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_callout_does_not_stall_other_requests() {
    let (_app, idp, gw) = start(
        Behavior::Delay(Duration::from_millis(1500)),
        "callouts: [idp], config: { mode: callout, service: idp, paths: [\"/slow\"] }",
    )
    .await;
    // More slow requests than worker threads, all waiting on their callout.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let url = gw.url("/r");
            tokio::spawn(async move { get(&url).await.status })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), async || idp
            .active
            .load(Ordering::SeqCst)
            == 4)
        .await,
        "four callouts in flight"
    );
    let started = Instant::now();
    let fast = get(&gw.url("/plain")).await;
    let took = started.elapsed();
    assert_eq!(fast.status, 200);
    assert!(
        slow.iter().all(|h| !h.is_finished()),
        "the plain request was answered while the four callouts still waited"
    );
    for h in slow {
        assert_eq!(h.await.unwrap(), 200);
    }
    eprintln!(
        "callouts: a plain request took {took:?} while 4 callouts of 1.5 s waited on 2 workers"
    );
    gw.stop().await;
}

/// An IdP (JWKS answered with `max-age`) behind `idp`, called by testkit on
/// every request to `/r`.
async fn start_cached(extra: &str) -> (Upstream, Upstream, TestGateway) {
    let app = Upstream::start("app", Behavior::Echo).await;
    let (idp, _state) = Idp::start().await;
    let kit = plugin_path("testkit");
    let attachment = format!(
        "callouts: [idp]{extra}, config: {{ mode: callout, service: idp, paths: [\"{}\"] }}",
        idp::CERTS
    );
    let yaml = config(&app, &idp, &attachment);
    let gw = TestGateway::start_with_plugins(&yaml, &[("testkit", &kit)]).await;
    (app, idp, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_answers_are_kept_for_their_max_age() {
    let (app, idp, gw) = start_cached("").await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/r")).await.status, 200);
        assert_eq!(app.last().headers["x-callout-status"], "200");
        let body = app.last().headers["x-callout-body"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(body.contains("\"kid\":\"k1\""), "{body}");
    }
    assert_eq!(
        idp.hits(),
        1,
        "the JWKS was fetched once, then served by the host"
    );
    assert!(
        counted_n(&gw, "cached", 2).await,
        "two answers from the cache"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_cache_ttl_switches_the_cache_off() {
    let (_app, idp, gw) = start_cached(", callout_cache_ttl: 0s").await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/r")).await.status, 200);
    }
    assert_eq!(idp.hits(), 3, "every request asked the service");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_callout_adds_to_a_request_is_measured() {
    // Measured, not asserted: the median of a proxied request with and
    // without one callout to an echoing service, one after another.
    let (_app, idp, gw) = start(
        Behavior::Echo,
        "callouts: [idp], config: { mode: callout, service: idp, paths: [\"/userinfo\"] }",
    )
    .await;
    let median = async |path: &str| {
        let mut took = Vec::with_capacity(40);
        for _ in 0..40 {
            let started = Instant::now();
            assert_eq!(get(&gw.url(path)).await.status, 200);
            took.push(started.elapsed());
        }
        took.sort();
        took[20]
    };
    let plain = median("/plain").await;
    let with_callout = median("/r").await;
    assert_eq!(idp.hits(), 40, "every /r request called out");
    eprintln!(
        "callouts: median request {plain:?} plain, {with_callout:?} with one callout (debug build, loopback)"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_continues_the_requests_trace_in_a_span_of_its_own() {
    let app = Upstream::start("app", Behavior::Echo).await;
    let idp = Upstream::start("idp", Behavior::Echo).await;
    let (otlp, _spans) = crate::observability::otlp_receiver().await;
    let yaml = format!(
        "tracing: {{ otlp_endpoint: \"http://{otlp}/v1/traces\", flush_interval: 100ms }}\n{}",
        config(
            &app,
            &idp,
            "callouts: [idp], config: { mode: callout, service: idp, paths: [\"/userinfo\"] }",
        )
    );
    let kit = plugin_path("testkit");
    let gw = TestGateway::start_with_plugins(&yaml, &[("testkit", &kit)]).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let r = request(Method::GET, &gw.url("/r"), &[("traceparent", &tp)], "").await;
    assert_eq!(r.status, 200);
    let part = |u: &Upstream, i: usize| {
        let tp = u.last().headers["traceparent"]
            .to_str()
            .unwrap()
            .to_string();
        tp.split('-').nth(i).unwrap().to_string()
    };
    assert_eq!(part(&idp, 1), trace, "the callout is in the client's trace");
    assert_eq!(part(&app, 1), trace);
    assert_ne!(
        part(&idp, 2),
        part(&app, 2),
        "the callout and the proxied request are different spans"
    );
    assert_ne!(
        part(&idp, 2),
        "00f067aa0ba902b7",
        "a child, not the client's span"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_callout_frees_the_instance() {
    // One instance only: if the dropped request kept it until its callout
    // ended, the next request would find none (503 plugin_busy).
    let (app, idp, gw) = start(
        Behavior::Delay(Duration::from_millis(1500)),
        "max_instances: 1, callouts: [idp], callout_timeout: 3s, config: { mode: callout, service: idp, paths: [\"/slow\"] }",
    )
    .await;
    let addr = gw
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut client = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /r HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send");
    assert!(
        eventually(Duration::from_secs(2), async || idp.hits() == 1).await,
        "the first callout is in flight"
    );
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let r = get(&gw.url("/r")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(idp.hits(), 2, "the second request made its own callout");
    assert_eq!(app.last().headers["x-callout-status"], "200");
    assert_eq!(
        app.hits(),
        1,
        "the dropped request never reached the upstream"
    );
    eprintln!(
        "callouts: after a client left mid-callout the next request was answered in {:?}",
        started.elapsed()
    );
    gw.stop().await;
}
