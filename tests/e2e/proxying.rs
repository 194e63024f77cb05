//! Forwarding rules: X-Forwarded-*, request ids, hop-by-hop headers both ways,
//! Host handling, and the error statuses for broken upstreams.

use std::time::Duration;

use http::Method;

use crate::support::*;

fn one_service(url: &str, extra_service: &str, extra_route: &str) -> String {
    format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{url}\" }}]\n{extra_service}routes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s{extra_route} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_request_id_and_hop_by_hop() {
    let up = Upstream::start("up", Behavior::HopByHop).await;
    let gw = TestGateway::start(&one_service(&up.url(), "", "")).await;
    let r = request(
        Method::GET,
        &gw.url("/a?b=c"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "x-client-secret"),
            ("x-client-secret", "1"),
            ("proxy-authorization", "Basic Zm9v"),
            ("te", "deflate, trailers"),
            ("x-request-id", "client-id-1"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["x-forwarded-host"],
        gw.addr.to_string().as_str()
    );
    assert_eq!(
        seen.headers["host"],
        gw.addr.to_string().as_str(),
        "Host preserved by default"
    );
    assert_eq!(seen.headers["x-request-id"], "client-id-1");
    // `te: trailers` is the one TE value that crosses (gRPC needs it).
    assert_eq!(seen.headers["te"], "trailers");
    for h in ["x-client-secret", "proxy-authorization"] {
        assert!(
            !seen.headers.contains_key(h),
            "{h} must not reach the upstream"
        );
    }
    assert_eq!(r.header("x-request-id"), Some("client-id-1"));
    for h in ["x-hop-secret", "keep-alive", "proxy-authenticate"] {
        assert!(r.header(h).is_none(), "{h} must not reach the client");
    }
    // An invalid id is replaced.
    let r = request(
        Method::GET,
        &gw.url("/"),
        &[("x-request-id", "bad id with spaces")],
        "",
    )
    .await;
    let id = r.header("x-request-id").unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(up.last().headers["x-request-id"], id);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_can_be_rewritten_to_the_instance() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&one_service(&up.url(), "", ", preserve_host: false")).await;
    get(&gw.url("/")).await;
    assert_eq!(up.last().headers["host"], up.addr.to_string().as_str());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_slow_and_missing_upstreams() {
    // A port that was just free: connection refused.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let slow = Upstream::start("slow", Behavior::Delay(Duration::from_secs(3))).await;
    let gw = TestGateway::start(&format!(
        r#"
services:
  - name: dead
    instances: [{{ url: "http://{free}" }}]
  - name: slow
    timeout: 200ms
    instances: [{{ url: "{}" }}]
routes:
  - {{ id: dead, match: {{ path: /dead }}, upstream: dead }}
  - {{ id: slow, match: {{ path: /slow }}, upstream: slow }}
"#,
        slow.url()
    ))
    .await;
    let r = get(&gw.url("/dead")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "upstream_connect_failed");
    let started = std::time::Instant::now();
    let r = get(&gw.url("/slow")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout cut the wait short"
    );
    // No healthy instance: mark the only one down.
    let snap = gw.shared().snapshot();
    let gatehouse::snapshot::RouteTarget::Service(svc) = &snap.routes[0].target else {
        panic!("single service")
    };
    svc.instances[0].set_healthy(false);
    let r = get(&gw.url("/dead")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "no_healthy_upstream");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_with_prior_knowledge() {
    use http_body_util::{BodyExt, Empty};
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&one_service(&up.url(), "", "")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    let resp = client.get(gw.url("/h2").parse().unwrap()).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["uri"], "/h2");
    // The upstream still speaks HTTP/1.1 and gets a Host header from :authority.
    assert_eq!(up.last().headers["host"], gw.addr.to_string().as_str());
    gw.stop().await;
}
