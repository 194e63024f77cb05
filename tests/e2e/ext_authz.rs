//! The built-in `ext-authz` plugin against a real authorization service
//! (`Behavior::Authz`): allow with headers and attributes, deny with the
//! service's answer, no answer under both failure modes, and the body.

use http::Method;

use crate::support::client::Reply;
use crate::support::*;

/// `app` behind `/orders/*` with ext-authz (then testkit reading the
/// `consumer` attribute), and a plain route `/open` without plugins.
async fn start(authz_cfg: &str, extra: &str) -> (Upstream, Upstream, TestGateway) {
    let app = Upstream::start("app", Behavior::Echo).await;
    let authz = Upstream::start("authz", Behavior::Authz).await;
    let yaml = format!(
        "services:\n  - name: app\n    instances: [{{ url: \"{}\" }}]\n  - name: authz\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: orders\n    match: {{ path: \"/orders/*\" }}\n    upstream: app\n    plugins:\n      - {{ name: ext-authz, callouts: [authz]{extra}, config: {{ service: authz, path_prefix: /authz, allowed_upstream_headers: [x-user-id], allowed_client_headers: [www-authenticate], attributes: {{ consumer: x-user-id }}{authz_cfg} }} }}\n      - {{ name: testkit, config: {{ mode: read-attr, name: consumer, header: x-seen-consumer }} }}\n  - id: open\n    match: {{ path: /open }}\n    upstream: app\n",
        app.url(),
        authz.url()
    );
    let plugins = [
        ("ext-authz", plugin_path("ext-authz")),
        ("testkit", plugin_path("testkit")),
    ];
    let refs: Vec<(&str, &std::path::Path)> =
        plugins.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let gw = TestGateway::start_with_plugins(&yaml, &refs).await;
    (app, authz, gw)
}

async fn call(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(Method::GET, &gw.url(path), headers, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_carries_what_the_service_vouched_for() {
    let (app, authz, gw) = start("", "").await;
    let r = call(
        &gw,
        "/orders/7?full=1",
        &[
            ("authorization", "Bearer good"),
            ("x-user-id", "mallory"),
            ("x-other", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    // The check: same method, prefixed path, the allowed headers only.
    let check = authz.last();
    assert_eq!(check.method, "GET");
    assert_eq!(check.uri, "/authz/orders/7?full=1");
    assert_eq!(check.headers["authorization"], "Bearer good");
    assert_eq!(check.headers["x-forwarded-uri"], "/orders/7?full=1");
    assert_eq!(check.headers["x-forwarded-method"], "GET");
    assert!(
        check.headers.get("x-other").is_none(),
        "not an allowed request header"
    );
    // Upstream: the service's identity, not the client's; nothing else of the answer.
    let seen = app.last();
    assert_eq!(seen.headers["x-user-id"], "alice");
    assert!(seen.headers.get("x-internal").is_none());
    assert_eq!(
        seen.headers["x-seen-consumer"], "alice",
        "attribute for later plugins"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_the_services_answer_and_nothing_goes_upstream() {
    let (app, authz, gw) = start("", "").await;
    let r = call(&gw, "/orders/7", &[("authorization", "Bearer bad")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "{\"error\":\"denied by authz\"}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"test\""));
    assert_eq!(r.header("x-internal"), None, "not an allowed client header");
    assert_eq!(authz.hits(), 1);
    assert_eq!(app.hits(), 0);
    // No credentials at all: the service decides (401 here).
    assert_eq!(call(&gw, "/orders/7", &[]).await.status, 401);
    assert_eq!(app.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vouched_header_sent_by_a_client_is_removed_on_every_route() {
    let (app, _authz, gw) = start("", "").await;
    // `/open` has no ext-authz: the identity header still never passes.
    let r = call(&gw, "/open", &[("x-user-id", "mallory")]).await;
    assert_eq!(r.status, 200);
    assert!(app.last().headers.get("x-user-id").is_none());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_fails_closed_by_default() {
    let (app, _authz, gw) = start("", ", callout_timeout: 200ms").await;
    let r = call(&gw, "/orders/7", &[("authorization", "Bearer slow")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "authorization_unavailable");
    assert_eq!(app.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_passes_with_failure_mode_allow_and_a_custom_status_otherwise() {
    let (app, _authz, gw) = start(", failure_mode_allow: true", ", callout_timeout: 200ms").await;
    let r = call(&gw, "/orders/7", &[("authorization", "Bearer slow")]).await;
    assert_eq!(r.status, 200);
    assert!(
        app.last().headers.get("x-user-id").is_none(),
        "nothing vouched"
    );
    gw.stop().await;
    let (app, authz, gw) = start(", status_on_error: 503", "").await;
    authz.kill();
    let r = call(&gw, "/orders/7", &[("authorization", "Bearer good")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(app.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_is_sent_when_asked() {
    let (app, authz, gw) = start(", include_body: true", "").await;
    let r = request(
        Method::POST,
        &gw.url("/orders/7"),
        &[("authorization", "Bearer good")],
        "{\"qty\":2}",
    )
    .await;
    assert_eq!(r.status, 200);
    let check = authz.last();
    assert_eq!(check.method, "POST");
    assert_eq!(&check.body[..], b"{\"qty\":2}");
    assert_eq!(
        &app.last().body[..],
        b"{\"qty\":2}",
        "the body still goes upstream"
    );
    gw.stop().await;
}
