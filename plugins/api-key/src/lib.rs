//! `api-key`: authenticates a request by an API key sent in a header or a query
//! parameter. The config holds only SHA-256 hashes of the keys; the presented
//! key is hashed and its hash looked up in a map, so the cost of a request
//! does not grow with the number of keys. With `keys_from_consumers`, a hash
//! not in the config is looked up among the gateway's consumers
//! (`host.find-credential`, also a map probe). The key is never logged and
//! never forwarded upstream.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use gatehouse_plugin_sdk::params::{query_param, query_without};
use gatehouse_plugin_sdk::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The config as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Header carrying the key (default `x-api-key`).
    header: Option<String>,
    /// Query parameter carrying the key (off unless set).
    query: Option<String>,
    /// The accepted keys.
    #[serde(default)]
    keys: Vec<KeyConfig>,
    /// Keys not in `keys` are looked up among the gateway's consumers (the
    /// admin API's consumer store and the config's `consumers:`); with it,
    /// an empty list is fine (every request is refused until a key exists).
    #[serde(default)]
    keys_from_consumers: bool,
    /// Request attribute → upstream header (default: `consumer` → `x-consumer-id`).
    upstream_headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfig {
    /// `sha256:<64 hex>` (or the bare hex) of the key.
    hash: String,
    /// Who the key belongs to (→ `consumer`).
    consumer: String,
    /// A name for the key that is safe to log (→ `api_key_id`; default: the
    /// hash's first 12 hex digits).
    id: Option<String>,
    /// Granted scopes (→ `scopes`, space-separated).
    #[serde(default)]
    scopes: Vec<String>,
    /// Rate-limit tier (→ `tier`).
    tier: Option<String>,
    /// RFC 3339 instant after which the key is refused.
    expires: Option<String>,
    /// A disabled key is refused (default true).
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone)]
struct Key {
    hash: [u8; 32],
    id: String,
    consumer: String,
    scopes: String,
    tier: Option<String>,
    expires: Option<SystemTime>,
    enabled: bool,
}

struct ApiKey {
    header: String,
    query: Option<String>,
    /// By the key's SHA-256.
    keys: HashMap<[u8; 32], Key>,
    /// Ask the gateway for keys not in `keys`.
    from_consumers: bool,
    upstream_headers: BTreeMap<String, String>,
}

impl Plugin for ApiKey {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        if c.keys.is_empty() && !c.keys_from_consumers {
            return Err("`keys` must list at least one key".into());
        }
        let mut keys = HashMap::with_capacity(c.keys.len());
        for (i, k) in c.keys.into_iter().enumerate() {
            let k = key(k).map_err(|e| format!("keys[{i}]: {e}"))?;
            if keys.insert(k.hash, k).is_some() {
                return Err(format!("keys[{i}]: the same `hash` as an earlier key"));
            }
        }
        let upstream_headers = c
            .upstream_headers
            .unwrap_or_else(|| BTreeMap::from([("consumer".into(), "x-consumer-id".into())]));
        // The gateway strips these from every request on every route.
        for header in upstream_headers.values() {
            host::identity_header(header);
        }
        Ok(ApiKey {
            header: c.header.unwrap_or_else(|| "x-api-key".into()),
            query: c.query,
            keys,
            from_consumers: c.keys_from_consumers,
            upstream_headers,
        })
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        for header in self.upstream_headers.values() {
            req.remove_header(header);
        }
        let presented = req.header_str(&self.header).or_else(|| {
            let name = self.query.as_deref()?;
            req.query()
                .and_then(|q| query_param(&q, name).map(str::to_string))
        });
        // The key goes no further than this plugin, whatever the outcome.
        req.remove_header(&self.header);
        if let Some(name) = &self.query {
            let rest = req.query().and_then(|q| query_without(&q, name));
            let _ = req.set_query(rest.as_deref());
        }
        let Some(presented) = presented.filter(|k| !k.is_empty()) else {
            return unauthorized(ctx, "missing API key");
        };
        let Some(key) = self.find(presented.trim()) else {
            return unauthorized(ctx, "invalid API key");
        };
        let key = &*key;
        if !key.enabled {
            return unauthorized(ctx, "API key disabled");
        }
        if key.expires.is_some_and(|t| SystemTime::now() >= t) {
            return unauthorized(ctx, "API key expired");
        }
        let attrs = [
            ("consumer", Some(key.consumer.as_str())),
            ("api_key_id", Some(key.id.as_str())),
            (
                "scopes",
                Some(key.scopes.as_str()).filter(|s| !s.is_empty()),
            ),
            ("tier", key.tier.as_deref()),
        ];
        for (name, value) in attrs {
            let Some(value) = value else { continue };
            ctx.set_attribute(name, value);
            if let Some(header) = self.upstream_headers.get(name) {
                req.set_header(header, value.as_bytes());
            }
        }
        Action::Continue
    }
}

