//! Identity only the gateway can assert: declared identity headers stripped
//! on every route, client addresses behind trusted proxies, and tokens whose
//! headers try to choose their own key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use super::{SECRET, Site};
use crate::support::raw::{exchange, status_of};
use crate::support::tls::TestCa;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_identity_headers_are_stripped_on_open_routes() {
    let site = Site::start("").await;
    let raw = b"GET /static/x HTTP/1.1\r\nHost: a\r\nX-Consumer-Id: alice\r\nx-consumer-id: bob\r\nConnection: close\r\n\r\n";
    let resp = exchange(site.gw.addr, raw).await;
    assert_eq!(status_of(&resp), 200, "{resp:.300}");
    let got = site.open.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].headers.get("x-consumer-id").is_none(),
        "{:?}",
        got[0].headers
    );
    site.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_upstream_headers_and_the_operators_list_are_stripped() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let key = attach(
        "api-key",
        json!({ "keys_from_consumers": true, "upstream_headers": { "consumer": "x-authenticated-user" } }),
    );
    let yaml = json_routes(
        &up,
        "strip_request_headers: [X-Internal-Role]\n",
        &[("keyed", "/keyed/*", vec![key]), ("open", "/*", vec![])],
    );
    let gw = start_with(&yaml, &["api-key"]).await;
    let raw = b"GET /open HTTP/1.1\r\nHost: a\r\nX-Authenticated-User: root\r\nX-Internal-Role: admin\r\nX-Kept: 1\r\nConnection: close\r\n\r\n";
    let resp = exchange(gw.addr, raw).await;
    assert_eq!(status_of(&resp), 200, "{resp:.300}");
    let h = &up.received()[0].headers;
    assert!(h.get("x-authenticated-user").is_none(), "{h:?}");
    assert!(h.get("x-internal-role").is_none(), "{h:?}");
    assert_eq!(h["x-kept"], "1");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_header_is_stripped_on_cleartext_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "edge");
    let server = ca.server("srv", "localhost", &["localhost"]);
    let up = Upstream::start("up", Behavior::Echo).await;
    let yaml = format!(
        "listeners:\n  - addr: 127.0.0.1:0\n  - addr: 127.0.0.1:0\n    tls:\n      certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}]\n      client_auth: optional\n      client_ca_file: \"{}\"\n      client_cert_header: x-client-cert\n{}",
        server.cert_file.display(),
        server.key_file.display(),
        ca.ca_file.display(),
        json_routes(&up, "", &[("r", "/*", vec![])])
    );
    let gw = TestGateway::start(&yaml).await;
    let raw = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Client-Cert: Subject=\"CN=admin\"\r\nConnection: close\r\n\r\n";
    let resp = exchange(gw.addr, raw).await;
    assert_eq!(status_of(&resp), 200, "{resp:.300}");
    let h = &up.received()[0].headers;
    assert!(h.get("x-client-cert").is_none(), "{h:?}");
    gw.stop().await;
}

/// A gateway behind a trusted proxy (the test itself, on loopback) with
/// ip-restriction denying 203.0.113.0/24 and 2001:db8::/32.
async fn behind_proxy(listen: &str) -> (TestGateway, Upstream) {
    let up = Upstream::start("up", Behavior::Echo).await;
    let deny = attach(
        "ip-restriction",
        json!({ "deny": ["203.0.113.0/24", "2001:db8::/32"] }),
    );
    let routes = json_routes(
        &up,
        "trusted_proxies: [127.0.0.1]\n",
        &[("r", "/*", vec![deny])],
    );
    let yaml = format!("listeners:\n  - addr: \"{listen}\"\n{routes}");
    (start_with(&yaml, &["ip-restriction"]).await, up)
}

