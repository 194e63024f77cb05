//! Metrics, access log and traces after known traffic, read the way operators
//! read them: `/metrics` scraped, log lines parsed, spans received by a real
//! OTLP/HTTP endpoint.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::support::{Behavior, TestGateway, Upstream, eventually, get, plugin_path, request};

pub const ADMIN: &str = "admin:\n  addr: 127.0.0.1:0\n  token: test-admin-token-0123456789\n  read_token: test-read-token-0123456789\n";
pub const TOKEN: &str = "Bearer test-admin-token-0123456789";

fn routes(up: &Upstream) -> String {
    format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: ok\n    match: {{ path: /ok }}\n    upstream: s\n    plugins:\n      - {{ name: testkit, config: {{ mode: set-attr, name: consumer, value: alice }} }}\n  - id: denied\n    match: {{ path: /denied }}\n    upstream: s\n    plugins:\n      - {{ name: testkit, config: {{ mode: deny, status: 403 }} }}\n  - id: limited\n    match: {{ path: /limited }}\n    upstream: s\n    plugins:\n      - {{ name: rate-limit, config: {{ limits: [{{ name: l, scope: route, limit: 2, window: 1m }}] }} }}\n",
        up.url()
    )
}

async fn start(head: &str, up: &Upstream) -> TestGateway {
    let plugins = [
        ("testkit", plugin_path("testkit")),
        ("rate-limit", plugin_path("rate-limit")),
    ];
    let plugins: Vec<(&str, &std::path::Path)> =
        plugins.iter().map(|(n, p)| (*n, p.as_path())).collect();
    TestGateway::start_with_plugins(&format!("{head}{}", routes(up)), &plugins).await
}

pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(ADMIN, &up).await;
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/ok")).await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/denied")).await.status, 403);
    }
    for _ in 0..2 {
        assert_eq!(get(&gw.url("/nowhere")).await.status, 404);
    }
    let limited: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(get(&gw.url("/limited")).await.status.as_u16());
        }
        v
    };
    assert_eq!(limited, [200, 200, 429]);
    let r = request(
        Method::GET,
        &gw.admin_url("/metrics"),
        &[("authorization", TOKEN)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = r.text();
    let expect = [
        (
            r#"gatehouse_requests_total{route="ok",method="GET",status_class="2xx"}"#,
            5.0,
        ),
        (
            r#"gatehouse_requests_total{route="denied",method="GET",status_class="4xx"}"#,
            3.0,
        ),
        (
            r#"gatehouse_requests_total{route="_unmatched",method="GET",status_class="4xx"}"#,
            2.0,
        ),
        (
            r#"gatehouse_requests_total{route="limited",method="GET",status_class="4xx"}"#,
            1.0,
        ),
        (
            r#"gatehouse_request_duration_seconds_count{route="ok"}"#,
            5.0,
        ),
        (
            r#"gatehouse_request_duration_seconds_bucket{route="ok",le="+Inf"}"#,
            5.0,
        ),
        (
            r#"gatehouse_upstream_requests_total{service="s",status_class="2xx"}"#,
            7.0,
        ),
        (
            r#"gatehouse_upstream_request_duration_seconds_count{service="s"}"#,
            7.0,
        ),
        (
            r#"gatehouse_plugin_calls_total{plugin="testkit",route="ok"}"#,
            5.0,
        ),
        (
            r#"gatehouse_plugin_short_circuits_total{plugin="testkit",route="denied"}"#,
            3.0,
        ),
        (
            r#"gatehouse_plugin_short_circuits_total{plugin="rate-limit",route="limited"}"#,
            1.0,
        ),
        (
            r#"gatehouse_plugin_errors_total{plugin="testkit",route="ok",kind="error"}"#,
            0.0,
        ),
        (
            r#"gatehouse_rate_limit_decisions_total{plugin="rate-limit",decision="allowed"}"#,
            2.0,
        ),
        (
            r#"gatehouse_rate_limit_decisions_total{plugin="rate-limit",decision="limited"}"#,
            1.0,
        ),
        (
            r#"gatehouse_upstream_healthy{service="s",instance=""#,
            f64::NAN,
        ),
        ("gatehouse_config_reloads_total{result=\"success\"}", 0.0),
        // The two unmatched requests are the gateway's own errors; the
        // plugin's 403s and the rate limit's 429 are answers, not errors.
        (r#"gatehouse_errors_total{code="no_route"}"#, 2.0),
        (
            r#"gatehouse_plugin_counter_total{plugin="testkit",name="attributes_set"}"#,
            5.0,
        ),
        (
            r#"gatehouse_plugin_histogram_seconds_bucket{plugin="testkit",name="attribute_seconds",le="0.0025"}"#,
            5.0,
        ),
        (
            r#"gatehouse_plugin_histogram_seconds_bucket{plugin="testkit",name="attribute_seconds",le="0.001"}"#,
            0.0,
        ),
    ];
    for (series, want) in expect {
        if want.is_nan() {
            assert!(m.contains(series), "missing {series}");
            continue;
        }
        assert_eq!(metric(&m, series), Some(want), "{series}\n{m}");
    }
    assert!(metric(&m, "gatehouse_connections_total").unwrap() >= 13.0);
    // Buckets are cumulative.
    let buckets: Vec<f64> = m
        .lines()
        .filter(|l| l.starts_with(r#"gatehouse_request_duration_seconds_bucket{route="ok""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_json_line_per_request() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start("access_log: { path: access.log }\n", &up).await;
    let r = request(
        Method::POST,
        &gw.url("/ok?secret=1"),
        &[("x-request-id", "req-1")],
        Bytes::from("hello"),
    )
    .await;
    assert_eq!(r.status, 200);
    let body_len = r.body.len() as u64;
    assert_eq!(get(&gw.url("/denied")).await.status, 403);
    assert_eq!(get(&gw.url("/nowhere")).await.status, 404);
    let log = gw.dir.path().join("access.log");
    let lines = async || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(eventually(Duration::from_secs(5), async || lines().await.len() == 3).await);
    let lines = lines().await;
    let ok = &lines[0];
    assert_eq!(ok["request_id"], "req-1");
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["path"], "/ok", "the query is not logged");
    assert_eq!(ok["route_id"], "ok");
    assert_eq!(ok["service"], "s");
    assert_eq!(ok["instance"], up.addr.to_string());
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["bytes_in"], 5);
    assert_eq!(ok["bytes_out"], body_len);
    assert_eq!(ok["client_ip"], "127.0.0.1");
    assert_eq!(ok["consumer"], "alice");
    assert_eq!(ok["upstream_tries"], 1);
    assert!(ok["latency_ms"].as_f64().unwrap() >= ok["upstream_latency_ms"].as_f64().unwrap());
    assert!(ok["timestamp"].as_str().unwrap().ends_with('Z'));
    let denied = &lines[1];
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["answered_by"], "testkit");
    assert_eq!(denied["upstream_tries"], 0);
    assert!(denied["service"].is_null());
    assert_eq!(lines[2]["route_id"], Value::Null);
    assert_eq!(lines[2]["status"], 404);
    gw.stop().await;
}

/// A real OTLP/HTTP endpoint: keeps every JSON export request it receives.
pub async fn otlp_receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let keep = keep.clone();
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let keep = keep.clone();
                async move {
                    assert_eq!(req.uri().path(), "/v1/traces");
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    keep.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("{}"))))
                }
            });
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .into_owned(),
            );
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_continue_the_clients_trace_and_link_every_span() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let (otlp, received) = otlp_receiver().await;
    let head = format!(
        "tracing: {{ otlp_endpoint: \"http://{otlp}/v1/traces\", flush_interval: 100ms }}\n"
    );
    let gw = start(&head, &up).await;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let tp = format!("00-{client_trace}-{client_span}-01");
    let r = request(
        Method::GET,
        &gw.url("/ok"),
        &[("traceparent", &tp), ("tracestate", "v=1")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    let upstream_tp = seen.headers["traceparent"].to_str().unwrap().to_string();
    assert_eq!(seen.headers["tracestate"], "v=1");
    let parts: Vec<&str> = upstream_tp.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", client_trace, "01"));
    assert!(
        eventually(Duration::from_secs(5), async || !received
            .lock()
            .unwrap()
            .is_empty())
        .await
    );
    let exports = received.lock().unwrap().clone();
    let spans: Vec<Value> = exports
        .iter()
        .flat_map(|e| {
            e["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        exports[0]["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "gatehouse"
    );
    let by_name = |prefix: &str| {
        spans
            .iter()
            .find(|s| s["name"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} span in {spans:?}"))
            .clone()
    };
    let server = by_name("GET ok");
    let plugin = by_name("plugin testkit on-request");
    let upstream = by_name("upstream s");
    for s in [&server, &plugin, &upstream] {
        assert_eq!(s["traceId"], client_trace);
    }
    assert_eq!(server["kind"], 2);
    assert_eq!(
        server["parentSpanId"], client_span,
        "the request span continues the client's"
    );
    assert_eq!(plugin["parentSpanId"], server["spanId"]);
    assert_eq!(upstream["parentSpanId"], server["spanId"]);
    assert_eq!(upstream["kind"], 3);
    assert_eq!(
        parts[2],
        upstream["spanId"].as_str().unwrap(),
        "the upstream continues from the upstream span"
    );
    // Without a traceparent a new trace starts and is propagated too.
    let r = get(&gw.url("/ok")).await;
    assert_eq!(r.status, 200);
    let fresh = up.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        !fresh.contains(client_trace) && fresh.starts_with("00-") && fresh.len() == 55,
        "{fresh}"
    );
    gw.stop().await;
}
