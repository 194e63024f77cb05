//! `jwt-auth`: verifies a JWT bearer token (HS/RS/PS/ES/EdDSA from an explicit
//! allow-list; keys inline, as PEM, as a JWKS inline or in a file that is
//! re-read when it changes, or from the identity provider through a callout,
//! see `remote`), maps its claims to request attributes and upstream
//! headers, and answers 401 with an RFC 6750 `WWW-Authenticate` otherwise.
//! Public-key signatures are checked by the host in native code (see `crypto`).

mod cache;
mod claims;
mod config;
mod crypto;
mod keys;
mod remote;
mod verify;

use std::collections::BTreeMap;
use std::time::Duration;

use cache::{Attributes, TokenCache};
use config::{ClaimNames, Config, TokenSource};
use gatehouse_plugin_sdk::params::{cookie, cookie_without, query_param, query_without};
use gatehouse_plugin_sdk::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keys::{JwksFile, Key, KeySource};
use verify::{Failure, Verifier};

/// Verified tokens remembered per instance (Envoy's default size).
const DEFAULT_CACHE_SIZE: usize = 100;

struct JwtAuth {
    verifier: Verifier,
    source: TokenSource,
    claims: ClaimNames,
    upstream_headers: BTreeMap<String, String>,
    keep_token: bool,
    cache: TokenCache,
}

/// Where the token was found, so that it can be removed before the upstream.
enum Found {
    Header(String),
    Cookie(String),
    Query(String),
}

impl Plugin for JwtAuth {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        // Only fails when already installed (by an earlier `new` in this instance).
        let _ = crypto::PROVIDER.install_default();
        let algorithms = c
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| format!("unknown algorithm `{a}` (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err("`algorithms` must list at least one algorithm".into());
        }
        let mut keys = Vec::new();
        if let Some(s) = &c.secret {
            keys.push(secret_key(None, s)?);
        }
        if let Some(pem) = &c.public_key {
            keys.push(Key {
                kid: None,
                key: keys::from_pem(pem)?,
                alg: None,
            });
        }
        for (i, k) in c.keys.iter().enumerate() {
            let key = match (&k.secret, &k.public_key) {
                (Some(s), None) => secret_key(k.kid.clone(), s)?,
                (None, Some(pem)) => Key {
                    kid: k.kid.clone(),
                    key: keys::from_pem(pem).map_err(|e| format!("keys[{i}]: {e}"))?,
                    alg: None,
                },
                _ => {
                    return Err(format!(
                        "keys[{i}]: set exactly one of `secret` and `public_key`"
                    ));
                }
            };
            keys.push(key);
        }
        if let Some(doc) = &c.jwks {
            keys.extend(keys::from_jwks(&doc.to_string())?);
        }
        let source = source(&c)?;
        if keys.is_empty() && source.is_none() {
            return Err(
                "no keys: set `secret`, `public_key`, `keys`, `jwks`, `jwks_file`, `jwks_uri` or `discovery`".into(),
            );
        }
        for alg in &algorithms {
            let usable = keys.iter().any(|k| k.key.family() == alg.family()) || source.is_some();
            if !usable {
                return Err(format!(
                    "algorithm {alg:?} is allowed but no key of its family is configured"
                ));
            }
        }
        let mut validation = Validation::new(algorithms[0]);
        validation.validate_nbf = true;
        validation.leeway = c.leeway_seconds.unwrap_or(60);
        let cache = TokenCache::new(
            c.cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
            validation.leeway,
            validation.validate_nbf,
        );
        if let Some(iss) = &c.issuer {
            validation.set_issuer(&iss.to_vec());
        }
        match &c.audience {
            Some(aud) => validation.set_audience(&aud.to_vec()),
            None => validation.validate_aud = false,
        }
        let required = c
            .required_claims
            .clone()
            .unwrap_or_else(|| vec!["exp".into()]);
        validation.set_required_spec_claims(&required);
        let upstream_headers = identity_headers(c.upstream_headers.as_ref());
        Ok(JwtAuth {
            verifier: Verifier {
                algorithms,
                keys,
                source,
                validation,
                max_token_bytes: c.max_token_bytes.unwrap_or(8192),
            },
            source: c.token,
            claims: c.claims,
            upstream_headers,
            keep_token: c.keep_token,
            cache,
        })
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        // Never let a client choose its own identity headers.
        for header in self.upstream_headers.values() {
            req.remove_header(header);
        }
        let Some((token, found)) = self.token(req) else {
            return unauthorized(ctx, &Failure::Missing);
        };
        let now = jsonwebtoken::get_current_timestamp();
        let current = match self.verifier.current() {
            Ok(k) => k,
            Err(f) => return unauthorized(ctx, &f),
        };
        let cached = self.cache.with_hit(&token, now, current.as_ref(), |attrs| {
            self.apply(ctx, req, attrs)
        });
        if !cached {
            let claims = match self.verifier.verify(&token, current.as_ref()) {
                Ok(c) => c,
                Err(f) => return unauthorized(ctx, &f),
            };
            let attrs = claims::attributes(&claims, &self.claims);
            self.apply(ctx, req, &attrs);
            self.cache.insert(&token, &claims, attrs, now);
        }
        if !self.keep_token {
            match found {
                Found::Header(h) => req.remove_header(&h),
                Found::Query(name) => {
                    let rest = req.query().and_then(|q| query_without(&q, &name));
                    let _ = req.set_query(rest.as_deref());
                }
                Found::Cookie(name) => {
                    let kept: Vec<String> = req
                        .header_all("cookie")
                        .iter()
                        .filter_map(|c| std::str::from_utf8(c).ok())
                        .filter_map(|c| cookie_without(c, &name))
                        .collect();
                    req.remove_header("cookie");
                    for c in kept {
                        req.append_header("cookie", c.as_bytes());
                    }
                }
            }
        }
        Action::Continue
    }
}

