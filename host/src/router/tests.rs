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
    let key = RequestKey {
        host,
        method: &method,
        path,
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
