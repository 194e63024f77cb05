//! Answers to `GET` callouts kept by the host, so that a JWKS or a discovery
//! document is fetched once per lifetime for all instances of a plugin rather
//! than once per request. Keyed by service, path and every request header the
//! plugin sent (so an answer to one credential never serves another); kept as
//! the answer's `Cache-Control` allows, or for the attachment's
//! `callout_cache_ttl`. A request with `Cache-Control: no-cache` skips the
//! lookup (and refreshes the entry); `no-store` skips the cache entirely.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{Method, header};
use sha2::{Digest, Sha256};

use crate::cache::CacheControl;
use crate::exchange::RequestHead;
use crate::plugin::bindings::callout::Response;
use crate::plugin::bindings::types::Header;
use crate::plugin::kv::Kv;

/// Statuses a cache may keep without explicit freshness in other caches
/// (RFC 9110 §15.1, "heuristically cacheable"); others are never kept.
const CACHEABLE: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// One attachment's view of its plugin's answer store.
#[derive(Debug)]
pub(super) struct AnswerCache {
    store: Arc<Kv>,
    ttl: Option<Duration>,
}

/// What one callout may do with the cache.
#[derive(Debug)]
pub(super) struct Ask {
    key: String,
    lookup: bool,
}

impl AnswerCache {
    /// The cache in `store`, with the attachment's override.
    pub(super) fn new(store: Arc<Kv>, ttl: Option<Duration>) -> Self {
        Self { store, ttl }
    }

    /// How the callout `head` (with `body`) to `service` uses the cache, or
    /// `None` when it cannot (not a `GET`, a `GET` with a body, which the key
    /// does not cover, caching switched off, `no-store`).
    pub(super) fn ask(&self, service: &str, head: &RequestHead, body: &[u8]) -> Option<Ask> {
        if head.method != Method::GET || !body.is_empty() || self.ttl.is_some_and(|t| t.is_zero()) {
            return None;
        }
        let cc = CacheControl::from_values(
            head.headers
                .get_all(header::CACHE_CONTROL)
                .iter()
                .map(|v| v.as_bytes()),
        );
        if cc.no_store {
            return None;
        }
        let mut key = Sha256::new();
        key.update(service.as_bytes());
        key.update([0]);
        key.update(head.uri.to_string().as_bytes());
        for (name, value) in &head.headers {
            if name != header::CACHE_CONTROL {
                key.update([0]);
                key.update(name.as_str().as_bytes());
                key.update([0]);
                key.update(value.as_bytes());
            }
        }
        Some(Ask {
            key: hex::encode(key.finalize()),
            lookup: !cc.no_cache && cc.max_age != Some(Duration::ZERO),
        })
    }

    /// The kept answer, with its `age`, if it is still fresh.
    pub(super) fn get(&self, ask: &Ask) -> Option<Response> {
        if !ask.lookup {
            return None;
        }
        decode(&self.store.get(&ask.key)?)
    }

    /// Keeps `answer` for as long as it (or the override) says.
    pub(super) fn put(&self, ask: Ask, answer: &Response) {
        if let Some(ttl) = lifetime(answer, self.ttl) {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            self.store.set(ask.key, encode(answer), ms);
        }
    }
}

/// How long `answer` may be kept: the override, else what is left of its
/// `s-maxage` or `max-age` after its `age`. The store is shared by every
/// request through the plugin, so `private` answers are not kept.
fn lifetime(answer: &Response, ttl: Option<Duration>) -> Option<Duration> {
    if !CACHEABLE.contains(&answer.status) {
        return None;
    }
    if let Some(ttl) = ttl {
        return (!ttl.is_zero()).then_some(ttl);
    }
    let named = |n: &'static str| {
        answer
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(n))
            .map(|h| h.value.as_slice())
    };
    let cc = CacheControl::from_values(named("cache-control"));
    if cc.no_store || cc.no_cache || cc.private {
        return None;
    }
    let max = cc.s_maxage.or(cc.max_age)?.as_secs();
    let age = age_of(named("age").next());
    let left = max.saturating_sub(age);
    (left > 0).then(|| Duration::from_secs(left))
}

fn age_of(value: Option<&[u8]>) -> u64 {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Milliseconds on a monotonic clock local to this process.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `[stored ms][age s][status][header count]([len][name][len][value])*[body]`,
/// little-endian; the answer's own `age` is folded into the second field.
fn encode(answer: &Response) -> Vec<u8> {
    let headers: Vec<&Header> = answer
        .headers
        .iter()
        .filter(|h| !h.name.eq_ignore_ascii_case("age"))
        .collect();
    let size: usize = headers
        .iter()
        .map(|h| 8 + h.name.len() + h.value.len())
        .sum();
    let mut out = Vec::with_capacity(22 + size + answer.body.len());
    out.extend_from_slice(&now_ms().to_le_bytes());
    let age = answer
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("age"));
    out.extend_from_slice(&age_of(age.map(|h| h.value.as_slice())).to_le_bytes());
    out.extend_from_slice(&answer.status.to_le_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for h in headers {
        out.extend_from_slice(&(h.name.len() as u32).to_le_bytes());
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&h.value);
    }
    out.extend_from_slice(&answer.body);
    out
}