impl JwtAuth {
    /// Hands a verified token's attributes to later plugins and, where
    /// configured, to the upstream as headers.
    fn apply(&self, ctx: &Context, req: &Request, attrs: &Attributes) {
        for (name, value) in attrs {
            ctx.set_attribute(name, value);
            if let Some(header) = self.upstream_headers.get(*name) {
                req.set_header(header, value.as_bytes());
            }
        }
    }

    fn token(&self, req: &Request) -> Option<(String, Found)> {
        let s = &self.source;
        let explicit = s.header.is_some() || s.cookie.is_some() || s.query.is_some();
        let header = s
            .header
            .as_deref()
            .or((!explicit).then_some("authorization"));
        if let Some(h) = header
            && let Some(v) = req.header_str(h)
        {
            let token = if h.eq_ignore_ascii_case("authorization") {
                bearer(&v)
            } else {
                Some(v.trim())
            };
            if let Some(t) = token.filter(|t| !t.is_empty()) {
                return Some((t.to_string(), Found::Header(h.to_string())));
            }
        }
        if let Some(name) = &s.cookie
            && let Some(v) = req
                .header_all("cookie")
                .iter()
                .filter_map(|c| std::str::from_utf8(c).ok())
                .find_map(|c| cookie(c, name).map(str::to_string))
        {
            return Some((v, Found::Cookie(name.clone())));
        }
        if let Some(name) = &s.query
            && let Some(v) = req
                .query()
                .and_then(|q| query_param(&q, name).map(str::to_string))
        {
            return Some((v, Found::Query(name.clone())));
        }
        None
    }
}

fn bearer(v: &str) -> Option<&str> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The keys that may change while running: `jwks_file`, or the provider's
/// (`jwks_uri` or `discovery`, through `jwks_service`).
fn source(c: &Config) -> Result<Option<KeySource>, String> {
    let remote = c.jwks_uri.is_some() || c.discovery;
    if c.jwks_file.is_some() && remote {
        return Err("set `jwks_file` or a provider (`jwks_uri`, `discovery`), not both".into());
    }
    if let Some(path) = &c.jwks_file {
        let refresh = Duration::from_secs(c.jwks_refresh_seconds.unwrap_or(5));
        return JwksFile::open(path, refresh).map(|f| Some(KeySource::File(f)));
    }
    if !remote {
        return Ok(None);
    }
    let Some(service) = c.jwks_service.clone() else {
        return Err("`jwks_uri` and `discovery` need `jwks_service`: the service (granted in `callouts`) that is the provider".into());
    };
    let location = match (&c.jwks_uri, c.discovery) {
        (Some(_), true) => return Err("set `jwks_uri` or `discovery`, not both".into()),
        (Some(uri), false) => remote::Location::Jwks(remote::path_of(uri)),
        (None, _) => match &c.issuer {
            Some(config::OneOrMany::One(issuer)) => remote::Location::Discover {
                issuer: issuer.clone(),
            },
            _ => return Err("`discovery` needs `issuer`, one value: the issuer whose discovery document names the keys".into()),
        },
    };
    let secs = |v: Option<u64>, default: u64| v.unwrap_or(default).saturating_mul(1000);
    let settings = remote::Settings {
        service,
        location,
        default_ms: secs(c.jwks_cache_seconds, 300),
        min_ms: secs(c.jwks_cache_min_seconds, 60),
        max_ms: secs(c.jwks_cache_max_seconds, 86_400),
        max_stale_ms: secs(c.jwks_max_stale_seconds, 3_600),
        rediscovery_ms: secs(c.jwks_rediscovery_seconds, 30),
    };
    if settings.min_ms > settings.max_ms {
        return Err("`jwks_cache_min_seconds` is above `jwks_cache_max_seconds`".into());
    }
    Ok(Some(KeySource::Remote(remote::RemoteJwks::new(settings))))
}

fn secret_key(kid: Option<String>, secret: &str) -> Result<Key, String> {
    if secret.len() < 32 {
        return Err("an HMAC `secret` must be at least 32 bytes".into());
    }
    Ok(Key {
        kid,
        key: DecodingKey::from_secret(secret.as_bytes()),
        alg: None,
    })
}

/// 401 with RFC 6750 `WWW-Authenticate`: bare `Bearer` when no token was sent.
fn unauthorized(ctx: &Context, failure: &Failure) -> Action {
    let rid = ctx.request_id();
    if *failure == Failure::KeysUnavailable {
        let body = serde_json::json!({ "error": "temporarily_unavailable", "error_description": failure.description(), "request_id": rid });
        return Response::json(503, &body).header("retry-after", "1").into();
    }
    let (challenge, body) = match failure {
        Failure::Missing => (
            "Bearer".to_string(),
            serde_json::json!({ "error": "unauthorized", "error_description": "missing token", "request_id": rid }),
        ),
        f => {
            let d = f.description();
            (
                format!("Bearer error=\"invalid_token\", error_description=\"{d}\""),
                serde_json::json!({ "error": "invalid_token", "error_description": d, "request_id": rid }),
            )
        }
    };
    Response::json(401, &body)
        .header("www-authenticate", challenge)
        .into()
}

export_plugin!(JwtAuth);
