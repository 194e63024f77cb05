//! Keys fetched from the identity provider through a callout: a `jwks_uri`,
//! or the one its OpenID Connect discovery document names. Kept for their
//! cache lifetime (the answer's `Cache-Control`, clamped to a floor and a
//! ceiling), refreshed early when a token names an unknown `kid` (at most once
//! per `jwks_rediscovery_seconds` across all instances, so random kids cannot
//! hammer the provider), and, while the provider is down, the last good keys
//! keep verifying until they are `jwks_max_stale_seconds` old.
//!
//! The last good document is also written to the plugin's key-value store, so
//! an instance started during an outage verifies with it too.

use std::sync::{Arc, Mutex};

use gatehouse_plugin_sdk::callout::{self, Request};
use gatehouse_plugin_sdk::{Level, host};

use crate::keys::{Key, from_jwks};

/// After a failed fetch, the next try waits this long (Envoy's
/// `failed_refetch_duration`), so an outage costs the provider one request
/// per second per instance, not one per client request.
const RETRY_MS: u64 = 1_000;
/// Where discovery documents live under an issuer (OpenID Connect Discovery §4).
const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// How to reach the keys and how long to keep them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The granted service the provider is.
    pub service: String,
    /// Where the keys are: a path, or the issuer to discover it from.
    pub location: Location,
    /// Lifetime when the answer gives none.
    pub default_ms: u64,
    /// Floor and ceiling of the lifetime.
    pub min_ms: u64,
    /// Ceiling of the lifetime.
    pub max_ms: u64,
    /// How long the last good keys serve while the provider cannot answer.
    pub max_stale_ms: u64,
    /// Least time between refreshes forced by an unknown `kid`.
    pub rediscovery_ms: u64,
}

/// Where the JWKS is.
#[derive(Debug, Clone)]
pub enum Location {
    /// The path (and query) of `jwks_uri`.
    Jwks(String),
    /// Discovered from `<issuer>/.well-known/openid-configuration`.
    Discover {
        /// The issuer, exactly as the document must state it.
        issuer: String,
    },
}

/// Why no keys can be used.
#[derive(Debug, PartialEq, Eq)]
pub struct Unavailable;

/// The keys of one provider, as one instance knows them.
pub struct RemoteJwks {
    settings: Settings,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<Vec<Key>>>,
    /// The document the keys were parsed from (a refresh that returns the
    /// same bytes keeps the same `Arc`, so the token cache survives it).
    document: Vec<u8>,
    /// Wall-clock ms when the provider last gave these keys.
    fetched_ms: u64,
    /// Until when they are used without asking again.
    fresh_until_ms: u64,
    /// When an unknown `kid` last made this instance look again.
    forced_ms: u64,
}

impl RemoteJwks {
    /// A source that fetches on first use (callouts are not allowed in `init`).
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    /// The current keys; `force` after an unknown `kid` (rate-limited).
    pub fn keys(&self, force: bool) -> Result<Arc<Vec<Key>>, Unavailable> {
        let now = host::now_ms();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = s.keys.is_some() && now < s.fresh_until_ms;
        if fresh && !force {
            return s.keys.clone().ok_or(Unavailable);
        }
        let mut bypass = false;
        if fresh {
            // Forced: once a second per instance, and past the provider's
            // cache only once per `rediscovery` across instances.
            if now.saturating_sub(s.forced_ms) < RETRY_MS {
                return s.keys.clone().ok_or(Unavailable);
            }
            s.forced_ms = now;
            bypass = self.may_bypass(now);
        }
        match self.fetch(bypass) {
            Ok((document, lifetime)) => self.adopt(&mut s, document, now, lifetime),
            Err(e) => self.keep_last(&mut s, now, &e),
        }
    }

    /// Whether this forced refresh may skip the gateway's cache: the first
    /// of any instance within `rediscovery`.
    fn may_bypass(&self, now: u64) -> bool {
        let key = format!("jwks-forced:{}", self.ident());
        if host::kv_get(&key).is_some() {
            return false;
        }
        host::kv_set(&key, &now.to_le_bytes(), self.settings.rediscovery_ms);
        true
    }

    /// Takes a freshly fetched document, unless it does not parse.
    fn adopt(
        &self,
        s: &mut State,
        document: Vec<u8>,
        now: u64,
        lifetime: Option<u64>,
    ) -> Result<Arc<Vec<Key>>, Unavailable> {
        if s.keys.is_none() || s.document != document {
            let text = String::from_utf8_lossy(&document);
            match from_jwks(&text) {
                Ok(keys) => s.keys = Some(Arc::new(keys)),
                Err(e) => return self.keep_last(s, now, &e),
            }
            self.remember(&document, now);
            s.document = document;
        }
        let set = &self.settings;
        let lifetime = lifetime
            .map_or(set.default_ms, |secs| secs.saturating_mul(1000))
            .clamp(set.min_ms, set.max_ms);
        s.fetched_ms = now;
        s.fresh_until_ms = now.saturating_add(lifetime);
        s.keys.clone().ok_or(Unavailable)
    }