/// The answer `encode` wrote, with `age` now; `None` if `bytes` is not one.
fn decode(bytes: &[u8]) -> Option<Response> {
    let mut r = Reader(bytes);
    let stored = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let age = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let count = r.len()?;
    let mut headers = Vec::with_capacity(count + 1);
    for _ in 0..count {
        let name = r.take_len()?;
        let name = String::from_utf8(name.to_vec()).ok()?;
        let value = r.take_len()?.to_vec();
        headers.push(Header { name, value });
    }
    let age = age + now_ms().saturating_sub(stored) / 1000;
    headers.push(Header {
        name: "age".into(),
        value: age.to_string().into_bytes(),
    });
    Some(Response {
        status,
        headers,
        body: r.0.to_vec(),
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn len(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    fn take_len(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            body: b"{\"keys\":[]}".to_vec(),
        }
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut head = RequestHead::blank();
        head.uri = path.parse().expect("path");
        for (n, v) in headers {
            head.headers.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        head
    }

    #[test]
    fn freshness_comes_from_cache_control_and_age() {
        let secs = |h: &[(&str, &str)]| lifetime(&answer(200, h), None).map(|d| d.as_secs());
        assert_eq!(secs(&[("cache-control", "public, max-age=300")]), Some(300));
        assert_eq!(
            secs(&[("Cache-Control", "max-age=300"), ("age", "100")]),
            Some(200)
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=60, s-maxage=600")]),
            Some(600)
        );
        assert_eq!(secs(&[("cache-control", "max-age=\"30\"")]), Some(30));
        assert_eq!(
            secs(&[("cache-control", "max-age=10"), ("age", "20")]),
            None
        );
        assert_eq!(secs(&[("cache-control", "max-age=300, no-store")]), None);
        assert_eq!(secs(&[("cache-control", "no-cache, max-age=300")]), None);
        assert_eq!(secs(&[("cache-control", "private, max-age=300")]), None);
        assert_eq!(secs(&[]), None);
        let err = answer(500, &[("cache-control", "max-age=300")]);
        assert_eq!(lifetime(&err, None), None);
    }

    #[test]
    fn the_override_wins_over_the_answer() {
        let no_store = answer(200, &[("cache-control", "no-store")]);
        assert_eq!(
            lifetime(&no_store, Some(Duration::from_secs(5))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(lifetime(&no_store, Some(Duration::ZERO)), None);
        assert_eq!(
            lifetime(&answer(503, &[]), Some(Duration::from_secs(5))),
            None
        );
    }

    #[test]
    fn answers_round_trip_with_their_age() {
        let a = answer(200, &[("content-type", "application/json"), ("age", "7")]);
        let back = decode(&encode(&a)).expect("decodes");
        assert_eq!(back.status, 200);
        assert_eq!(back.body, a.body);
        assert_eq!(back.headers[0].name, "content-type");
        assert_eq!(back.headers[1].name, "age");
        assert_eq!(back.headers[1].value, b"7");
        assert!(decode(&encode(&a)[..20]).is_none());
    }

    #[test]
    fn the_key_covers_service_path_and_headers_but_not_cache_control() {
        let cache = AnswerCache::new(Arc::new(Kv::default()), None);
        let key = |s: &str, h: &RequestHead| cache.ask(s, h, b"").expect("cacheable").key;
        let plain = key("idp", &get("/jwks", &[("accept", "application/json")]));
        assert_eq!(
            plain,
            key(
                "idp",
                &get(
                    "/jwks",
                    &[
                        ("accept", "application/json"),
                        ("cache-control", "no-cache")
                    ]
                )
            )
        );
        assert_ne!(
            plain,
            key("other", &get("/jwks", &[("accept", "application/json")]))
        );
        assert_ne!(
            plain,
            key("idp", &get("/jwks?x", &[("accept", "application/json")]))
        );
        assert_ne!(
            plain,
            key("idp", &get("/jwks", &[("accept", "text/plain")]))
        );
        let refresh = cache
            .ask("idp", &get("/jwks", &[("cache-control", "no-cache")]), b"")
            .expect("stores");
        assert!(!refresh.lookup);
        assert!(
            cache
                .ask("idp", &get("/jwks", &[("cache-control", "no-store")]), b"")
                .is_none()
        );
        let mut post = get("/jwks", &[]);
        post.method = Method::POST;
        assert!(cache.ask("idp", &post, b"").is_none());
        assert!(cache.ask("idp", &get("/search", &[]), b"{}").is_none());
    }

    #[test]
    fn a_kept_answer_is_served_until_it_expires() {
        let cache = AnswerCache::new(Arc::new(Kv::default()), Some(Duration::from_millis(50)));
        let head = get("/jwks", &[]);
        let ask = || cache.ask("idp", &head, b"").expect("cacheable");
        assert!(cache.get(&ask()).is_none());
        cache.put(ask(), &answer(200, &[]));
        assert_eq!(cache.get(&ask()).expect("hit").status, 200);
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&ask()).is_none());
    }
}
