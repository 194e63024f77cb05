//! The transformation and edge plugins end to end: request-transform,
//! response-transform, cors, ip-restriction (with `trusted_proxies`),
//! request-size-limit and request-validator.

use http::Method;
use serde_json::{Value, json};

use crate::support::client::stream_through;
use crate::support::*;

const ALL: &[&str] = &[
    "testkit",
    "request-transform",
    "response-transform",
    "cors",
    "ip-restriction",
    "request-size-limit",
    "request-validator",
];

async fn gateway(up: &Upstream, head: &str, routes: &[(&str, &str, Vec<Value>)]) -> TestGateway {
    start_with(&json_routes(up, head, routes), ALL).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_transform_edits_what_the_upstream_receives() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let transform = attach(
        "request-transform",
        json!({
            "headers": {
                "remove": ["x-internal"],
                "rename": { "x-old": "x-new" },
                "set": { "x-user": "{consumer}", "x-order": "{path.id}" },
                "add": { "x-via": "gw {route_id}" },
            },
            "path": { "regex": "^/orders/([0-9]+)$", "replace": "/v2/orders/$1" },
            "query": { "remove": ["debug"], "set": { "source": "gate way" } },
            "body": { "set": { "meta.by": "{consumer}", "version": 2 }, "remove": ["password"] },
        }),
    );
    let consumer = attach(
        "testkit",
        json!({ "mode": "set-attr", "name": "consumer", "value": "alice" }),
    );
    let gw = gateway(
        &up,
        "",
        &[("orders", "/orders/{id}", vec![consumer, transform])],
    )
    .await;
    let r = request(
        Method::POST,
        &gw.url("/orders/42?debug=1&keep=yes"),
        &[
            ("x-internal", "secret"),
            ("x-old", "v"),
            ("content-type", "application/json"),
        ],
        r#"{"password":"hunter2","item":"book"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.uri, "/v2/orders/42?keep=yes&source=gate%20way");
    assert_eq!(seen.headers["x-user"], "alice");
    assert_eq!(seen.headers["x-order"], "42");
    assert_eq!(seen.headers["x-new"], "v");
    assert_eq!(seen.headers["x-via"], "gw orders");
    assert!(seen.headers.get("x-internal").is_none() && seen.headers.get("x-old").is_none());
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        json!({ "item": "book", "meta": { "by": "alice" }, "version": 2 })
    );
    assert_eq!(
        seen.headers["content-length"],
        seen.body.len().to_string().as_str()
    );

    // A body the edits cannot apply to is refused, never forwarded unedited.
    let hits = up.hits();
    let r = request(
        Method::POST,
        &gw.url("/orders/7"),
        &[("content-type", "text/plain")],
        "password=hunter2",
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(up.hits(), hits);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_transform_edits_what_the_client_receives() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let transform = attach(
        "response-transform",
        json!({
            "headers": {
                "remove": ["x-upstream"],
                "set": { "x-frame-options": "DENY", "x-content-type-options": "nosniff",
                         "strict-transport-security": "max-age=31536000" },
            },
            "json": { "deny": ["headers", "body", "version"], "rename": { "uri": "path" } },
        }),
    );
    let gw = gateway(&up, "", &[("r", "/*", vec![transform])]).await;
    let r = get(&gw.url("/thing?x=1")).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-upstream").is_none());
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    assert_eq!(
        r.json(),
        json!({ "upstream": "up", "method": "GET", "path": "/thing?x=1" })
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflight_itself_and_tags_allowed_origins() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let cors = attach(
        "cors",
        json!({
            "origins": ["https://app.example.com", "https://*.example.org"],
            "methods": ["GET", "PUT"],
            "headers": ["content-type", "authorization"],
            "exposed_headers": ["x-request-id"],
            "credentials": true,
            "max_age": 3600,
        }),
    );
    let gw = gateway(&up, "", &[("api", "/api/*", vec![cors])]).await;
    let preflight = async |origin: &str, method: &str| {
        request(
            Method::OPTIONS,
            &gw.url("/api/items"),
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", "content-type"),
            ],
            "",
        )
        .await
    };
    let r = preflight("https://app.example.com", "PUT").await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type, authorization")
    );
    assert_eq!(r.header("access-control-max-age"), Some("3600"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(r.header("vary").is_some_and(|v| v.contains("Origin")));
    for (origin, method) in [
        ("https://evil.example.com", "PUT"),
        ("https://app.example.com", "DELETE"),
    ] {
        let r = preflight(origin, method).await;
        assert_eq!(r.status, 204);
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "{origin} {method}"
        );
    }
    assert_eq!(up.hits(), 0, "preflights never reach the upstream");

    let from = async |origin: &str| {
        request(
            Method::GET,
            &gw.url("/api/items"),
            &[("origin", origin)],
            "",
        )
        .await
    };
    let r = from("https://shop.example.org").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example.org")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = from("https://example.org.evil.com").await;
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_restriction_trusts_forwarded_for_only_from_trusted_proxies() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let allow_10 = attach("ip-restriction", json!({ "allow": ["10.0.0.0/8"] }));
    let deny_local = attach("ip-restriction", json!({ "deny": ["127.0.0.0/8", "::1"] }));
    let via = async |gw: &TestGateway, path: &str, xff: &str| {
        request(Method::GET, &gw.url(path), &[("x-forwarded-for", xff)], "")
            .await
            .status
    };
    // No trusted proxies: the peer (127.0.0.1) is the client, whatever it claims.
    let routes = [
        ("a", "/allow", vec![allow_10.clone()]),
        ("d", "/deny", vec![deny_local.clone()]),
    ];
    let gw = gateway(&up, "", &routes).await;
    assert_eq!(
        via(&gw, "/allow", "10.1.2.3").await,
        403,
        "spoofed X-Forwarded-For ignored"
    );
    let r = get(&gw.url("/deny")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden");
    gw.stop().await;

    // The peer is a trusted proxy: the address it saw is the client.
    let gw = gateway(&up, "trusted_proxies: [127.0.0.1, \"::1\"]\n", &routes).await;
    assert_eq!(via(&gw, "/allow", "10.1.2.3").await, 200);
    assert_eq!(
        via(&gw, "/allow", "10.1.2.3, 192.168.9.9").await,
        403,
        "the nearest untrusted hop is the client, not what it claimed"
    );
    assert_eq!(via(&gw, "/deny", "198.51.100.4").await, 200);
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_size_limit_with_and_without_content_length() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let limit = attach("request-size-limit", json!({ "max_bytes": 1000 }));
    let gw = gateway(&up, "", &[("r", "/*", vec![limit])]).await;
    let r = request(Method::POST, &gw.url("/up"), &[], vec![b'x'; 2000]).await;
    assert_eq!(r.status, 413, "declared length over the limit");
    assert_eq!(r.json()["error"], "payload_too_large");
    let (status, _) = stream_through(&gw.url("/up"), 2000).await;
    assert_eq!(status, 413, "chunked body counted");
    let r = request(Method::POST, &gw.url("/up"), &[], vec![b'y'; 500]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().body.len(), 500);
    let (status, _) = stream_through(&gw.url("/up"), 900).await;
    assert_eq!(status, 200, "chunked body under the limit");
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_validator_lists_what_failed() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let validator = attach(
        "request-validator",
        json!({
            "body_schema": {
                "type": "object",
                "required": ["name", "qty"],
                "properties": { "name": { "type": "string" }, "qty": { "type": "integer", "minimum": 1 } },
            },
            "query_schema": { "type": "object", "properties": { "page": { "type": "string", "pattern": "^[0-9]+$" } } },
        }),
    );
    let gw = gateway(&up, "", &[("r", "/*", vec![validator])]).await;
    let post = async |path: &str, body: &str, ct: &str| {
        request(
            Method::POST,
            &gw.url(path),
            &[("content-type", ct)],
            body.to_string(),
        )
        .await
    };
    let json_ct = "application/json";
    assert_eq!(
        post("/o?page=2", r#"{"name":"pen","qty":3}"#, json_ct)
            .await
            .status,
        200
    );

    let r = post("/o", r#"{"name":"pen","qty":0}"#, json_ct).await;
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["errors"][0]["path"], "/qty");
    assert_eq!(body["errors"][0]["in"], "body");

    let r = post("/o", r#"{"qty":"many"}"#, json_ct).await;
    assert_eq!(r.status, 400);
    let errors = r.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 2, "missing name and a string qty: {errors:?}");

    let r = post("/o?page=abc", r#"{"name":"pen","qty":3}"#, json_ct).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["in"], "query");
    assert_eq!(post("/o", "name=pen", "text/plain").await.status, 400);
    assert_eq!(post("/o", "{not json", json_ct).await.status, 400);
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policy_configs_are_load_errors() {
    let up = Upstream::start("up", Behavior::Echo).await;
    for (plugin, config, message) in [
        (
            "ip-restriction",
            json!({ "allow": ["10.0.0.0/33"] }),
            "allow[0]: `10.0.0.0/33` is not an IP address or CIDR",
        ),
        ("ip-restriction", json!({}), "set `allow`, `deny`, or both"),
        (
            "request-transform",
            json!({ "path": { "regex": "(", "replace": "/" } }),
            "path.regex",
        ),
        (
            "request-transform",
            json!({ "headers": { "set": { "x": "{nope}" } } }),
            "unknown placeholder {nope}",
        ),
        (
            "response-transform",
            json!({ "json": { "allow": ["a"], "deny": ["b"] } }),
            "not both",
        ),
        (
            "cors",
            json!({ "origins": ["app.example.com"] }),
            "needs a scheme",
        ),
        (
            "request-validator",
            json!({ "body_schema": { "type": 5 } }),
            "body_schema: invalid schema",
        ),
        (
            "request-size-limit",
            json!({ "max_bytes": "big" }),
            "max_bytes",
        ),
    ] {
        let err = load_error(&up, plugin, config.clone()).await;
        assert!(err.contains(message), "{plugin} {config}: {err}");
    }
    let yaml = json_routes(
        &up,
        "trusted_proxies: [10.0.0.0/40]\n",
        &[("r", "/*", vec![])],
    );
    let err = TestGateway::try_start(&yaml).await.err().expect("rejected");
    assert!(err.contains("trusted_proxies[0]"), "{err}");
}
