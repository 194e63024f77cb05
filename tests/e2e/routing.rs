//! Route matching through the real gateway: specificity, priority, hosts,
//! methods, headers, rewrites, and the 404 body.

use http::Method;

use crate::support::raw::{exchange, status_of};
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

async fn condition_routes() -> (TestGateway, Upstream) {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&format!(
        r#"
services:
  - name: echo
    instances: [{{ url: "{}" }}]
routes:
  - id: posts
    match: {{ path_regex: "/users/(?P<id>[0-9]+)/posts/(?P<slug>[a-z-]+)" }}
    upstream: echo
    rewrite: {{ path: "/v2/{{id}}/posts/{{slug}}" }}
  - {{ id: files-rx, match: {{ path_regex: "/files/[0-9]+" }}, upstream: echo, rewrite: {{ path: /by-regex }} }}
  - {{ id: files, match: {{ path: /files/* }}, upstream: echo }}
  - {{ id: search-v2, match: {{ path: /search, query: {{ version: "2" }} }}, upstream: echo, rewrite: {{ path: /search-v2 }} }}
  - {{ id: search-debug, match: {{ path: /search, query: {{ debug: {{ present: true }} }} }}, upstream: echo, rewrite: {{ path: /search-debug }} }}
  - {{ id: search, match: {{ path: /search, query: {{ legacy: {{ present: false }} }} }}, upstream: echo }}
  - {{ id: canary, match: {{ path: /app, headers: {{ x-canary: {{ present: true }} }} }}, upstream: echo, rewrite: {{ path: /app-canary }} }}
  - {{ id: mobile, match: {{ path: /app, headers: {{ user-agent: {{ regex: ".*Mobile.*" }} }} }}, upstream: echo, rewrite: {{ path: /app-mobile }} }}
  - {{ id: app, match: {{ path: /app }}, upstream: echo }}
"#,
        up.url()
    ))
    .await;
    (gw, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_routes_capture_params_and_come_after_prefix_routes() {
    let (gw, up) = condition_routes().await;
    let r = get(&gw.url("/users/42/posts/hello-world")).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().uri, "/v2/42/posts/hello-world");
    // Anchored: no partial match at either end.
    assert_eq!(
        get(&gw.url("/users/42/posts/hello-world/x")).await.status,
        404
    );
    assert_eq!(get(&gw.url("/v1/users/42/posts/a")).await.status, 404);
    assert_eq!(get(&gw.url("/users/4a/posts/a")).await.status, 404);
    // A prefix route of the same host wins over a regex route.
    get(&gw.url("/files/7")).await;
    assert_eq!(up.last().uri, "/files/7");
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_route_sees_the_canonical_path_not_the_raw_bytes() {
    let (gw, up) = condition_routes().await;
    // Percent-encoded digits, a doubled slash and a dot segment: the
    // canonical path is /users/42/posts/hi, which is what the regex tests
    // and what the captures come from.
    let resp = exchange(
        gw.addr,
        b"GET /users/%34%32/posts/./hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.last().uri, "/v2/42/posts/hi");
    // An encoded slash cannot smuggle a segment into a capture.
    let resp = exchange(
        gw.addr,
        b"GET /users/42/posts/a%2Fb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_ne!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.hits(), 1, "{resp}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_conditions_match_decoded_values_and_presence() {
    let (gw, up) = condition_routes().await;
    let cases = [
        ("/search?version=2", "/search-v2?version=2"),
        ("/search?q=a&version=%32", "/search-v2?q=a&version=%32"),
        ("/search?version=3", "/search?version=3"),
        ("/search?debug", "/search-debug?debug"),
        ("/search?debug=0&q=x", "/search-debug?debug=0&q=x"),
        ("/search", "/search"),
    ];
    for (asked, upstream) in cases {
        let r = get(&gw.url(asked)).await;
        assert_eq!(r.status, 200, "{asked}");
        assert_eq!(up.last().uri, upstream, "{asked}");
    }
    // `legacy: { present: false }`: the plain route refuses it, and nothing else matches.
    let r = get(&gw.url("/search?legacy=1")).await;
    assert_eq!(r.status, 404);
    assert_eq!(up.hits(), cases.len());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_conditions_match_presence_and_regex() {
    let (gw, up) = condition_routes().await;
    let ua = "Mozilla/5.0 (iPhone) Mobile/15E148";
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("x-canary", "")], "/app-canary"),
        (&[("user-agent", ua)], "/app-mobile"),
        (&[("user-agent", "curl/8")], "/app"),
        (&[], "/app"),
    ];
    for (headers, upstream) in cases {
        let r = request(Method::GET, &gw.url("/app"), headers, "").await;
        assert_eq!(r.status, 200, "{headers:?}");
        assert_eq!(up.last().uri, upstream, "{headers:?}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_match_conditions_are_named_errors() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let cases = [
        ("{ path_regex: \"/a/(\" }", "routes[0].match.path_regex"),
        ("{ path_regex: \"a\" }", "must start with `/`"),
        ("{ path: /a, path_regex: \"/a\" }", "routes[0].match"),
        (
            "{ path: /a, query: { v: { regex: \"(\" } } }",
            "routes[0].match.query.v",
        ),
        (
            "{ path: /a, query: { v: { sometimes: 1 } } }",
            "routes[0].match.query.v",
        ),
        (
            "{ path: /a, headers: { \"bad header\": x } }",
            "routes[0].match.headers",
        ),
        ("{ path_regex: \"/a/(?P<x>b)\" }", "routes[0].rewrite"),
    ];
    for (matcher, expected) in cases {
        let rewrite = if matcher.contains("?P<x>") {
            ", rewrite: { path: \"/{y}\" }"
        } else {
            ""
        };
        let yaml = format!(
            "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {matcher}, upstream: s{rewrite} }}\n",
            up.url()
        );
        let err = TestGateway::try_start(&yaml)
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted: {matcher}"));
        assert!(err.contains(expected), "for {matcher}: {err}");
    }
}
