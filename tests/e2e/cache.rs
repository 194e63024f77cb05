//! The response cache against a real origin that counts what it gets:
//! hits, misses and expiry; what a shared cache must not store; consumers
//! kept apart; authentication before any stored answer; conditionals; stale
//! serving; coalescing; the memory bound; purges.

use std::time::Duration;

use http::Method;
use serde_json::json;

use crate::support::client::Reply;
use crate::support::origin::{Origin, Spec};
use crate::support::*;

/// A gateway with one service at `origin`, admin on, `top` at the top
/// level and routes given as `(id, path, extra route YAML)`.
async fn gateway(
    origin: &Origin,
    top: &str,
    routes: &[(&str, &str, &str)],
    plugins: &[&str],
) -> TestGateway {
    let mut yaml = format!(
        "admin: {{ addr: \"127.0.0.1:0\", tokens: [{{ name: ops, token: cache-admin-token-0123 }}] }}\n{top}services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n",
        origin.url()
    );
    for (id, path, extra) in routes {
        yaml +=
            &format!("  - id: {id}\n    match: {{ path: \"{path}\" }}\n    upstream: s\n{extra}");
    }
    start_with(&yaml, plugins).await
}

async fn cached(origin: &Origin) -> TestGateway {
    gateway(origin, "", &[("c", "/*", "    cache: {}\n")], &[]).await
}

async fn get_with(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(Method::GET, &gw.url(path), headers, "").await
}