    /// After a failure: the keys this instance or another last got, while
    /// they are younger than `max_stale`.
    fn keep_last(&self, s: &mut State, now: u64, why: &str) -> Result<Arc<Vec<Key>>, Unavailable> {
        let max_stale = self.settings.max_stale_ms;
        if s.keys.is_none() || now.saturating_sub(s.fetched_ms) > max_stale {
            s.keys = None;
            if let Some((document, fetched)) = self.recall()
                && now.saturating_sub(fetched) <= max_stale
                && let Ok(keys) = from_jwks(&String::from_utf8_lossy(&document))
            {
                s.keys = Some(Arc::new(keys));
                s.document = document;
                s.fetched_ms = fetched;
            }
        }
        s.fresh_until_ms = now.saturating_add(RETRY_MS);
        let age = now.saturating_sub(s.fetched_ms) / 1000;
        match &s.keys {
            Some(keys) => {
                log(&format!(
                    "keys from {} unavailable ({why}); using the last good ones, {age}s old",
                    self.settings.service
                ));
                Ok(keys.clone())
            }
            None => {
                log(&format!(
                    "keys from {} unavailable ({why}) and none younger than jwks_max_stale_seconds",
                    self.settings.service
                ));
                Err(Unavailable)
            }
        }
    }

    /// The provider's JWKS and its freshness in seconds (discovering where
    /// it is first, when configured to).
    fn fetch(&self, bypass: bool) -> Result<(Vec<u8>, Option<u64>), String> {
        let path = match &self.settings.location {
            Location::Jwks(path) => path.clone(),
            Location::Discover { issuer } => self.discover(issuer, bypass)?,
        };
        let answer = self.get(&path, bypass)?;
        Ok((answer.body.clone(), answer.fresh_for()))
    }

    /// The path of `jwks_uri` from the issuer's discovery document, which
    /// must name that issuer (OpenID Connect Discovery §4.3).
    fn discover(&self, issuer: &str, bypass: bool) -> Result<String, String> {
        let at = format!("{}{WELL_KNOWN}", path_of(issuer.trim_end_matches('/')));
        let answer = self.get(&at, bypass)?;
        let doc: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("discovery document {at}: {e}"))?;
        let stated = doc.get("issuer").and_then(|v| v.as_str());
        if stated != Some(issuer) {
            return Err(format!(
                "discovery document {at} states issuer {stated:?}, not {issuer:?}"
            ));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("discovery document {at} has no jwks_uri"))?;
        Ok(path_of(uri))
    }

    fn get(&self, path: &str, bypass: bool) -> Result<callout::Response, String> {
        let mut request =
            Request::get(&self.settings.service, path).header("accept", "application/json");
        if bypass {
            request = request.no_cache();
        }
        let answer = callout::send(&request).map_err(|e| format!("{path}: {e:?}"))?;
        if answer.status != 200 {
            return Err(format!("{path}: status {}", answer.status));
        }
        Ok(answer)
    }

    fn store_key(&self) -> String {
        format!("jwks-last-good:{}", self.ident())
    }

    /// Names this provider in the plugin's key-value store, which all its
    /// attachments share.
    fn ident(&self) -> String {
        match &self.settings.location {
            Location::Jwks(path) => format!("{} {path}", self.settings.service),
            Location::Discover { issuer } => format!("{} {issuer}", self.settings.service),
        }
    }

    /// Writes the document for other instances, for as long as it may serve.
    fn remember(&self, document: &[u8], now: u64) {
        let mut value = now.to_le_bytes().to_vec();
        value.extend_from_slice(document);
        host::kv_set(&self.store_key(), &value, self.settings.max_stale_ms);
    }

    fn recall(&self) -> Option<(Vec<u8>, u64)> {
        let value = host::kv_get(&self.store_key())?;
        let (at, document) = value.split_at_checked(8)?;
        Some((document.to_vec(), u64::from_le_bytes(at.try_into().ok()?)))
    }
}

fn log(message: &str) {
    host::log(Level::Warn, message);
}

/// The path and query of `uri` (an absolute URL or already a path): the
/// gateway sends it to the granted service, whose instances stand for the
/// URL's host.
pub fn path_of(uri: &str) -> String {
    let rest = match uri.split_once("://") {
        Some((_, rest)) => rest,
        None => {
            return if uri.starts_with('/') {
                uri.into()
            } else {
                format!("/{uri}")
            };
        }
    };
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].into(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn a_uri_becomes_the_path_sent_to_the_service() {
        assert_eq!(
            path_of("https://idp.example/realms/x/certs"),
            "/realms/x/certs"
        );
        assert_eq!(path_of("https://idp.example/jwks?v=2"), "/jwks?v=2");
        assert_eq!(path_of("https://idp.example?v=2"), "/?v=2");
        assert_eq!(path_of("https://idp.example"), "/");
        assert_eq!(path_of("/certs"), "/certs");
        assert_eq!(path_of("https://idp.example/realms/x"), "/realms/x");
    }
}
