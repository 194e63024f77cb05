//! `oauth2-introspection`: checks opaque bearer tokens at the provider's
//! introspection endpoint (RFC 7662) through a callout, authenticating as a
//! client (`client_secret_basic`). An active token's `sub` (or `username`),
//! `scope`, `client_id`, `aud` and `exp` become request attributes like
//! jwt-auth's (`consumer`, `scopes`, ...); an inactive one gets 401 with an
//! RFC 6750 `WWW-Authenticate`.
//!
//! Results are kept in the plugin's key-value store, keyed by the SHA-256 of
//! the provider and the token (the token itself is never stored): active ones until
//! `min(exp, cache_seconds)`, inactive ones for `negative_cache_seconds`, so
//! the provider is asked once per token, not once per request. When the
//! provider cannot answer, `status_on_error` (503) unless `failure_mode_allow`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_plugin_sdk::*;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The provider (a service granted in the attachment's `callouts`).
    service: String,
    /// The introspection endpoint's path (or URL: only its path is used).
    introspection_path: String,
    /// The gateway's client credentials at the provider.
    client_id: String,
    client_secret: String,
    /// Most seconds an active result is kept (never past the token's `exp`).
    #[serde(default = "default_cache")]
    cache_seconds: u64,
    /// Seconds an inactive result is kept (0: ask every time).
    #[serde(default = "default_negative")]
    negative_cache_seconds: u64,
    /// Scopes every token must have (all of them), else 403 insufficient_scope.
    #[serde(default)]
    required_scopes: Vec<String>,
    /// Request attribute → upstream header (default `consumer` → `x-consumer-id`).
    upstream_headers: Option<BTreeMap<String, String>>,
    /// Let requests through (without identity) when the provider cannot answer.
    #[serde(default)]
    failure_mode_allow: bool,
    /// Status when the provider cannot answer.
    #[serde(default = "default_status_on_error")]
    status_on_error: u16,
    /// Forward the `Authorization` header upstream (default false).
    #[serde(default)]
    keep_token: bool,
}

fn default_cache() -> u64 {
    60
}
fn default_negative() -> u64 {
    10
}
fn default_status_on_error() -> u16 {
    503
}

struct Introspection {
    c: Config,
    path: String,
    basic: String,
    upstream_headers: BTreeMap<String, String>,
}

/// What the provider said of a token.
enum Verdict {
    Active(BTreeMap<String, String>),
    Inactive,
}

impl Plugin for Introspection {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        if c.client_id.contains(':') {
            return Err("`client_id` may not contain `:` (client_secret_basic)".into());
        }
        if !(400..=599).contains(&c.status_on_error) {
            return Err("`status_on_error` must be a 4xx or 5xx status".into());
        }
        let path = match c.introspection_path.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/".into(), |i| rest[i..].to_string()),
            None => c.introspection_path.clone(),
        };
        if !path.starts_with('/') {
            return Err("`introspection_path` must be a path (`/introspect`) or a URL".into());
        }
        let upstream_headers = identity_headers(c.upstream_headers.as_ref());
        // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
        let pair = format!("{}:{}", form(&c.client_id), form(&c.client_secret));
        Ok(Self {
            basic: format!("Basic {}", STANDARD.encode(pair)),
            path,
            upstream_headers,
            c,
        })
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        for header in self.upstream_headers.values() {
            req.remove_header(header);
        }
        let Some(token) = req.header_str("authorization").and_then(|v| bearer(&v)) else {
            return challenge(ctx, 401, "Bearer", "unauthorized", "missing token");
        };
        // Per provider: the kv store is shared by every attachment of the
        // plugin, and a token active at one provider means nothing at another.
        let mut hash = Sha256::new();
        hash.update(self.c.service.as_bytes());
        hash.update([0]);
        hash.update(self.path.as_bytes());
        hash.update([0]);
        hash.update(token.as_bytes());
        let key = format!("introspection:{}", hex::encode(hash.finalize()));
        let verdict = match host::kv_get(&key).and_then(|v| remembered(&v)) {
            Some(v) => v,
            None => match self.ask(&token) {
                Ok((verdict, ttl_ms)) => {
                    if ttl_ms > 0 {
                        host::kv_set(&key, &remember(&verdict), ttl_ms);
                    }
                    verdict
                }
                Err(why) => {
                    host::log(Level::Warn, &format!("introspection unavailable: {why}"));
                    if self.c.failure_mode_allow {
                        return Action::Continue;
                    }
                    let body = json!({ "error": "temporarily_unavailable", "error_description": "token introspection unavailable", "request_id": ctx.request_id() });
                    return Response::json(self.c.status_on_error, &body).into();
                }
            },
        };
        let Verdict::Active(attrs) = verdict else {
            let c = "Bearer error=\"invalid_token\", error_description=\"token is not active\"";
            return challenge(ctx, 401, c, "invalid_token", "token is not active");
        };
        let scopes: Vec<&str> = attrs
            .get("scopes")
            .map(|s| s.split(' ').collect())
            .unwrap_or_default();
        if let Some(missing) = self
            .c
            .required_scopes
            .iter()
            .find(|s| !scopes.contains(&s.as_str()))
        {
            let c = format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                self.c.required_scopes.join(" ")
            );
            let d = format!("missing scope {missing}");
            return challenge(ctx, 403, &c, "insufficient_scope", &d);
        }
        for (name, value) in &attrs {
            ctx.set_attribute(name, value);
            if let Some(header) = self.upstream_headers.get(name) {
                req.set_header(header, value.as_bytes());
            }
        }
        if !self.c.keep_token {
            req.remove_header("authorization");
        }
        Action::Continue
    }
}

