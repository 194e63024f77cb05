//! The authentication and authorization plugins (`jwt-auth`, `api-key`, `acl`)
//! end to end: tokens minted here with the test keys in tests/fixtures/jwt,
//! sent through the real gateway to a recording upstream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::support::gateway::replace_file;
use crate::support::*;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "gatehouse";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/jwt")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims for `sub`, with `extra` merged over them.
fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({ "sub": sub, "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE });
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

/// The signing key and `kid` the test keys use for `alg`.
fn signing(alg: Algorithm) -> (EncodingKey, &'static str) {
    use Algorithm::*;
    match alg {
        HS256 | HS384 | HS512 => (EncodingKey::from_secret(SECRET.as_bytes()), "hs"),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => (
            EncodingKey::from_rsa_pem(fixture("rsa.key").as_bytes()).unwrap(),
            "rsa",
        ),
        ES256 => (
            EncodingKey::from_ec_pem(fixture("ec256.key").as_bytes()).unwrap(),
            "ec256",
        ),
        ES384 => (
            EncodingKey::from_ec_pem(fixture("ec384.key").as_bytes()).unwrap(),
            "ec384",
        ),
        EdDSA => (
            EncodingKey::from_ed_pem(fixture("ed25519.key").as_bytes()).unwrap(),
            "ed",
        ),
        other => panic!("no test key for {other:?}"),
    }
}

fn mint(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let (key, default_kid) = signing(alg);
    let mut header = Header::new(alg);
    header.kid = Some(kid.unwrap_or(default_kid).to_string());
    encode(&header, claims, &key).unwrap()
}

/// A token whose parts are written by hand (for `alg: none` and the like).
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{signature}", b64(header), b64(claims))
}

const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// jwt-auth accepting every algorithm, each key under its `kid`.
fn jwt_all_keys() -> Value {
    json!({
        "name": "jwt-auth",
        "config": {
            "algorithms": ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384",
                           "PS512", "ES256", "ES384", "EdDSA"],
            "keys": [
                { "kid": "hs", "secret": SECRET },
                { "kid": "rsa", "public_key": fixture("rsa.pub") },
                { "kid": "ec256", "public_key": fixture("ec256.pub") },
                { "kid": "ec384", "public_key": fixture("ec384.pub") },
                { "kid": "ed", "public_key": fixture("ed25519.pub") },
            ],
            "issuer": ISSUER,
            "audience": [AUDIENCE, "other"],
            "upstream_headers": { "consumer": "x-consumer-id", "scopes": "x-consumer-scopes" },
        }
    })
}

/// A gateway whose routes are (id, path, attachments as JSON).
async fn gateway(up: &Upstream, routes: &[(&str, &str, Vec<Value>)]) -> TestGateway {
    let yaml = json_routes(up, "limits: { max_header_bytes: 131072 }\n", routes);
    start_with(&yaml, &["jwt-auth", "api-key", "acl"]).await
}

