//! Route matching through the real gateway: specificity, priority, hosts,
//! methods, headers, rewrites, and the 404 body.

use http::Method;

use crate::support::*;

async fn echo_routes() -> (TestGateway, Upstream) {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&format!(
        r#"
services:
  - name: echo
    instances: [{{ url: "{}" }}]
routes:
  - {{ id: tail,  match: {{ path: /api/* }}, upstream: echo }}
  - {{ id: param, match: {{ path: "/api/orders/{{order_id}}" }}, upstream: echo, rewrite: {{ path: "/v1/orders/{{order_id}}" }} }}
  - {{ id: exact, match: {{ path: /api/orders/latest }}, upstream: echo, rewrite: {{ strip_prefix: /api }} }}
  - {{ id: host,  match: {{ path: /api/*, hosts: [admin.example.com] }}, upstream: echo }}
  - {{ id: wild,  match: {{ path: /api/*, hosts: ["*.example.org"] }}, upstream: echo }}
  - {{ id: post,  match: {{ path: /items, methods: [POST] }}, upstream: echo }}
  - {{ id: v2,    match: {{ path: /items, headers: {{ x-version: v2 }} }}, upstream: echo }}
  - {{ id: low,   match: {{ path: /prio }}, priority: 1, upstream: echo, rewrite: {{ path: /low }} }}
  - {{ id: high,  match: {{ path: /prio, methods: [GET] }}, priority: 10, upstream: echo, rewrite: {{ path: /high }} }}
"#,
        up.url()
    ))
    .await;
    (gw, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specificity_rewrites_and_params() {
    let (gw, up) = echo_routes().await;
    let r = get(&gw.url("/api/orders/latest?x=1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().uri,
        "/orders/latest?x=1",
        "exact route with strip_prefix"
    );

    get(&gw.url("/api/orders/42")).await;
    assert_eq!(
        up.last().uri,
        "/v1/orders/42",
        "param route with template rewrite"
    );

    get(&gw.url("/api/orders/42/lines")).await;
    assert_eq!(
        up.last().uri,
        "/api/orders/42/lines",
        "prefix route, no rewrite"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_methods_headers_priority() {
    let (gw, up) = echo_routes().await;
    let host = |h: &'static str| [("host", h)];
    // Exact host beats the host-less prefix route: both match, but only "host"
    // lives in the exact-host table, which is searched first.
    request(
        Method::GET,
        &gw.url("/api/x"),
        &host("admin.example.com"),
        "",
    )
    .await;
    let via_host = up.last().headers.get("x-forwarded-host").cloned();
    assert_eq!(via_host.unwrap(), "admin.example.com");

    let r = request(Method::POST, &gw.url("/items"), &[], "").await;
    assert_eq!(r.status, 200);
    let r = get(&gw.url("/items")).await;
    assert_eq!(r.status, 404, "GET without x-version matches nothing");
    let r = request(Method::GET, &gw.url("/items"), &[("x-version", "v2")], "").await;
    assert_eq!(r.status, 200);

    get(&gw.url("/prio")).await;
    assert_eq!(up.last().uri, "/high", "higher priority wins");
    request(Method::DELETE, &gw.url("/prio"), &[], "").await;
    assert_eq!(
        up.last().uri,
        "/low",
        "lower priority still serves other methods"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_a_json_404_with_request_id() {
    let (gw, _up) = echo_routes().await;
    let r = get(&gw.url("/nothing/here")).await;
    assert_eq!(r.status, 404);
    let body = r.json();
    assert_eq!(body["error"], "no_route");
    let id = r.header("x-request-id").expect("request id header");
    assert_eq!(body["request_id"], id);
    gw.stop().await;
}