async fn status_from(port: u16, xff: &str) -> u16 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let raw = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n"
    );
    status_of(&exchange(addr, raw.as_bytes()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_entries_with_ports_and_brackets_are_understood() {
    let (gw, up) = behind_proxy("127.0.0.1:0").await;
    let port = gw.addr.port();
    assert_eq!(status_from(port, "203.0.113.7:5678").await, 403);
    assert_eq!(status_from(port, "[2001:db8::1]:443").await, 403);
    assert_eq!(status_from(port, "[2001:db8::1]").await, 403);
    assert_eq!(status_from(port, "198.51.100.1:80").await, 200);
    assert_eq!(up.hits(), 1, "only the allowed client reached the upstream");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_match_ipv4_mapped_peers_on_dual_stack_listeners() {
    // `[::]` takes IPv4 connections too, whose peers read `::ffff:127.0.0.1`.
    let (gw, up) = behind_proxy("[::]:0").await;
    let port = gw.addr.port();
    assert_eq!(status_from(port, "203.0.113.7").await, 403);
    assert_eq!(status_from(port, "198.51.100.1").await, 200);
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

/// An HS256 token with this JOSE header, signed with `secret`.
fn hs256(header: Value, secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({ "sub": "mallory", "exp": now + 600 });
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let input = format!("{}.{}", enc(&header), enc(&claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}")
}

async fn admin_status(site: &Site, token: &str) -> u16 {
    let raw = format!(
        "GET /api/admin/users HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    status_of(&exchange(site.gw.addr, raw.as_bytes()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_an_unknown_critical_header_is_refused() {
    let site = Site::start("").await;
    let ok = hs256(json!({ "alg": "HS256" }), SECRET);
    assert_eq!(admin_status(&site, &ok).await, 200, "control");
    let crit = hs256(json!({ "alg": "HS256", "crit": ["exp"], "exp": 1 }), SECRET);
    assert_eq!(admin_status(&site, &crit).await, 401);
    assert_eq!(site.admin.hits(), 1);
    site.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_named_by_the_token_itself_are_never_used() {
    let site = Site::start("").await;
    let mine = "mallorys-own-secret-of-32-bytes-or-more";
    let k = URL_SAFE_NO_PAD.encode(mine);
    for header in [
        json!({ "alg": "HS256", "jwk": { "kty": "oct", "k": k } }),
        json!({ "alg": "HS256", "jku": "http://127.0.0.1:1/jwks.json" }),
        json!({ "alg": "HS256", "x5u": "http://127.0.0.1:1/cert.pem" }),
    ] {
        assert_eq!(
            admin_status(&site, &hs256(header.clone(), mine)).await,
            401,
            "{header}"
        );
    }
    assert_eq!(site.admin.hits(), 0);
    site.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_use_and_alg_are_respected() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let enc_secret = "an-encryption-key-of-at-least-32-bytes!";
    let hs384_secret = "a-key-published-for-hs384-only-32-bytes";
    let jwks = json!({ "keys": [
        { "kty": "oct", "kid": "enc", "use": "enc", "k": URL_SAFE_NO_PAD.encode(enc_secret) },
        { "kty": "oct", "kid": "h384", "alg": "HS384", "k": URL_SAFE_NO_PAD.encode(hs384_secret) },
    ]});
    let jwt = attach(
        "jwt-auth",
        json!({ "algorithms": ["HS256", "HS384"], "jwks": jwks }),
    );
    let gw = start_with(
        &json_routes(&up, "", &[("r", "/*", vec![jwt])]),
        &["jwt-auth"],
    )
    .await;
    let status = async |token: String| {
        let raw = format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        status_of(&exchange(gw.addr, raw.as_bytes()).await)
    };
    let enc = hs256(json!({ "alg": "HS256", "kid": "enc" }), enc_secret);
    assert_eq!(status(enc).await, 401, "an encryption key never verifies");
    let wrong_alg = hs256(json!({ "alg": "HS256", "kid": "h384" }), hs384_secret);
    assert_eq!(
        status(wrong_alg).await,
        401,
        "an HS384 key does not verify HS256"
    );
    assert_eq!(up.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_a_cookie_does_not_reach_the_upstream() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let jwt = attach(
        "jwt-auth",
        json!({ "algorithms": ["HS256"], "secret": SECRET, "token": { "cookie": "session" } }),
    );
    let gw = start_with(
        &json_routes(&up, "", &[("r", "/*", vec![jwt])]),
        &["jwt-auth"],
    )
    .await;
    let token = hs256(json!({ "alg": "HS256" }), SECRET);
    let raw = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nCookie: theme=dark; session={token}; lang=en\r\nConnection: close\r\n\r\n"
    );
    let resp = exchange(gw.addr, raw.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp:.300}");
    let got = up.received();
    assert_eq!(got[0].headers["cookie"], "theme=dark; lang=en");
    gw.stop().await;
}