async fn with_bearer(gw: &TestGateway, path: &str, token: &str) -> crate::support::client::Reply {
    request(
        Method::GET,
        &gw.url(path),
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_verifies_and_names_the_consumer() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = gateway(&up, &[("r", "/*", vec![jwt_all_keys()])]).await;
    for (i, alg) in ALL.iter().enumerate() {
        let sub = format!("user-{alg:?}");
        let token = mint(
            *alg,
            None,
            &claims(&sub, json!({ "scope": "orders:read  orders:write" })),
        );
        let r = with_bearer(&gw, "/a", &token).await;
        assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
        let seen = &up.received()[i];
        assert_eq!(seen.headers["x-consumer-id"], sub.as_str(), "{alg:?}");
        assert_eq!(
            seen.headers["x-consumer-scopes"],
            "orders:read orders:write"
        );
        assert!(
            seen.headers.get("authorization").is_none(),
            "the token is not forwarded"
        );
    }
    // A client cannot pick its own identity header.
    let token = mint(Algorithm::HS256, None, &claims("alice", json!({})));
    let r = request(
        Method::GET,
        &gw.url("/a"),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-consumer-id", "root"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().headers["x-consumer-id"], "alice");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_and_broken_tokens_get_401_with_the_reason() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let rs_only = json!({ "name": "jwt-auth", "config": {
        "algorithms": ["RS256"], "public_key": fixture("rsa.pub"), "issuer": ISSUER, "audience": AUDIENCE } });
    let gw = gateway(
        &up,
        &[
            ("all", "/all", vec![jwt_all_keys()]),
            ("rs", "/rs", vec![rs_only]),
        ],
    )
    .await;
    let good = claims("alice", json!({}));
    let rs = |c: &Value| mint(Algorithm::RS256, None, c);
    let tampered = {
        let t = rs(&good);
        let other = rs(&claims("mallory", json!({})));
        let parts: Vec<&str> = t.split('.').collect();
        let other_parts: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", parts[0], other_parts[1], parts[2])
    };
    // HS256 signed with the RSA public key's PEM as the secret: the classic
    // algorithm-confusion attack.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(fixture("rsa.pub").as_bytes()),
    )
    .unwrap();
    let none = raw_token(&json!({ "alg": "none", "typ": "JWT" }), &good, "");
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "/all",
            rs(&claims("a", json!({ "exp": now() - 3600 }))),
            "token expired",
        ),
        (
            "/all",
            rs(&claims("a", json!({ "nbf": now() + 3600 }))),
            "token not yet valid",
        ),
        (
            "/all",
            rs(&claims("a", json!({ "iss": "https://evil.test" }))),
            "invalid issuer",
        ),
        (
            "/all",
            rs(&claims("a", json!({ "aud": "someone-else" }))),
            "invalid audience",
        ),
        ("/all", rs(&no_exp), "missing required claim exp"),
        ("/all", tampered, "invalid signature"),
        ("/all", none.clone(), "algorithm not allowed"),
        ("/rs", none, "algorithm not allowed"),
        ("/rs", confused.clone(), "algorithm not allowed"),
        // With HS256 allowed too, the RSA key is never used as a secret: only
        // the configured HMAC secret is tried, and it does not match.
        ("/all", confused, "invalid signature"),
        (
            "/all",
            mint(Algorithm::RS256, Some("nope"), &good),
            "unknown key id",
        ),
        (
            "/all",
            "eyJhbGciOiJIUzI1NiJ9.e30".into(),
            "malformed token: expected three segments",
        ),
        ("/all", "!!!.e30.sig".into(), "malformed token: bad base64"),
        (
            "/all",
            format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("{not json")),
            "malformed token: bad JSON",
        ),
        ("/all", "a".repeat(64 * 1024), "token too large"),
    ];
    for (path, token, description) in cases {
        let r = with_bearer(&gw, path, &token).await;
        assert_eq!(r.status, 401, "{description}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
                    .as_str()
            ),
        );
        let body = r.json();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["request_id"], r.header("x-request-id").unwrap());
    }
    let r = get(&gw.url("/all")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer"),
        "no token: bare challenge"
    );
    let r = request(
        Method::GET,
        &gw.url("/all"),
        &[("authorization", "Basic YTpi")],
        "",
    )
    .await;
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer"),
        "not a bearer token"
    );
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_cookie_or_the_query() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let jwt = attach(
        "jwt-auth",
        json!({ "algorithms": ["HS256"], "secret": SECRET, "token": { "cookie": "session", "query": "access_token" } }),
    );
    let gw = gateway(&up, &[("r", "/*", vec![jwt])]).await;
    let token = mint(Algorithm::HS256, None, &claims("carol", json!({})));
    let cookie = format!("theme=dark; session={token}");
    let r = request(Method::GET, &gw.url("/c"), &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-consumer-id"], "carol");
    let r = get(&gw.url(&format!("/q?access_token={token}&page=2"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().uri,
        "/q?page=2",
        "the token is removed from the query"
    );
    let r = request(
        Method::GET,
        &gw.url("/h"),
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(
        r.status, 401,
        "the Authorization header is not a configured source"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_file_rotation_needs_no_restart() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("jwks.json");
    let oct = |kid: &str, secret: &str| json!({ "kty": "oct", "kid": kid, "k": URL_SAFE_NO_PAD.encode(secret) });
    let (old, new) = (SECRET, "a-rotated-secret-that-is-32-bytes-long");
    let write = |keys: Vec<Value>| {
        replace_file(&file, json!({ "keys": keys }).to_string().as_bytes());
    };
    write(vec![oct("k1", old)]);
    let mut rsa_jwks: Value = serde_json::from_str(&fixture("rsa.jwks.json")).unwrap();
    let jwt = json!({ "name": "jwt-auth", "allow_read": [keys.path()], "config": {
        "algorithms": ["HS256", "RS256"],
        "jwks_file": file,
        "jwks": rsa_jwks.take(),
        "jwks_refresh_seconds": 1,
    } });
    let gw = gateway(&up, &[("r", "/*", vec![jwt])]).await;
    let token_for = |kid: &str, secret: &str| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.into());
        encode(
            &h,
            &claims("alice", json!({})),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    // One token throughout: it is cached after its first use, and the cache
    // must not outlive the key that verified it.
    let k1 = token_for("k1", old);
    assert_eq!(with_bearer(&gw, "/", &k1).await.status, 200);
    let rs = mint(Algorithm::RS256, Some("rsa-jwk"), &claims("bob", json!({})));
    assert_eq!(
        with_bearer(&gw, "/", &rs).await.status,
        200,
        "inline JWKS (RSA)"
    );
    let k2 = token_for("k2", new);
    let r = with_bearer(&gw, "/", &k2).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "unknown key id");

    // Rotation: add k2, later drop k1.
    write(vec![oct("k1", old), oct("k2", new)]);
    assert!(
        eventually(Duration::from_secs(10), async || with_bearer(&gw, "/", &k2)
            .await
            .status
            == 200)
        .await,
        "the new key was picked up"
    );
    write(vec![oct("k2", new)]);
    assert!(
        eventually(Duration::from_secs(10), async || {
            with_bearer(&gw, "/", &k1).await.status == 401
        })
        .await,
        "the retired key is refused"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_still_expires_on_time() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let jwt = json!({ "name": "jwt-auth", "config": {
        "algorithms": ["HS256"], "secret": SECRET, "leeway_seconds": 0,
    } });
    let gw = gateway(&up, &[("r", "/*", vec![jwt])]).await;
    let token = mint(
        Algorithm::HS256,
        None,
        &json!({ "sub": "alice", "exp": now() + 2 }),
    );
    // The second request is answered from the cache, with the same effects.
    for _ in 0..2 {
        assert_eq!(with_bearer(&gw, "/", &token).await.status, 200);
        let seen = up.last();
        assert_eq!(seen.headers["x-consumer-id"], "alice");
        assert!(seen.headers.get("authorization").is_none());
    }
    assert!(
        eventually(Duration::from_secs(10), async || {
            with_bearer(&gw, "/", &token).await.status == 401
        })
        .await,
        "the token expired while cached"
    );
    let r = with_bearer(&gw, "/", &token).await;
    assert_eq!(r.json()["error_description"], "token expired");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_by_hash_with_expiry_and_disable() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let hash = |k: &str| {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(k.as_bytes())))
    };
    let api = json!({ "name": "api-key", "config": { "query": "api_key", "keys": [
        { "hash": hash("key-alice"), "consumer": "alice", "id": "alice-1", "scopes": ["orders:read"], "tier": "premium" },
        { "hash": hash("key-old"), "consumer": "old", "expires": "2020-01-01T00:00:00Z" },
        { "hash": hash("key-off"), "consumer": "off", "enabled": false },
    ] } });
    let gw = gateway(&up, &[("r", "/*", vec![api])]).await;
    let with_key =
        async |key: &str| request(Method::GET, &gw.url("/p?x=1"), &[("x-api-key", key)], "").await;

    let r = with_key("key-alice").await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-consumer-id"], "alice");
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "the key is not forwarded"
    );
    let r = get(&gw.url("/q?api_key=key-alice&y=2")).await;
    assert_eq!(r.status, 200, "key in the query");
    assert_eq!(up.last().uri, "/q?y=2", "the key is removed from the query");

    for (key, description) in [
        ("nope", "invalid API key"),
        ("key-old", "API key expired"),
        ("key-off", "API key disabled"),
    ] {
        let r = with_key(key).await;
        assert_eq!(r.status, 401, "{key}");
        assert_eq!(r.json()["error_description"], description);
        assert_eq!(r.header("www-authenticate"), Some("ApiKey"));
    }
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "missing API key");
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_answers_401_without_consumer_and_403_without_grant() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let acl = |cfg: Value| json!({ "name": "acl", "config": cfg });
    let gw = gateway(
        &up,
        &[
            ("orders", "/orders", vec![jwt_all_keys(), acl(json!({ "require_any": ["orders:read", "admin"], "deny_consumers": ["mallory"] }))]),
            ("admin", "/admin", vec![jwt_all_keys(), acl(json!({ "require_all": ["admin"], "allow_consumers": ["root"] }))]),
            ("bare", "/bare", vec![acl(json!({ "require_any": ["x"] }))]),
        ],
    )
    .await;
    let token = |sub: &str, extra: Value| mint(Algorithm::ES256, None, &claims(sub, extra));
    let reader = token("alice", json!({ "scope": "orders:read" }));
    let admin_role = token("root", json!({ "roles": ["admin"] }));
    let cases = [
        ("/orders", reader.clone(), 200),
        ("/orders", admin_role.clone(), 200),
        ("/orders", token("bob", json!({ "scope": "profile" })), 403),
        (
            "/orders",
            token("mallory", json!({ "scope": "orders:read" })),
            403,
        ),
        ("/admin", admin_role, 200),
        ("/admin", token("alice", json!({ "roles": ["admin"] })), 403),
        ("/admin", reader, 403),
    ];
    for (path, t, want) in cases {
        let r = with_bearer(&gw, path, &t).await;
        assert_eq!(r.status, want, "{path}: {}", r.text());
        if want == 403 {
            assert_eq!(r.json()["error"], "forbidden");
        }
    }
    let r = get(&gw.url("/bare")).await;
    assert_eq!(r.status, 401, "no consumer");
    assert_eq!(up.hits(), 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_auth_configs_are_load_errors() {
    let up = Upstream::start("up", Behavior::Echo).await;
    for (plugin, config, message) in [
        (
            "jwt-auth",
            json!({ "algorithms": ["HS256"], "secret": "short" }),
            "at least 32 bytes",
        ),
        (
            "jwt-auth",
            json!({ "algorithms": ["XS256"], "secret": SECRET }),
            "unknown algorithm `XS256`",
        ),
        (
            "jwt-auth",
            json!({ "algorithms": ["RS256"], "secret": SECRET }),
            "no key of its family",
        ),
        (
            "jwt-auth",
            json!({ "algorithms": ["RS256"], "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" }),
            "not an RSA, EC or Ed25519 public key",
        ),
        (
            "jwt-auth",
            json!({ "algorithms": ["RS256"], "jwks_file": "/nonexistent/jwks.json" }),
            "jwks_file /nonexistent/jwks.json",
        ),
        (
            "api-key",
            json!({ "keys": [{ "hash": "abc", "consumer": "a" }] }),
            "64 hex digits",
        ),
        ("api-key", json!({ "keys": [] }), "at least one key"),
        ("acl", json!({}), "no rule"),
    ] {
        let err = load_error(&up, plugin, config.clone()).await;
        assert!(err.contains(message), "{plugin} {config}: {err}");
    }
}
