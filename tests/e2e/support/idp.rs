//! A real OpenID Connect provider for the tests, served by [`Upstream`] with
//! `Behavior::Idp`: a discovery document, a JWKS (Ed25519 keys, rotated on
//! demand, with a settable `Cache-Control: max-age`) and an RFC 7662
//! introspection endpoint that checks client credentials. Keycloak's paths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use super::upstream::{Behavior, Recorded, Upstream};

/// The realm every issuer is under.
pub const REALM: &str = "/realms/test";
/// The JWKS path (as the discovery document names it).
pub const CERTS: &str = "/realms/test/protocol/openid-connect/certs";
/// The discovery document's path.
pub const DISCOVERY: &str = "/realms/test/.well-known/openid-configuration";
/// The introspection endpoint's path.
pub const INTROSPECT: &str = "/realms/test/protocol/openid-connect/token/introspect";
/// The client the gateway introspects as.
pub const CLIENT: (&str, &str) = ("gateway", "gateway-secret");

/// The provider's state, shared by the server and the test.
#[derive(Debug, Default)]
pub struct Idp {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    base: String,
    keys: Vec<(String, Arc<Ed25519KeyPair>)>,
    max_age: Option<u64>,
    tokens: HashMap<String, Value>,
}

impl Idp {
    /// Starts the provider with one key (`kid` "k1") and `max-age` 300.
    pub async fn start() -> (Upstream, Arc<Self>) {
        let idp = Arc::new(Self::default());
        let up = Upstream::start("idp", Behavior::Idp(idp.clone())).await;
        {
            let mut s = idp.lock();
            s.base = up.url();
            s.max_age = Some(300);
        }
        idp.rotate("k1");
        (up, idp)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// `http://127.0.0.1:port/realms/test`.
    pub fn issuer(&self) -> String {
        format!("{}{REALM}", self.lock().base)
    }

    /// Replaces every key with a new one named `kid`.
    pub fn rotate(&self, kid: &str) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        self.lock().keys = vec![(kid.to_string(), Arc::new(pair))];
    }

    /// The `max-age` the JWKS and discovery answers carry (`None`: no header).
    pub fn set_max_age(&self, secs: Option<u64>) {
        self.lock().max_age = secs;
    }

    /// An EdDSA token signed with the current key (named `kid`), with the
    /// provider as `iss` and an hour of life.
    pub fn mint(&self, sub: &str) -> String {
        let (kid, pair) = self.lock().keys[0].clone();
        self.mint_with(&kid, &pair, sub)
    }

    /// A token with `kid` in its header signed by a key the provider never
    /// published.
    pub fn mint_unknown(&self, kid: &str, sub: &str) -> String {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        self.mint_with(kid, &pair, sub)
    }

    fn mint_with(&self, kid: &str, pair: &Ed25519KeyPair, sub: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let head = json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
        let claims = json!({ "sub": sub, "iss": self.issuer(), "exp": now + 3600, "iat": now });
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", b64(&head), b64(&claims));
        let sig = pair.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// Makes introspection answer `claims` (plus `active: true`) for `token`.
    pub fn activate(&self, token: &str, claims: Value) {
        self.lock().tokens.insert(token.to_string(), claims);
    }

    /// The answer to `rec`: (status, headers, body).
    pub fn answer(&self, rec: &Recorded) -> (u16, Vec<(&'static str, String)>, String) {
        let path = rec.uri.split('?').next().unwrap_or("");
        let s = self.lock();
        let cache = |mut h: Vec<(&'static str, String)>| {
            if let Some(age) = s.max_age {
                h.push(("cache-control", format!("public, max-age={age}")));
            }
            h
        };
        let json_type = || vec![("content-type", "application/json".to_string())];
        let issuer = format!("{}{REALM}", s.base);
        match (rec.method.as_str(), path) {
            ("GET", DISCOVERY) => {
                let doc = json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{}{CERTS}", s.base),
                    "introspection_endpoint": format!("{}{INTROSPECT}", s.base),
                });
                (200, cache(json_type()), doc.to_string())
            }
            ("GET", CERTS) => {
                let keys: Vec<Value> = s
                    .keys
                    .iter()
                    .map(|(kid, pair)| {
                        json!({
                            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                            "kid": kid, "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                        })
                    })
                    .collect();
                (200, cache(json_type()), json!({ "keys": keys }).to_string())
            }
            ("POST", INTROSPECT) => self.introspect(&s, rec),
            _ => (404, Vec::new(), String::new()),
        }
    }

    fn introspect(&self, s: &State, rec: &Recorded) -> (u16, Vec<(&'static str, String)>, String) {
        let expected = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", CLIENT.0, CLIENT.1))
        );
        let authorized = rec
            .headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
        if !authorized {
            return (401, Vec::new(), "{\"error\":\"invalid_client\"}".into());
        }
        let body = String::from_utf8_lossy(&rec.body);
        let token = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .unwrap_or("");
        let answer = match s.tokens.get(token) {
            Some(Value::Object(claims)) => {
                let mut a = claims.clone();
                a.insert("active".into(), Value::Bool(true));
                Value::Object(a)
            }
            _ => json!({ "active": false }),
        };
        let headers = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        (200, headers, answer.to_string())
    }
}
