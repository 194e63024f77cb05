//! Policies that fail closed: rate limits each attachment counts on its own,
//! CORS that cannot be opened to every site with credentials, transforms that
//! refuse what they cannot edit, validators that see every value, overload that
//! never skips a plugin, precompiled code only on request.

use http::Method;
use serde_json::json;

use crate::support::raw::{exchange, status_of};
use crate::support::*;

fn limit(n: u32) -> serde_json::Value {
    attach(
        "rate-limit",
        json!({ "limits": [{ "scope": "ip", "limit": n, "window": "1m" }] }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rate_limit_attachment_counts_on_its_own() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let routes = [
        ("a", "/a/*", vec![limit(3)]),
        ("b", "/b/*", vec![limit(100)]),
    ];
    let gw = start_with(&json_routes(&up, "", &routes), &["rate-limit"]).await;
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/b/x")).await.status, 200);
    }
    // Route b's traffic did not spend route a's budget of 3.
    for i in 0..3 {
        assert_eq!(get(&gw.url("/a/x")).await.status, 200, "request {i} on a");
    }
    assert_eq!(get(&gw.url("/a/x")).await.status, 429);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_counter_is_shared_on_purpose() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let shared = |n| {
        let mut a = limit(n);
        a["counter"] = json!("api-wide");
        a
    };
    let routes = [
        ("a", "/a/*", vec![shared(3)]),
        ("b", "/b/*", vec![shared(3)]),
    ];
    let gw = start_with(&json_routes(&up, "", &routes), &["rate-limit"]).await;
    for path in ["/a/x", "/b/x", "/a/x"] {
        assert_eq!(get(&gw.url(path)).await.status, 200);
    }
    assert_eq!(
        get(&gw.url("/b/x")).await.status,
        429,
        "one counter for both"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_without_a_default_are_a_load_error() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let cfg =
        json!({ "limits": [{ "scope": "consumer", "window": "1m", "tiers": { "free": 5 } }] });
    let err = load_error(&up, "rate-limit", cfg).await;
    assert!(err.contains("default"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_share_a_counter_per_64() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start_with(
        &json_routes(
            &up,
            "trusted_proxies: [127.0.0.1]\n",
            &[("r", "/*", vec![limit(1)])],
        ),
        &["rate-limit"],
    )
    .await;
    let from = async |ip: &str| {
        let raw = format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {ip}\r\nConnection: close\r\n\r\n"
        );
        status_of(&exchange(gw.addr, raw.as_bytes()).await)
    };
    assert_eq!(from("2001:db8:1:2::1").await, 200);
    assert_eq!(
        from("2001:db8:1:2:ffff::9").await,
        429,
        "same /64, same counter"
    );
    assert_eq!(from("2001:db8:1:3::1").await, 200, "another /64");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_rate_limit_keys_are_bounded_and_evictions_counted() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let head = format!(
        "{}trusted_proxies: [127.0.0.1]\nplugin_state: {{ rate_limit_keys: 64 }}\n",
        crate::observability::ADMIN
    );
    let gw = start_with(
        &json_routes(&up, &head, &[("r", "/*", vec![limit(5)])]),
        &["rate-limit"],
    )
    .await;
    // One new key per request, as a client rotating spoofable addresses would.
    for i in 0..400u32 {
        let raw = format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.{}.{}.1\r\nConnection: close\r\n\r\n",
            i / 256,
            i % 256
        );
        assert_eq!(status_of(&exchange(gw.addr, raw.as_bytes()).await), 200);
    }
    let metrics = request(
        Method::GET,
        &gw.admin_url("/metrics"),
        &[("authorization", crate::observability::TOKEN)],
        bytes::Bytes::new(),
    )
    .await
    .text();
    let evicted: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"gatehouse_plugin_state_evictions_total{plugin="rate-limit",store="rate_limit"} "#)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(evicted >= 400 - 64, "{evicted} evicted: {metrics}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_any_origin_with_credentials_is_a_load_error() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let err = load_error(
        &up,
        "cors",
        json!({ "origins": ["*"], "credentials": true }),
    )
    .await;
    assert!(err.contains("credentials"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_never_allows_the_null_origin_unless_listed() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let any = attach("cors", json!({ "origins": ["*"] }));
    let listed = attach("cors", json!({ "origins": ["null"], "credentials": true }));
    let routes = [
        ("any", "/any/*", vec![any]),
        ("listed", "/listed/*", vec![listed]),
    ];
    let gw = start_with(&json_routes(&up, "", &routes), &["cors"]).await;
    let origin = [("origin", "null")];
    let r = request(Method::GET, &gw.url("/any/x"), &origin, bytes::Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = request(
        Method::GET,
        &gw.url("/listed/x"),
        &origin,
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("null"));
    gw.stop().await;
}

async fn transformed(behavior: Behavior) -> (TestGateway, Upstream) {
    let up = Upstream::start("up", behavior).await;
    let t = attach(
        "response-transform",
        json!({ "json": { "deny": ["secret"] } }),
    );
    let gw = start_with(
        &json_routes(&up, "", &[("r", "/*", vec![t])]),
        &["response-transform"],
    )
    .await;
    (gw, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_json_filters_refuse_compressed_bodies() {
    let (gw, up) = transformed(Behavior::Fixed {
        content_type: "application/json",
        encoding: "gzip",
        body: b"\x1f\x8b\x08\x00not-really-gzip",
    })
    .await;
    let h = [("accept-encoding", "gzip")];
    let r = request(Method::GET, &gw.url("/x"), &h, bytes::Bytes::new()).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "response_transform_failed");
    // The gateway asked the upstream for an uncompressed answer.
    assert!(up.received()[0].headers.get("accept-encoding").is_none());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_json_filters_refuse_other_types_and_malformed_json() {
    for (content_type, body) in [
        ("text/plain", &b"secret=hunter2"[..]),
        ("application/json", &b"{\"secret\": \"hunter2\""[..]),
        ("application/json", &b"[{\"secret\": \"hunter2\"}]"[..]),
    ] {
        let (gw, _up) = transformed(Behavior::Fixed {
            content_type,
            encoding: "",
            body,
        })
        .await;
        let r = get(&gw.url("/x")).await;
        assert_eq!(
            r.status,
            502,
            "{content_type} {:?}",
            String::from_utf8_lossy(body)
        );
        assert!(!r.text().contains("hunter2"));
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_edits_refuse_what_they_cannot_edit() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let t = attach(
        "request-transform",
        json!({ "body": { "remove": ["role"] } }),
    );
    let gw = start_with(
        &json_routes(&up, "", &[("r", "/*", vec![t])]),
        &["request-transform"],
    )
    .await;
    let send = async |ct: &str, ce: Option<&str>, body: &'static str| {
        let mut h = vec![("content-type", ct)];
        if let Some(ce) = ce {
            h.push(("content-encoding", ce));
        }
        request(Method::POST, &gw.url("/x"), &h, body).await.status
    };
    assert_eq!(send("text/plain", None, "role=admin").await, 415);
    assert_eq!(
        send("application/json", Some("gzip"), "{\"role\":\"admin\"}").await,
        415
    );
    assert_eq!(send("application/json", None, "{\"role\":").await, 400);
    assert_eq!(send("application/json", None, "[1]").await, 400);
    assert_eq!(up.hits(), 0, "nothing unedited reached the upstream");
    assert_eq!(
        send("application/json", None, "{\"role\":\"admin\",\"a\":1}").await,
        200
    );
    assert_eq!(&up.received()[0].body[..], b"{\"a\":1}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_of_a_repeated_query_parameter_is_validated() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let schema = json!({ "type": "object", "properties": { "id": { "type": "string", "pattern": "^[0-9]+$" } } });
    let v = attach("request-validator", json!({ "query_schema": schema }));
    let gw = start_with(
        &json_routes(&up, "", &[("r", "/*", vec![v])]),
        &["request-validator"],
    )
    .await;
    assert_eq!(get(&gw.url("/x?id=42")).await.status, 200);
    assert_eq!(get(&gw.url("/x?id=42&id=1%20OR%201=1")).await.status, 400);
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_allow_does_not_skip_a_plugin_that_is_busy() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let kit = json!({ "name": "testkit", "on_error": "allow", "max_instances": 1, "timeout": "450ms",
        "config": { "mode": "sleep", "ms": 400 } });
    let gw = start_with(
        &json_routes(&up, "", &[("r", "/*", vec![kit])]),
        &["testkit"],
    )
    .await;
    let url = gw.url("/x");
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let u = url.clone();
            tokio::spawn(async move { get(&u).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        let r = c.await.unwrap();
        if r.status == 503 {
            assert_eq!(r.json()["error"], "plugin_busy");
        }
        statuses.push(r.status.as_u16());
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        up.hits(),
        ok,
        "only requests the plugin ran on reached the upstream"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompiled_plugins_load_only_when_allowed() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let cwasm = dir.path().join("tag.cwasm");
    precompile(&plugin_path("tag-a"), &cwasm);
    let only_cwasm = async |yaml: String| {
        let (dir, path) = crate::support::gateway::prepare_dir(&yaml, &[]);
        std::fs::copy(&cwasm, dir.path().join("plugins/tag.cwasm")).unwrap();
        (dir, gatehouse::Gateway::start(&path).await)
    };
    let (_d, refused) = only_cwasm(tagged_route(&up)).await;
    let err = refused
        .err()
        .expect("a .cwasm without allow_precompiled")
        .to_string();
    assert!(err.contains("allow_precompiled"), "{err}");
    let (_d, allowed) = only_cwasm(format!("allow_precompiled: true\n{}", tagged_route(&up))).await;
    let gw = allowed.expect("allowed");
    gw.shutdown().await;
}
