//! The plugin's config, checked once in `init`.

use std::collections::BTreeMap;

use gatehouse_plugin_sdk::host::{Algorithm as HostAlgorithm, Backend as HostBackend};
use serde::Deserialize;

/// The whole config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `token_bucket` (default) or `sliding_window`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `local` (default) or `redis`.
    #[serde(default)]
    pub backend: Backend,
    /// What to do when the backend cannot answer: `allow` (default) or `deny` (503).
    #[serde(default)]
    pub on_backend_error: OnBackendError,
    /// Every limit is checked; the first to deny answers.
    pub limits: Vec<Limit>,
    /// IPv6 clients are counted by this prefix (default 64: one counter per
    /// /64, since a single host is commonly given a whole /64 and could
    /// otherwise mint a fresh key per request). 128 counts each address.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

fn default_ipv6_prefix() -> u8 {
    64
}

/// Limiting algorithm.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Steady refill with bursts up to `burst`.
    #[default]
    TokenBucket,
    /// Two-window weighted counter.
    SlidingWindow,
}

/// Counter storage.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In the gateway process.
    #[default]
    Local,
    /// Shared through Redis.
    Redis,
}

/// Failure policy for the backend.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBackendError {
    /// Let the request through.
    #[default]
    Allow,
    /// Answer 503.
    Deny,
}

/// One limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Name in the `RateLimit-Policy` header (default `limit<i>`).
    pub name: Option<String>,
    /// What the counter is keyed by: `ip`, `consumer`, `api_key`, `route`,
    /// `header:<name>`, `global`, or a combination joined with `+`.
    #[serde(deserialize_with = "scope")]
    pub scope: Vec<Scope>,
    /// Requests per window (when no tier applies).
    pub limit: Option<u32>,
    /// Window: `500ms`, `1s`, `1m`, `1h`.
    #[serde(rename = "window", deserialize_with = "window")]
    pub window_ms: u64,
    /// Token bucket size (default: `limit`).
    pub burst: Option<u32>,
    /// Per-tier limits, chosen by the request's `tier` attribute.
    #[serde(default)]
    pub tiers: BTreeMap<String, u32>,
}

/// One part of a limit's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Client IP.
    Ip,
    /// The `consumer` attribute (client IP when anonymous).
    Consumer,
    /// The `api_key_id` attribute (then `consumer`, then client IP).
    ApiKey,
    /// The route id.
    Route,
    /// A request header's value.
    Header(String),
    /// One counter for everything.
    Global,
}

impl Config {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.limits.is_empty() {
            return Err("`limits` needs at least one limit".into());
        }
        for (i, l) in self.limits.iter().enumerate() {
            if l.limit.is_none() && l.tiers.is_empty() {
                return Err(format!("limits[{i}]: set `limit`, `tiers`, or both"));
            }
            // A request without a tier (or with an unlisted one) must still be
            // limited: fail closed, never unlimited.
            if l.limit.is_none() && !l.tiers.contains_key("default") {
                return Err(format!(
                    "limits[{i}]: `tiers` without `limit` needs a `default` tier for requests without a known tier"
                ));
            }
            if l.limit == Some(0) || l.tiers.values().any(|&v| v == 0) {
                return Err(format!("limits[{i}]: limits must be at least 1"));
            }
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err("`ipv6_prefix` must be between 1 and 128".into());
        }
        Ok(())
    }
}

impl Limit {
    /// The limit for a request of `tier`: its tier's, else `limit`, else the
    /// `default` tier (validation guarantees one of the last two).
    pub fn limit_for(&self, tier: Option<&str>) -> Option<u32> {
        tier.and_then(|t| self.tiers.get(t).copied())
            .or(self.limit)
            .or_else(|| self.tiers.get("default").copied())
    }

    /// The name shown in headers.
    pub fn name(&self, i: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("limit{i}"))
    }
}

impl From<Algorithm> for HostAlgorithm {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::TokenBucket => HostAlgorithm::TokenBucket,
            Algorithm::SlidingWindow => HostAlgorithm::SlidingWindow,
        }
    }
}

impl From<Backend> for HostBackend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Local => HostBackend::Local,
            Backend::Redis => HostBackend::Redis,
        }
    }
}

fn scope<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Scope>, D::Error> {
    let s = String::deserialize(d)?;
    s.split('+')
        .map(|part| match part.trim() {
            "ip" => Ok(Scope::Ip),
            "consumer" => Ok(Scope::Consumer),
            "api_key" => Ok(Scope::ApiKey),
            "route" => Ok(Scope::Route),
            "global" => Ok(Scope::Global),
            p => match p.strip_prefix("header:") {
                Some(h) if !h.is_empty() => Ok(Scope::Header(h.to_ascii_lowercase())),
                _ => Err(serde::de::Error::custom(format!(
                    "unknown scope `{p}` (ip, consumer, api_key, route, header:<name>, global, joined with +)"
                ))),
            },
        })
        .collect()
}

fn window<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse_window(&s).map_err(serde::de::Error::custom)
}

/// `500ms`, `1s`, `1m`, `1h` → milliseconds.
pub fn parse_window(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split]
        .parse()
        .map_err(|_| format!("window `{s}` must start with a number"))?;
    let ms = match &s[split..] {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("window `{s}` needs a unit: ms, s, m or h")),
    };
    if ms == 0 {
        return Err(format!("window `{s}` must be longer than zero"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_without_a_default_are_refused() {
        let parse = |j: &str| serde_json::from_str::<Config>(j).unwrap().validate();
        let err = parse(r#"{"limits":[{"scope":"consumer","window":"1m","tiers":{"free":5}}]}"#);
        assert!(err.unwrap_err().contains("default"));
        let c: Config = serde_json::from_str(
            r#"{"limits":[{"scope":"consumer","window":"1m","tiers":{"free":5,"default":2}}]}"#,
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.limits[0].limit_for(None), Some(2));
        assert_eq!(c.limits[0].limit_for(Some("gold")), Some(2));
        assert_eq!(c.limits[0].limit_for(Some("free")), Some(5));
        let with_limit =
            r#"{"limits":[{"scope":"ip","window":"1m","limit":9,"tiers":{"free":5}}]}"#;
        assert!(parse(with_limit).is_ok());
        assert!(
            parse(r#"{"ipv6_prefix":0,"limits":[{"scope":"ip","window":"1m","limit":1}]}"#)
                .is_err()
        );
    }

    #[test]
    fn windows_and_scopes_parse() {
        assert_eq!(parse_window("1s"), Ok(1000));
        assert_eq!(parse_window("2m"), Ok(120_000));
        assert!(parse_window("5").is_err());
        assert!(parse_window("0s").is_err());
        let c: Config = serde_json::from_str(
            r#"{"limits":[{"scope":"consumer+route","window":"1m","limit":10,"tiers":{"premium":100}}]}"#,
        )
        .unwrap();
        assert_eq!(c.limits[0].scope, vec![Scope::Consumer, Scope::Route]);
        assert_eq!(c.limits[0].limit_for(Some("premium")), Some(100));
        assert_eq!(c.limits[0].limit_for(Some("free")), Some(10));
        assert_eq!(c.limits[0].limit_for(None), Some(10));
        let bad = serde_json::from_str::<Config>(
            r#"{"limits":[{"scope":"cookie","window":"1m","limit":1}]}"#,
        );
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown scope `cookie`")
        );
    }
}
