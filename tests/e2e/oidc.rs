//! jwt-auth with keys from a real OpenID Connect provider ([`Idp`]) through
//! callouts: discovery, key rotation without a restart, a flood of unknown
//! `kid`s that must not hammer the provider, and the provider going down
//! (last good keys serve, then expire as configured).

use std::time::Duration;

use http::Method;

use crate::support::client::Reply;
use crate::support::idp::{self, Idp};
use crate::support::*;

/// `app` behind `/api` with jwt-auth whose keys come from `idp` per `keys`
/// (JSON members added to the plugin config).
async fn start(keys: &str) -> (Upstream, Upstream, std::sync::Arc<Idp>, TestGateway) {
    let app = Upstream::start("app", Behavior::Echo).await;
    let (up, state) = Idp::start().await;
    let yaml = format!(
        "{}routes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: app\n    plugins:\n      - {{ name: jwt-auth, callouts: [idp], config: {{ algorithms: [EdDSA], issuer: \"{}\", jwks_service: idp, {keys} }} }}\n",
        services_yaml(&[&app, &up]),
        state.issuer(),
    );
    let jwt = plugin_path("jwt-auth");
    let gw = TestGateway::start_with_plugins(&yaml, &[("jwt-auth", &jwt)]).await;
    (app, up, state, gw)
}

async fn call(gw: &TestGateway, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    request(
        Method::GET,
        &gw.url("/api"),
        &[("authorization", &bearer)],
        "",
    )
    .await
}

/// How many requests the provider got for `path`.
fn asked(up: &Upstream, path: &str) -> usize {
    up.received().iter().filter(|r| r.uri == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_keys_verify_and_are_fetched_once() {
    let (app, up, idp, gw) = start("discovery: true").await;
    for _ in 0..3 {
        let r = call(&gw, &idp.mint("alice")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(app.last().headers["x-consumer-id"], "alice");
    }
    assert_eq!(asked(&up, idp::DISCOVERY), 1);
    assert_eq!(asked(&up, idp::CERTS), 1, "keys kept for their max-age");
    // A token that does not verify is still a 401.
    let forged = idp.mint_unknown("k1", "mallory");
    let r = call(&gw, &forged).await;
    assert_eq!(r.status, 401);
    assert_eq!(app.hits(), 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_jwks_uri_needs_no_discovery() {
    let uri = "https://idp.example.com/realms/test/protocol/openid-connect/certs";
    let (app, up, idp, gw) = start(&format!("jwks_uri: \"{uri}\"")).await;
    let r = call(&gw, &idp.mint("alice")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.hits(), 1);
    assert_eq!(asked(&up, idp::DISCOVERY), 0);
    assert_eq!(
        asked(&up, idp::CERTS),
        1,
        "the URL's path, sent to the service"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_picked_up_without_a_restart() {
    let (app, up, idp, gw) = start("discovery: true").await;
    assert_eq!(call(&gw, &idp.mint("alice")).await.status, 200);
    idp.rotate("k2");
    // The keys are fresh for 300 s, but a token naming an unknown kid makes
    // the plugin look again, past the gateway's cache.
    let r = call(&gw, &idp.mint("bob")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.last().headers["x-consumer-id"], "bob");
    assert_eq!(asked(&up, idp::CERTS), 2);
    let fetch = up
        .received()
        .into_iter()
        .rfind(|r| r.uri == idp::CERTS)
        .unwrap();
    assert_eq!(fetch.headers["cache-control"], "no-cache");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_does_not_hammer_the_provider() {
    let (app, up, idp, gw) = start("discovery: true").await;
    assert_eq!(call(&gw, &idp.mint("alice")).await.status, 200);
    for i in 0..40 {
        let r = call(&gw, &idp.mint_unknown(&format!("random-{i}"), "mallory")).await;
        assert_eq!(r.status, 401);
        assert!(r.text().contains("unknown key id"), "{}", r.text());
    }
    let fetched = asked(&up, idp::CERTS);
    let bypassed = up
        .received()
        .iter()
        .filter(|r| r.uri == idp::CERTS && r.headers.get("cache-control").is_some())
        .count();
    eprintln!(
        "oidc: 40 unknown kids cost the provider {fetched} JWKS fetches ({bypassed} past the cache)"
    );
    assert_eq!(
        bypassed, 1,
        "one forced refresh per jwks_rediscovery_seconds"
    );
    assert!(fetched <= 2, "{fetched} fetches");
    assert_eq!(app.hits(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_provider_is_down_the_last_good_keys_serve_until_max_stale() {
    // Keys live 1 s, so every request after that asks the provider again.
    let (app, up, idp, gw) = start(
        "discovery: true, jwks_cache_max_seconds: 1, jwks_cache_min_seconds: 1, jwks_max_stale_seconds: 3",
    )
    .await;
    // Without max-age the gateway's callout cache keeps nothing, so the
    // outage reaches the plugin (with it, the cache would hide it).
    idp.set_max_age(None);
    let token = idp.mint("alice");
    assert_eq!(call(&gw, &token).await.status, 200);
    up.set_status(Some(503));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = call(&gw, &token).await;
    assert_eq!(r.status, 200, "last good keys: {}", r.text());
    assert!(
        asked(&up, idp::DISCOVERY) >= 2,
        "the provider was asked again"
    );
    // Past jwks_max_stale_seconds the keys go: 503, not 401 (the token may be fine).
    let expired = eventually(Duration::from_secs(6), async || {
        call(&gw, &idp.mint("alice")).await.status == 503
    })
    .await;
    assert!(expired, "stale keys dropped after max stale");
    let before = app.hits();
    let r = call(&gw, &token).await;
    assert_eq!(r.status, 503);
    assert_eq!(app.hits(), before, "a refused request goes nowhere");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.text().contains("signing keys unavailable"),
        "{}",
        r.text()
    );
    // Back up: verifying again without a restart.
    up.set_status(None);
    let back = eventually(Duration::from_secs(4), async || {
        call(&gw, &token).await.status == 200
    })
    .await;
    assert!(back, "keys fetched again once the provider answers");
    assert_eq!(app.hits(), before + 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_settings_are_checked_at_load() {
    let app = Upstream::start("app", Behavior::Echo).await;
    for (cfg, expected) in [
        (
            "{ algorithms: [EdDSA], discovery: true }",
            "need `jwks_service`",
        ),
        (
            "{ algorithms: [EdDSA], discovery: true, jwks_service: idp }",
            "`discovery` needs `issuer`",
        ),
        (
            "{ algorithms: [EdDSA], jwks_uri: /certs, discovery: true, jwks_service: idp, issuer: x }",
            "not both",
        ),
    ] {
        let yaml = format!(
            "services:\n  - name: app\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: app\n    plugins:\n      - {{ name: jwt-auth, config: {cfg} }}\n",
            app.url()
        );
        let jwt = plugin_path("jwt-auth");
        let err = TestGateway::try_start_with_plugins(&yaml, &[("jwt-auth", &jwt)])
            .await
            .err()
            .expect("refused");
        assert!(err.contains(expected), "{cfg}: {err}");
    }
}