fn status_of(r: &Reply) -> String {
    r.header("cache-status").unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_answer_is_served_from_the_cache_until_it_expires() {
    let origin = Origin::start().await;
    origin.set("/a", Spec::with(&[("cache-control", "max-age=1")]));
    let gw = cached(&origin).await;
    let first = get(&gw.url("/a")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "/a? #1 consumer=-");
    assert!(
        status_of(&first).starts_with("gatehouse; fwd=miss; fwd-status=200; stored"),
        "{}",
        status_of(&first)
    );
    let second = get(&gw.url("/a")).await;
    assert_eq!(second.text(), "/a? #1 consumer=-", "served from the cache");
    assert_eq!(second.header("age"), Some("0"));
    assert!(
        status_of(&second).starts_with("gatehouse; hit; ttl="),
        "{}",
        status_of(&second)
    );
    assert_eq!(origin.hits("/a"), 1);
    // Parameters in another order are the same key.
    origin.set("/q", Spec::with(&[("cache-control", "max-age=60")]));
    get(&gw.url("/q?b=2&a=1")).await;
    let same = get(&gw.url("/q?a=1&b=2")).await;
    assert!(status_of(&same).contains("hit"));
    assert_eq!(origin.hits("/q"), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = get(&gw.url("/a")).await;
    assert_eq!(third.text(), "/a? #2 consumer=-", "expired: fetched again");
    assert_eq!(origin.hits("/a"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_no_store_set_cookie_and_vary_star_are_never_stored() {
    let origin = Origin::start().await;
    for (path, headers) in [
        ("/private", vec![("cache-control", "private, max-age=60")]),
        (
            "/nostore",
            vec![
                ("cache-control", "no-store, max-age=60"),
                ("etag", "\"n1\""),
            ],
        ),
        (
            "/cookie",
            vec![
                ("cache-control", "max-age=60"),
                ("set-cookie", "sid=secret"),
            ],
        ),
        (
            "/star",
            vec![("cache-control", "max-age=60"), ("vary", "*")],
        ),
        ("/silent", vec![]),
    ] {
        origin.set(path, Spec::with(&headers));
    }
    let gw = cached(&origin).await;
    for (path, why) in [
        ("/private", "private"),
        ("/nostore", "no-store"),
        ("/cookie", "set-cookie"),
        ("/star", "vary-star"),
        ("/silent", "no-freshness"),
    ] {
        let a = get(&gw.url(path)).await;
        let b = get(&gw.url(path)).await;
        assert_eq!(a.status, 200);
        assert_eq!(origin.hits(path), 2, "{path} must not be stored");
        assert!(
            status_of(&b).ends_with(&format!("detail={why}")),
            "{path}: {}",
            status_of(&b)
        );
    }
    // Known not storable: the client's own validators reach the origin, and
    // its 304 the client.
    let revalidate = get_with(&gw, "/nostore", &[("if-none-match", "\"n1\"")]).await;
    assert_eq!(revalidate.status, 304);
    assert_eq!(
        origin.seen("/nostore")[2].headers["if-none-match"],
        "\"n1\""
    );
    // The cookie reached the client that asked, never a second one from the cache.
    assert_eq!(
        get(&gw.url("/cookie")).await.header("set-cookie"),
        Some("sid=secret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vary_header_keeps_variants_apart() {
    let origin = Origin::start().await;
    origin.set(
        "/v",
        Spec::with(&[("cache-control", "max-age=60"), ("vary", "Accept-Language")]),
    );
    let gw = cached(&origin).await;
    let en = get_with(&gw, "/v", &[("accept-language", "en")]).await;
    let fr = get_with(&gw, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(en.text(), "/v? #1 consumer=-");
    assert_eq!(fr.text(), "/v? #2 consumer=-", "another variant: fetched");
    let en2 = get_with(&gw, "/v", &[("accept-language", "en")]).await;
    let fr2 = get_with(&gw, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(en2.text(), "/v? #1 consumer=-");
    assert_eq!(fr2.text(), "/v? #2 consumer=-");
    assert!(status_of(&fr2).contains("hit"));
    assert_eq!(origin.hits("/v"), 2);
}

fn api_key_route(vary: &str) -> String {
    use sha2::Digest;
    let hash = |k: &str| format!("sha256:{}", hex::encode(sha2::Sha256::digest(k.as_bytes())));
    let keys = json!([{ "hash": hash("ka"), "consumer": "alice" }, { "hash": hash("kb"), "consumer": "bob" }]);
    format!(
        "    plugins: [{{ name: api-key, config: {{ keys: {keys} }} }}]\n    cache: {{ {vary} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_by_consumer_two_consumers_never_see_each_others_answer() {
    let origin = Origin::start().await;
    origin.set("/me", Spec::with(&[("cache-control", "max-age=60")]));
    let route = api_key_route("vary_by: [attr.consumer]");
    let gw = gateway(&origin, "", &[("c", "/*", &route)], &["api-key"]).await;
    let alice = get_with(&gw, "/me", &[("x-api-key", "ka")]).await;
    let bob = get_with(&gw, "/me", &[("x-api-key", "kb")]).await;
    assert_eq!(alice.text(), "/me? #1 consumer=alice");
    assert_eq!(bob.text(), "/me? #2 consumer=bob");
    for _ in 0..3 {
        let a = get_with(&gw, "/me", &[("x-api-key", "ka")]).await;
        let b = get_with(&gw, "/me", &[("x-api-key", "kb")]).await;
        assert_eq!(a.text(), "/me? #1 consumer=alice");
        assert_eq!(b.text(), "/me? #2 consumer=bob");
        assert!(status_of(&a).contains("hit") && status_of(&b).contains("hit"));
    }
    assert_eq!(origin.hits("/me"), 2);
    // Authentication runs before the cache: no key is a 401, whatever is stored.
    let anonymous = get(&gw.url("/me")).await;
    assert_eq!(anonymous.status, 401);
    assert!(
        !anonymous.text().contains("consumer="),
        "{}",
        anonymous.text()
    );
    assert!(anonymous.header("cache-status").is_none());
    let wrong = get_with(&gw, "/me", &[("x-api-key", "nope")]).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(origin.hits("/me"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_consumer_is_not_shared_unless_the_key_or_the_origin_allows() {
    let origin = Origin::start().await;
    origin.set("/me", Spec::with(&[("cache-control", "max-age=60")]));
    origin.set(
        "/pub",
        Spec::with(&[("cache-control", "public, max-age=60")]),
    );
    let route = api_key_route("");
    let gw = gateway(&origin, "", &[("c", "/*", &route)], &["api-key"]).await;
    get_with(&gw, "/me", &[("x-api-key", "ka")]).await;
    let bob = get_with(&gw, "/me", &[("x-api-key", "kb")]).await;
    assert_eq!(
        bob.text(),
        "/me? #2 consumer=bob",
        "alice's answer must not reach bob"
    );
    assert!(
        status_of(&bob).ends_with("detail=authorization"),
        "{}",
        status_of(&bob)
    );
    // `public` is the origin's word that the answer is the same for everyone.
    get_with(&gw, "/pub", &[("x-api-key", "ka")]).await;
    let shared = get_with(&gw, "/pub", &[("x-api-key", "kb")]).await;
    assert!(status_of(&shared).contains("hit"));
    assert_eq!(origin.hits("/pub"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_304_for_validators_that_match_the_stored_answer() {
    let origin = Origin::start().await;
    let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    origin.set(
        "/e",
        Spec::with(&[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("last-modified", lm),
        ]),
    );
    let gw = cached(&origin).await;
    // On a miss the origin is asked for the whole answer, not the client's 304.
    let miss = get_with(&gw, "/e", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(miss.status, 200);
    assert!(origin.seen("/e")[0].headers.get("if-none-match").is_none());
    let hit = get_with(&gw, "/e", &[("if-none-match", "W/\"v1\"")]).await;
    assert_eq!(hit.status, 304);
    assert_eq!(hit.header("etag"), Some("\"v1\""));
    assert!(hit.body.is_empty());
    let other = get_with(&gw, "/e", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(other.status, 200);
    let since = get_with(&gw, "/e", &[("if-modified-since", lm)]).await;
    assert_eq!(since.status, 304);
    let head = request(Method::HEAD, &gw.url("/e"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(status_of(&head).contains("hit"), "HEAD from the stored GET");
    assert_eq!(origin.hits("/e"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_answer_is_revalidated_with_its_validators() {
    let origin = Origin::start().await;
    origin.set(
        "/r",
        Spec::with(&[
            ("cache-control", "max-age=1"),
            ("etag", "\"r1\""),
            ("x-version", "one"),
        ]),
    );
    let gw = cached(&origin).await;
    get(&gw.url("/r")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set(
        "/r",
        Spec::with(&[
            ("cache-control", "max-age=60"),
            ("etag", "\"r1\""),
            ("x-version", "two"),
        ]),
    );
    let r = get(&gw.url("/r")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "/r? #1 consumer=-", "the stored body, confirmed");
    assert_eq!(
        r.header("x-version"),
        Some("two"),
        "headers updated by the 304"
    );
    assert!(
        status_of(&r).starts_with("gatehouse; fwd=stale; fwd-status=304"),
        "{}",
        status_of(&r)
    );
    let asked = origin.seen("/r");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1].headers["if-none-match"], "\"r1\"");
    // Fresh again for 60 s.
    let again = get(&gw.url("/r")).await;
    assert!(status_of(&again).contains("hit"));
    assert_eq!(origin.hits("/r"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() {
    let origin = Origin::start().await;
    origin.set(
        "/s",
        Spec::with(&[("cache-control", "max-age=1, stale-while-revalidate=30")]),
    );
    let gw = cached(&origin).await;
    get(&gw.url("/s")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = get(&gw.url("/s")).await;
    assert_eq!(stale.text(), "/s? #1 consumer=-", "stale, at once");
    assert!(
        status_of(&stale).contains("detail=stale-while-revalidate"),
        "{}",
        status_of(&stale)
    );
    assert!(eventually(Duration::from_secs(5), async || origin.hits("/s") == 2).await);
    assert!(
        eventually(Duration::from_secs(5), async || get(&gw.url("/s"))
            .await
            .text()
            == "/s? #2 consumer=-")
        .await,
        "the refreshed answer replaces the stale one"
    );
    assert_eq!(origin.hits("/s"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_stands_in_while_the_origin_fails_or_is_gone() {
    let origin = Origin::start().await;
    origin.set(
        "/f",
        Spec::with(&[("cache-control", "max-age=1, stale-if-error=60")]),
    );
    origin.set(
        "/strict",
        Spec::with(&[(
            "cache-control",
            "max-age=1, stale-if-error=60, must-revalidate",
        )]),
    );
    let gw = cached(&origin).await;
    get(&gw.url("/f")).await;
    get(&gw.url("/strict")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set_down(true);
    let r = get(&gw.url("/f")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "/f? #1 consumer=-");
    assert!(
        status_of(&r).starts_with("gatehouse; fwd=stale; fwd-status=503"),
        "{}",
        status_of(&r)
    );
    assert!(status_of(&r).ends_with("detail=stale-if-error"));
    // must-revalidate: the failure is the answer.
    assert_eq!(get(&gw.url("/strict")).await.status, 503);
    // The origin killed: connection refused, still the stale answer.
    let addr = origin.addr;
    origin.kill().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let gone = get(&gw.url("/f")).await;
    assert_eq!(gone.status, 200);
    assert_eq!(gone.text(), "/f? #1 consumer=-");
    assert!(
        status_of(&gone).ends_with("detail=stale-if-error"),
        "{}",
        status_of(&gone)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_make_one_upstream_request() {
    let origin = Origin::start().await;
    let slow = |cc: &str| Spec {
        delay: Some(Duration::from_millis(300)),
        ..Spec::with(&[("cache-control", cc)])
    };
    origin.set("/cold", slow("max-age=60"));
    origin.set("/nocache", slow("no-store"));
    let gw = cached(&origin).await;
    let url = gw.url("/cold");
    let all = futures_util::future::join_all((0..100).map(|_| get(&url))).await;
    assert!(
        all.iter()
            .all(|r| r.status == 200 && r.text() == "/cold? #1 consumer=-")
    );
    assert_eq!(
        origin.hits("/cold"),
        1,
        "one fetch for 100 concurrent misses"
    );
    let collapsed = all
        .iter()
        .filter(|r| status_of(r).contains("collapsed"))
        .count();
    assert!(collapsed >= 90, "{collapsed} of 100 waited on the fill");
    // An answer that turns out uncacheable releases the waiters at once:
    // they go upstream together, not one after another.
    let url = gw.url("/nocache");
    let started = std::time::Instant::now();
    let all = futures_util::future::join_all((0..20).map(|_| get(&url))).await;
    assert!(all.iter().all(|r| r.status == 200));
    assert_eq!(
        origin.hits("/nocache"),
        20,
        "uncacheable: every request answered by the origin"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "released together: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_bound_holds_under_a_stream_of_distinct_keys() {
    let origin = Origin::start().await;
    for i in 0..300 {
        origin.set(
            &format!("/big/{i}"),
            Spec {
                size: Some(4096),
                ..Spec::with(&[("cache-control", "max-age=600")])
            },
        );
    }
    origin.set(
        "/huge",
        Spec {
            size: Some(300_000),
            ..Spec::with(&[("cache-control", "max-age=600")])
        },
    );
    let top = "cache: { max_bytes: 200000 }\n";
    let gw = gateway(
        &origin,
        top,
        &[("c", "/*", "    cache: { max_object_bytes: 100000 }\n")],
        &[],
    )
    .await;
    for i in 0..300 {
        assert_eq!(get(&gw.url(&format!("/big/{i}"))).await.status, 200);
    }
    let stats = request(
        Method::GET,
        &gw.admin_url("/cache"),
        &[("authorization", "Bearer cache-admin-token-0123")],
        "",
    )
    .await
    .json();
    assert!(stats["bytes"].as_u64().unwrap() <= 200_000, "{stats}");
    assert!(stats["evictions"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["entries"].as_u64().unwrap() < 300, "{stats}");
    // Larger than an object may be: streamed whole, not stored.
    let huge = get(&gw.url("/huge")).await;
    assert_eq!(huge.body.len(), 300_000);
    assert!(
        status_of(&huge).ends_with("detail=too-large"),
        "{}",
        status_of(&huge)
    );
    get(&gw.url("/huge")).await;
    assert_eq!(origin.hits("/huge"), 2);
    let metrics = request(
        Method::GET,
        &gw.admin_url("/metrics"),
        &[("authorization", "Bearer cache-admin-token-0123")],
        "",
    )
    .await
    .text();
    assert!(
        metrics.contains("gatehouse_cache_requests_total{route=\"c\",result=\"miss\"} 302"),
        "{metrics}"
    );
    assert!(metrics.contains("gatehouse_cache_max_bytes 200000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_remove_by_route_path_and_prefix() {
    let origin = Origin::start().await;
    for p in ["/a/1", "/a/2", "/b/1"] {
        origin.set(p, Spec::with(&[("cache-control", "max-age=600")]));
    }
    let routes = [
        ("c", "/*", "    cache: {}\n"),
        ("other", "/x/*", "    cache: {}\n"),
    ];
    let gw = gateway(&origin, "", &routes, &[]).await;
    let admin = |body: serde_json::Value| {
        let url = gw.admin_url("/cache");
        async move {
            request(
                Method::DELETE,
                &url,
                &[("authorization", "Bearer cache-admin-token-0123")],
                body.to_string(),
            )
            .await
        }
    };
    for p in ["/a/1", "/a/2", "/b/1"] {
        get(&gw.url(p)).await;
    }
    let r = admin(json!({ "route": "c", "prefix": "/a/" })).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["purged"], 2);
    assert!(status_of(&get(&gw.url("/a/1")).await).contains("fwd=miss"));
    assert!(status_of(&get(&gw.url("/b/1")).await).contains("hit"));
    assert_eq!(admin(json!({ "path": "/b/1" })).await.json()["purged"], 1);
    assert!(status_of(&get(&gw.url("/b/1")).await).contains("fwd=miss"));
    assert_eq!(admin(json!({ "route": "nope" })).await.json()["purged"], 0);
    let bad = admin(json!({ "paths": "/" })).await;
    assert_eq!(bad.status, 400);
    // Unsafe methods that succeed drop their key (RFC 9111 §4.4).
    let post = request(Method::POST, &gw.url("/a/2"), &[], "x").await;
    assert!(status_of(&post).contains("fwd=bypass; fwd-status=200; detail=method"));
    assert!(status_of(&get(&gw.url("/a/2")).await).contains("fwd=miss"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_what_the_cache_did() {
    let origin = Origin::start().await;
    origin.set("/l", Spec::with(&[("cache-control", "max-age=60")]));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let top = format!("access_log: {{ path: \"{}\" }}\n", log.display());
    let gw = gateway(&origin, &top, &[("c", "/*", "    cache: {}\n")], &[]).await;
    get(&gw.url("/l")).await;
    get(&gw.url("/l")).await;
    request(Method::POST, &gw.url("/l"), &[], "").await;
    let ok = eventually(Duration::from_secs(5), async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let caches: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["cache"].as_str().unwrap_or("").to_string())
            .collect();
        caches == ["miss", "hit", "bypass"]
    })
    .await;
    assert!(ok, "{}", std::fs::read_to_string(&log).unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_cannot_reach_a_consumers_stored_answer() {
    let origin = Origin::start().await;
    origin.set("/me", Spec::with(&[("cache-control", "max-age=60")]));
    let route = api_key_route("vary_by: [attr.consumer]");
    let gw = gateway(&origin, "", &[("c", "/*", &route)], &["api-key"]).await;
    assert_eq!(
        get_with(&gw, "/me", &[("x-api-key", "ka")]).await.text(),
        "/me? #1 consumer=alice"
    );
    for raw in [
        // The same path, encoded and double-slashed: canonicalised, then authenticated.
        "GET /%6De HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET //me HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        // A claimed identity is stripped at ingress, not believed.
        "GET /me HTTP/1.1\r\nHost: a\r\nX-Consumer-Id: alice\r\nConnection: close\r\n\r\n",
    ] {
        let resp = crate::support::raw::exchange(gw.addr, raw.as_bytes()).await;
        assert_eq!(
            crate::support::raw::status_of(&resp),
            401,
            "{raw:?}: {resp}"
        );
        assert!(!resp.contains("consumer=alice"), "{raw:?}: {resp}");
    }
    assert_eq!(origin.hits("/me"), 1, "nothing reached the origin");
}
