//! The built-in `oauth2-introspection` plugin against a real provider
//! ([`Idp`]'s RFC 7662 endpoint): active and inactive tokens, the result
//! cache, required scopes, and the provider not answering.

use http::Method;
use serde_json::json;

use crate::support::client::Reply;
use crate::support::idp::{self, CLIENT, Idp};
use crate::support::*;

async fn start(extra: &str) -> (Upstream, Upstream, std::sync::Arc<Idp>, TestGateway) {
    let app = Upstream::start("app", Behavior::Echo).await;
    let (up, state) = Idp::start().await;
    let yaml = format!(
        "{}routes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: app\n    plugins:\n      - {{ name: oauth2-introspection, callouts: [idp], config: {{ service: idp, introspection_path: \"{}\", client_id: {}, client_secret: {}{extra} }} }}\n",
        services_yaml(&[&app, &up]),
        idp::INTROSPECT,
        CLIENT.0,
        CLIENT.1,
    );
    let p = plugin_path("oauth2-introspection");
    let gw = TestGateway::start_with_plugins(&yaml, &[("oauth2-introspection", &p)]).await;
    (app, up, state, gw)
}

async fn call(gw: &TestGateway, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    request(
        Method::GET,
        &gw.url("/api"),
        &[("authorization", &bearer), ("x-consumer-id", "mallory")],
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_token_passes_with_its_identity_and_is_asked_once() {
    let (app, up, idp, gw) = start("").await;
    idp.activate(
        "opaque-1",
        json!({ "sub": "alice", "scope": "read write", "client_id": "web" }),
    );
    for _ in 0..3 {
        let r = call(&gw, "opaque-1").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = app.last();
        assert_eq!(
            seen.headers["x-consumer-id"], "alice",
            "the provider's, not the client's"
        );
        assert!(
            seen.headers.get("authorization").is_none(),
            "token not forwarded"
        );
    }
    assert_eq!(up.hits(), 1, "the result is kept");
    let ask = up.last();
    assert_eq!(ask.method, "POST");
    assert_eq!(ask.uri, idp::INTROSPECT);
    assert_eq!(
        String::from_utf8_lossy(&ask.body),
        "token=opaque-1&token_type_hint=access_token"
    );
    assert_eq!(
        ask.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_or_missing_token_is_401_and_reaches_nothing() {
    let (app, up, _idp, gw) = start("").await;
    for _ in 0..2 {
        let r = call(&gw, "revoked").await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\", error_description=\"token is not active\"")
        );
    }
    assert_eq!(up.hits(), 1, "the negative result is kept too");
    let r = request(Method::GET, &gw.url("/api"), &[], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(app.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_is_403_insufficient_scope() {
    let (app, _up, idp, gw) = start(", required_scopes: [admin]").await;
    idp.activate("opaque-2", json!({ "sub": "bob", "scope": "read" }));
    let r = call(&gw, "opaque-2").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"admin\"")
    );
    assert_eq!(app.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_cannot_answer_fails_closed() {
    let (app, up, idp, gw) = start("").await;
    idp.activate("opaque-3", json!({ "sub": "carol" }));
    up.set_status(Some(503));
    let r = call(&gw, "opaque-3").await;
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("token introspection unavailable"),
        "{}",
        r.text()
    );
    assert_eq!(app.hits(), 0);
    // Nothing was kept: once the provider answers, the token passes.
    up.set_status(None);
    assert_eq!(call(&gw, "opaque-3").await.status, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_credentials_are_the_providers_refusal_not_a_pass() {
    let app = Upstream::start("app", Behavior::Echo).await;
    let (up, idp) = Idp::start().await;
    idp.activate("opaque-4", json!({ "sub": "dave" }));
    let yaml = format!(
        "{}routes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: app\n    plugins:\n      - {{ name: oauth2-introspection, callouts: [idp], config: {{ service: idp, introspection_path: \"{}\", client_id: gateway, client_secret: wrong }} }}\n",
        services_yaml(&[&app, &up]),
        idp::INTROSPECT,
    );
    let p = plugin_path("oauth2-introspection");
    let gw = TestGateway::start_with_plugins(&yaml, &[("oauth2-introspection", &p)]).await;
    assert_eq!(call(&gw, "opaque-4").await.status, 503);
    assert_eq!(up.hits(), 1);
    assert_eq!(app.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_from_one_provider_is_not_used_for_another() {
    let app = Upstream::start("app", Behavior::Echo).await;
    let (one, idp_one) = Idp::start().await;
    let (two, _idp_two) = Idp::start().await;
    idp_one.activate("opaque-5", json!({ "sub": "erin" }));
    let route = |id: &str, svc: &str| {
        format!(
            "  - id: {id}\n    match: {{ path: /{id} }}\n    upstream: app\n    plugins:\n      - {{ name: oauth2-introspection, callouts: [{svc}], config: {{ service: {svc}, introspection_path: \"{}\", client_id: {}, client_secret: {} }} }}\n",
            idp::INTROSPECT,
            CLIENT.0,
            CLIENT.1
        )
    };
    let yaml = format!(
        "services:\n  - name: app\n    instances: [{{ url: \"{}\" }}]\n  - name: one\n    instances: [{{ url: \"{}\" }}]\n  - name: two\n    instances: [{{ url: \"{}\" }}]\nroutes:\n{}{}",
        app.url(),
        one.url(),
        two.url(),
        route("a", "one"),
        route("b", "two"),
    );
    let p = plugin_path("oauth2-introspection");
    let gw = TestGateway::start_with_plugins(&yaml, &[("oauth2-introspection", &p)]).await;
    let auth = [("authorization", "Bearer opaque-5")];
    assert_eq!(
        request(Method::GET, &gw.url("/a"), &auth, "").await.status,
        200
    );
    // Provider one's verdict is in the plugin's store; route b asks its own.
    assert_eq!(
        request(Method::GET, &gw.url("/b"), &auth, "").await.status,
        401
    );
    assert_eq!((one.hits(), two.hits()), (1, 1));
    assert_eq!(app.hits(), 1);
    gw.stop().await;
}
