//! The plugin's config as the operator writes it, checked once in `init`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Accepted `alg` values; anything else (including `none`) is refused.
    pub algorithms: Vec<String>,
    /// An HMAC secret (HS256/384/512).
    pub secret: Option<String>,
    /// A PEM public key (RSA, EC or Ed25519).
    pub public_key: Option<String>,
    /// Several keys, chosen by `kid`.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// An inline JWKS document.
    pub jwks: Option<serde_json::Value>,
    /// A JWKS file inside a directory granted with `allow_read`; re-read when it
    /// changes.
    pub jwks_file: Option<String>,
    /// How often the JWKS file is checked for changes, in seconds (default 5).
    pub jwks_refresh_seconds: Option<u64>,
    /// The provider's JWKS URL; its path is fetched from `jwks_service`.
    pub jwks_uri: Option<String>,
    /// Find `jwks_uri` in `<issuer>/.well-known/openid-configuration`
    /// (OpenID Connect Discovery), fetched from `jwks_service`.
    #[serde(default)]
    pub discovery: bool,
    /// The granted service (`callouts:`) that is the identity provider.
    pub jwks_service: Option<String>,
    /// Key lifetime when the provider's answer states none (default 300).
    pub jwks_cache_seconds: Option<u64>,
    /// Shortest key lifetime, whatever the answer says (default 60).
    pub jwks_cache_min_seconds: Option<u64>,
    /// Longest key lifetime, whatever the answer says (default 86400).
    pub jwks_cache_max_seconds: Option<u64>,
    /// How old the last good keys may get while the provider cannot answer
    /// (default 3600).
    pub jwks_max_stale_seconds: Option<u64>,
    /// Least time between refreshes forced by tokens with an unknown `kid`
    /// (default 30).
    pub jwks_rediscovery_seconds: Option<u64>,
    /// Where the token comes from (default: `Authorization: Bearer`).
    #[serde(default)]
    pub token: TokenSource,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 60).
    pub leeway_seconds: Option<u64>,
    /// Accepted `iss` values (one or several).
    pub issuer: Option<OneOrMany>,
    /// Accepted `aud` values (one or several).
    pub audience: Option<OneOrMany>,
    /// Claims every token must carry (default: `exp`).
    pub required_claims: Option<Vec<String>>,
    /// Longest token accepted, in bytes (default 8192).
    pub max_token_bytes: Option<usize>,
    /// Verified tokens remembered per instance (default 100; 0 disables).
    pub cache_size: Option<usize>,
    /// Which claim feeds which request attribute.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Request attribute → upstream header (default: `consumer` →
    /// `x-consumer-id`). Incoming headers of these names are always removed.
    pub upstream_headers: Option<BTreeMap<String, String>>,
    /// Forward the `Authorization` header to the upstream (default false).
    #[serde(default)]
    pub keep_token: bool,
}

/// One key of `keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` tokens name it by.
    pub kid: Option<String>,
    /// HMAC secret.
    pub secret: Option<String>,
    /// PEM public key.
    pub public_key: Option<String>,
}

/// Where to read the token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSource {
    /// A header; `authorization` expects the `Bearer` scheme, any other header
    /// holds the bare token.
    pub header: Option<String>,
    /// A cookie name.
    pub cookie: Option<String>,
    /// A query parameter name.
    pub query: Option<String>,
}

/// Claim names mapped to attributes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// → `consumer` (default `sub`).
    pub consumer: String,
    /// → `scopes`, space-separated (default `scope`, then `scp`).
    pub scopes: String,
    /// → `roles`, space-separated (default `roles`).
    pub roles: String,
    /// → `tenant` (default `tenant`).
    pub tenant: String,
    /// → `tier`, for rate-limit tiers (default `tier`).
    pub tier: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            consumer: "sub".into(),
            scopes: "scope".into(),
            roles: "roles".into(),
            tenant: "tenant".into(),
            tier: "tier".into(),
        }
    }
}

/// `"a"` or `["a", "b"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}