impl Introspection {
    /// Asks the provider; the verdict and how long it may be kept (ms).
    fn ask(&self, token: &str) -> Result<(Verdict, u64), String> {
        let call = callout::Request::post(
            &self.c.service,
            &self.path,
            format!("token={}&token_type_hint=access_token", form(token)),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("authorization", &self.basic);
        let answer = callout::send(&call).map_err(|e| format!("{e:?}"))?;
        if answer.status != 200 {
            return Err(format!("status {}", answer.status));
        }
        let doc: Value =
            serde_json::from_slice(&answer.body).map_err(|e| format!("not JSON: {e}"))?;
        if doc.get("active") != Some(&Value::Bool(true)) {
            return Ok((Verdict::Inactive, self.c.negative_cache_seconds * 1000));
        }
        let now = host::now_ms() / 1000;
        let exp = doc.get("exp").and_then(Value::as_u64);
        if exp.is_some_and(|e| e <= now) {
            return Ok((Verdict::Inactive, self.c.negative_cache_seconds * 1000));
        }
        let ttl = exp.map_or(self.c.cache_seconds, |e| {
            (e - now).min(self.c.cache_seconds)
        });
        Ok((Verdict::Active(attributes(&doc)), ttl * 1000))
    }
}

/// The attributes of an active answer (RFC 7662 §2.2 members).
fn attributes(doc: &Value) -> BTreeMap<String, String> {
    let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    let mut out = BTreeMap::new();
    if let Some(c) = text("sub").or_else(|| text("username")) {
        out.insert("consumer".into(), c);
    }
    if let Some(s) = text("scope") {
        out.insert("scopes".into(), s);
    }
    if let Some(c) = text("client_id") {
        out.insert("client_id".into(), c);
    }
    let aud = match doc.get("aud") {
        Some(Value::String(a)) => Some(a.clone()),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    };
    if let Some(a) = aud {
        out.insert("audience".into(), a);
    }
    out
}

fn remember(v: &Verdict) -> Vec<u8> {
    match v {
        Verdict::Active(attrs) => serde_json::to_vec(attrs).unwrap_or_default(),
        Verdict::Inactive => b"inactive".to_vec(),
    }
}

fn remembered(v: &[u8]) -> Option<Verdict> {
    if v == b"inactive" {
        return Some(Verdict::Inactive);
    }
    serde_json::from_slice(v).ok().map(Verdict::Active)
}

fn bearer(v: &str) -> Option<String> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    let t = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !t.is_empty()).then(|| t.to_string())
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An RFC 6750 answer with a JSON body.
fn challenge(ctx: &Context, status: u16, www: &str, error: &str, description: &str) -> Action {
    let body =
        json!({ "error": error, "error_description": description, "request_id": ctx.request_id() });
    Response::json(status, &body)
        .header("www-authenticate", www)
        .into()
}

export_plugin!(Introspection);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_form_encoded() {
        assert_eq!(form("a b+c/d=é"), "a+b%2Bc%2Fd%3D%C3%A9");
    }

    #[test]
    fn an_answer_becomes_attributes() {
        let doc = json!({ "active": true, "username": "bob", "scope": "read write", "client_id": "app", "aud": ["api", "x"] });
        let a = attributes(&doc);
        assert_eq!(a["consumer"], "bob");
        assert_eq!(a["scopes"], "read write");
        assert_eq!(a["client_id"], "app");
        assert_eq!(a["audience"], "api x");
        let back = remembered(&remember(&Verdict::Active(a.clone())));
        assert!(matches!(back, Some(Verdict::Active(b)) if b == a));
        assert!(matches!(remembered(b"inactive"), Some(Verdict::Inactive)));
    }
}
