use std::path::Path;

use http::{HeaderMap, HeaderValue, Method};

use super::*;

fn router(routes_yaml: &str) -> Result<(Router, Vec<RouteConfig>), String> {
    let text = format!(
        "services:\n  - name: s\n    instances: [{{ url: \"http://127.0.0.1:1\" }}]\nroutes:\n{routes_yaml}"
    );
    let cfg = crate::config::parse(Path::new("t.yaml"), &text).map_err(|e| e.to_string())?;
    let r = Router::build(&cfg.routes).map_err(|e| format!("{e:?}"))?;
    Ok((r, cfg.routes))
}

fn find(
    r: &(Router, Vec<RouteConfig>),
    host: &str,
    method: Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<String> {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let key = RequestKey {
        host,
        method: &method,
        path,
        query,
        headers,
    };
    r.0.match_request(&key).map(|m| r.1[m.route].id.to_string())
}

fn get(r: &(Router, Vec<RouteConfig>), path: &str) -> Option<String> {
    find(r, "", Method::GET, path, &HeaderMap::new())
}

#[test]
fn static_beats_param_beats_tail() {
    let r = router(
        "  - { id: tail, match: { path: /api/* }, upstream: s }\n  - { id: param, match: { path: \"/api/{id}\" }, upstream: s }\n  - { id: exact, match: { path: /api/orders }, upstream: s }\n",
    )
    .unwrap();
    assert_eq!(get(&r, "/api/orders").as_deref(), Some("exact"));
    assert_eq!(get(&r, "/api/42").as_deref(), Some("param"));
    assert_eq!(get(&r, "/api/42/items").as_deref(), Some("tail"));
    assert_eq!(get(&r, "/api").as_deref(), Some("tail"));
    assert_eq!(get(&r, "/other"), None);
}

#[test]
fn backtracks_from_a_dead_static_branch() {
    let r = router(
        "  - { id: a, match: { path: /a/b/c }, upstream: s }\n  - { id: b, match: { path: \"/a/{x}/d\" }, upstream: s }\n",
    )
    .unwrap();
    assert_eq!(get(&r, "/a/b/d").as_deref(), Some("b"));
    assert_eq!(get(&r, "/a/b/c").as_deref(), Some("a"));
}

#[test]
fn params_are_captured_in_order() {
    let r =
        router("  - { id: p, match: { path: \"/u/{user}/o/{*rest}\" }, upstream: s }\n").unwrap();
    let headers = HeaderMap::new();
    let key = RequestKey {
        host: "",
        method: &Method::GET,
        path: "/u/7/o/x/y",
        query: None,
        headers: &headers,
    };
    let m = r.0.match_request(&key).unwrap();
    assert_eq!(m.params.get(key.path, 0), Some("7"));
    assert_eq!(m.params.get(key.path, 1), Some("x/y"));
}

#[test]
fn priority_then_config_order_break_ties() {
    let r = router(
        "  - { id: first, match: { path: /x }, upstream: s, priority: 0, match: { path: /x, headers: { a: b } } }\n  - { id: low, match: { path: /y }, upstream: s }\n  - { id: high, match: { path: /y, methods: [POST] }, upstream: s }\n",
    );
    // duplicate `match` keys are a parse error: the file is rejected, not half-read.
    assert!(r.is_err());
    let r = router(
        "  - { id: low, match: { path: /y, methods: [GET] }, upstream: s }\n  - { id: high, match: { path: /y }, priority: 5, upstream: s }\n  - { id: later, match: { path: /z, methods: [GET] }, upstream: s }\n  - { id: later2, match: { path: /z }, upstream: s }\n",
    )
    .unwrap();
    assert_eq!(get(&r, "/y").as_deref(), Some("high"));
    assert_eq!(get(&r, "/z").as_deref(), Some("later"));
    assert_eq!(
        find(&r, "", Method::POST, "/z", &HeaderMap::new()).as_deref(),
        Some("later2")
    );
}

#[test]
fn methods_and_headers_filter() {
    let r = router(
        "  - { id: v2, match: { path: /o, headers: { x-version: v2 } }, upstream: s }\n  - { id: post, match: { path: /o, methods: [post] }, upstream: s }\n",
    )
    .unwrap();
    let mut h = HeaderMap::new();
    assert_eq!(find(&r, "", Method::GET, "/o", &h), None);
    assert_eq!(
        find(&r, "", Method::POST, "/o", &h).as_deref(),
        Some("post")
    );
    h.insert("x-version", HeaderValue::from_static("v2"));
    assert_eq!(find(&r, "", Method::GET, "/o", &h).as_deref(), Some("v2"));
}

#[test]
fn hosts_exact_wildcard_and_any() {
    let r = router(
        "  - { id: exact, match: { path: /, hosts: [api.example.com] }, upstream: s }\n  - { id: wild, match: { path: /, hosts: [\"*.example.com\"] }, upstream: s }\n  - { id: any, match: { path: / }, upstream: s }\n",
    )
    .unwrap();
    let h = HeaderMap::new();
    assert_eq!(
        find(&r, "api.example.com", Method::GET, "/", &h).as_deref(),
        Some("exact")
    );
    assert_eq!(
        find(&r, "a.b.example.com", Method::GET, "/", &h).as_deref(),
        Some("wild")
    );
    assert_eq!(
        find(&r, "example.com", Method::GET, "/", &h).as_deref(),
        Some("any")
    );
    assert_eq!(
        find(&r, "other.org", Method::GET, "/", &h).as_deref(),
        Some("any")
    );
}

#[test]
fn duplicates_are_rejected() {
    let err = router(
        "  - { id: a, match: { path: \"/x/{id}\" }, upstream: s }\n  - { id: b, match: { path: \"/x/{other}\" }, upstream: s }\n",
    )
    .unwrap_err();
    assert!(err.contains("duplicates route \\\"a\\\""), "{err}");
    // Different methods are not duplicates.
    router(
        "  - { id: a, match: { path: /x, methods: [GET] }, upstream: s }\n  - { id: b, match: { path: /x, methods: [POST] }, upstream: s }\n",
    )
    .unwrap();
}

#[test]
fn host_normalization() {
    assert_eq!(normalize_host("API.Example.com:8080"), "api.example.com");
    assert_eq!(normalize_host("[::1]:80"), "[::1]");
    assert_eq!(normalize_host("example.com."), "example.com");
}

#[test]
fn regex_routes_come_after_exact_param_and_prefix_routes_of_their_host() {
    let r = router(concat!(
        "  - { id: re, match: { path_regex: \"/v[0-9]+/items/[0-9]+\" }, upstream: s }\n",
        "  - { id: exact, match: { path: /v1/items/1 }, upstream: s }\n",
        "  - { id: tail, match: { path: /v9/* }, upstream: s }\n",
        "  - { id: host-re, match: { hosts: [a.example.com], path_regex: \"/v[0-9]+/.*\" }, upstream: s }\n",
    ))
    .unwrap();
    assert_eq!(get(&r, "/v1/items/1").as_deref(), Some("exact"));
    assert_eq!(get(&r, "/v2/items/1").as_deref(), Some("re"));
    assert_eq!(
        get(&r, "/v9/items/1").as_deref(),
        Some("tail"),
        "prefix beats regex"
    );
    assert_eq!(get(&r, "/v2/items/1/x"), None, "anchored at the end");
    assert_eq!(get(&r, "/x/v2/items/1"), None, "anchored at the start");
    let h = HeaderMap::new();
    // The host's own regex beats every route of any host.
    assert_eq!(
        find(&r, "a.example.com", Method::GET, "/v1/items/1", &h).as_deref(),
        Some("host-re")
    );
}

#[test]
fn regex_routes_follow_priority_then_order_and_their_conditions() {
    let r = router(concat!(
        "  - { id: first, match: { path_regex: \"/a/.*\", methods: [POST] }, upstream: s }\n",
        "  - { id: second, match: { path_regex: \"/a/b.*\" }, upstream: s }\n",
        "  - { id: high, match: { path_regex: \"/a/bc\" }, priority: 5, upstream: s }\n",
    ))
    .unwrap();
    let h = HeaderMap::new();
    assert_eq!(
        find(&r, "", Method::POST, "/a/bx", &h).as_deref(),
        Some("first")
    );
    assert_eq!(
        find(&r, "", Method::GET, "/a/bx", &h).as_deref(),
        Some("second")
    );
    assert_eq!(
        find(&r, "", Method::POST, "/a/bc", &h).as_deref(),
        Some("high")
    );
    assert_eq!(find(&r, "", Method::GET, "/a/x", &h), None);
}

#[test]
fn regex_named_captures_are_params() {
    let r = router(
        "  - { id: p, match: { path_regex: \"/v(?P<ver>[0-9]+)(/(?<id>[a-z]+))?\" }, rewrite: { path: \"/{id}/{ver}\" }, upstream: s }\n",
    )
    .unwrap();
    let headers = HeaderMap::new();
    for (path, ver, id) in [("/v12/abc", "12", "abc"), ("/v3", "3", "")] {
        let key = RequestKey {
            host: "",
            method: &Method::GET,
            path,
            query: None,
            headers: &headers,
        };
        let m = r.0.match_request(&key).unwrap();
        assert_eq!(m.params.len(), 2);
        assert_eq!(m.params.get(path, 0), Some(ver));
        assert_eq!(
            m.params.get(path, 1),
            Some(id),
            "an unmatched group is empty"
        );
    }
}

#[test]
fn query_and_header_conditions_pick_among_equal_paths() {
    let r = router(concat!(
        "  - { id: v2, match: { path: /q, query: { version: \"2\" } }, upstream: s }\n",
        "  - { id: beta, match: { path: /q, query: { beta: { present: true } } }, upstream: s }\n",
        "  - { id: canary, match: { path: /q, headers: { x-canary: { regex: \"yes|1\" } } }, upstream: s }\n",
        "  - { id: no-auth, match: { path: /q, headers: { authorization: { present: false } } }, upstream: s }\n",
        "  - { id: rest, match: { path: /q }, upstream: s }\n",
    ))
    .unwrap();
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("x"));
    let at = |p: &str, h: &HeaderMap| find(&r, "", Method::GET, p, h);
    assert_eq!(at("/q?version=2", &h).as_deref(), Some("v2"));
    assert_eq!(at("/q?version=%32", &h).as_deref(), Some("v2"), "decoded");
    assert_eq!(at("/q?version=22", &h).as_deref(), Some("rest"));
    assert_eq!(at("/q?x=1&beta", &h).as_deref(), Some("beta"));
    assert_eq!(at("/q", &h).as_deref(), Some("rest"));
    h.insert("x-canary", HeaderValue::from_static("1"));
    assert_eq!(at("/q", &h).as_deref(), Some("canary"));
    h.insert("x-canary", HeaderValue::from_static("11"));
    assert_eq!(
        at("/q", &h).as_deref(),
        Some("rest"),
        "the regex matches whole values"
    );
    assert_eq!(at("/q", &HeaderMap::new()).as_deref(), Some("no-auth"));
}

#[test]
fn indistinguishable_regex_or_query_routes_are_refused() {
    let e = router(concat!(
        "  - { id: a, match: { path_regex: \"/x.*\" }, upstream: s }\n",
        "  - { id: b, match: { path_regex: \"/x.*\" }, upstream: s }\n",
    ))
    .unwrap_err();
    assert!(
        e.contains("route \\\"b\\\" duplicates route \\\"a\\\""),
        "{e}"
    );
    let e = router(concat!(
        "  - { id: a, match: { path: /x, query: { v: \"1\" } }, upstream: s }\n",
        "  - { id: b, match: { path: /x, query: { v: \"1\" } }, upstream: s }\n",
    ))
    .unwrap_err();
    assert!(e.contains("duplicates"), "{e}");
    assert!(
        router(concat!(
            "  - { id: a, match: { path: /x, query: { v: \"1\" } }, upstream: s }\n",
            "  - { id: b, match: { path: /x, query: { v: \"2\" } }, upstream: s }\n",
        ))
        .is_ok()
    );
}