impl ApiKey {
    /// Looks the key up by its SHA-256. The map's probe compares digests,
    /// not keys: how long it takes says nothing about the secret (SHA-256 has
    /// no usable preimage), so a timing attacker learns nothing to aim with.
    fn find(&self, presented: &str) -> Option<Cow<'_, Key>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if let Some(k) = self.keys.get(&digest) {
            return Some(Cow::Borrowed(k));
        }
        if !self.from_consumers {
            return None;
        }
        let c = host::find_credential(&digest)?;
        Some(Cow::Owned(Key {
            hash: digest,
            id: c.id,
            consumer: c.consumer,
            scopes: c.scopes.join(" "),
            tier: c.tier,
            expires: c
                .expires_ms
                .map(|ms| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
            enabled: c.enabled,
        }))
    }
}

fn key(k: KeyConfig) -> Result<Key, String> {
    let hex_part = k.hash.strip_prefix("sha256:").unwrap_or(&k.hash);
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut hash).map_err(|_| {
        "`hash` must be sha256:<64 hex digits> (printf %s KEY | sha256sum)".to_string()
    })?;
    let expires = k
        .expires
        .as_deref()
        .map(|e| {
            humantime::parse_rfc3339_weak(e).map_err(|_| {
                format!("`expires` {e:?} is not an RFC 3339 time like 2027-01-31T00:00:00Z")
            })
        })
        .transpose()?;
    if k.consumer.is_empty() {
        return Err("`consumer` must not be empty".into());
    }
    Ok(Key {
        id: k.id.unwrap_or_else(|| hex_part[..12].to_string()),
        hash,
        consumer: k.consumer,
        scopes: k.scopes.join(" "),
        tier: k.tier,
        expires,
        enabled: k.enabled,
    })
}

fn unauthorized(ctx: &Context, description: &str) -> Action {
    let body = serde_json::json!({
        "error": "unauthorized",
        "error_description": description,
        "request_id": ctx.request_id(),
    });
    Response::json(401, &body)
        .header("www-authenticate", "ApiKey")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn epoch_secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn cfg(hash: &str, expires: Option<&str>) -> KeyConfig {
        KeyConfig {
            hash: hash.into(),
            consumer: "alice".into(),
            id: None,
            scopes: vec!["a".into(), "b".into()],
            tier: None,
            expires: expires.map(str::to_string),
            enabled: true,
        }
    }

    const S3CRET: &str = "sha256:2f1c5a8cdd11f1ef4ce8e9d9c9ba0bde42e0b6e8f6ae4a2ea5cb5e8b4f4b3bd0";

    #[test]
    fn keys_parse_and_reject_bad_hashes_and_dates() {
        let k = key(cfg(S3CRET, Some("2027-01-31T00:00:00Z"))).unwrap();
        assert_eq!(k.id, "2f1c5a8cdd11");
        assert_eq!(k.scopes, "a b");
        assert_eq!(epoch_secs(k.expires.unwrap()), 1_801_353_600);
        assert!(key(cfg("sha256:abc", None)).is_err_and(|e| e.contains("64 hex")));
        assert!(key(cfg(S3CRET, Some("tomorrow"))).is_err_and(|e| e.contains("RFC 3339")));
    }

    #[test]
    fn a_hundred_thousand_keys_are_found_by_hash() {
        let n = 100_000;
        let mut keys = HashMap::with_capacity(n);
        for i in 0..n {
            let hash = hex::encode(Sha256::digest(format!("key-{i}").as_bytes()));
            let mut c = cfg(&hash, None);
            c.consumer = format!("c{i}");
            let k = key(c).unwrap();
            keys.insert(k.hash, k);
        }
        let plugin = ApiKey {
            header: "x-api-key".into(),
            query: None,
            keys,
            from_consumers: false,
            upstream_headers: BTreeMap::new(),
        };
        let started = std::time::Instant::now();
        for i in (0..n).step_by(10) {
            let found = plugin.find(&format!("key-{i}")).map(|k| k.consumer.clone());
            assert_eq!(found, Some(format!("c{i}")));
        }
        // Reported, not asserted: a figure for the notes, not a timing test.
        eprintln!(
            "api-key: {} lookups among {n} keys, {:?} each (hash + map probe + format)",
            n / 10,
            started.elapsed() / (n as u32 / 10)
        );
        assert!(plugin.find("key-100000").is_none());
        assert!(plugin.find("").is_none());
    }
}

export_plugin!(ApiKey);
