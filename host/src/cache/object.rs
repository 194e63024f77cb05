//! A stored response and the RFC 9111 rules around it: whether a response
//! may be stored (§3), how long it is fresh (§4.2.1), its age (§4.2.3), how
//! a `304` refreshes it (§4.3.4), and the client's own conditionals
//! (RFC 9110 §13).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::directives::CacheControl;
use crate::body::Body;
use crate::config::CachePolicy;

/// Entries that carry validators stay this long past their stale windows,
/// so an expired one can still be revalidated with a `304` instead of
/// fetched whole.
pub const VALIDATOR_GRACE: Duration = Duration::from_secs(300);

/// Why a response was not stored (the `detail` of `Cache-Status`).
pub type NotStored = &'static str;

/// What the response's headers and the policy allow, for a storable one.
#[derive(Debug, Clone)]
pub struct Freshness {
    /// The freshness lifetime.
    pub fresh_for: Duration,
    /// How long past it the entry may be served while refreshing.
    pub stale_while_revalidate: Duration,
    /// How long past it the entry may be served while the upstream fails.
    pub stale_if_error: Duration,
    /// Never served stale (`must-revalidate`, `proxy-revalidate`).
    pub must_revalidate: bool,
    /// Revalidated on every use (`no-cache`).
    pub no_cache: bool,
}

/// Whether a response may be stored and, if so, for how long it is fresh.
/// `credentials`: the request carried `Authorization` or a plugin
/// identified a consumer.
pub fn storable(
    status: StatusCode,
    headers: &HeaderMap,
    credentials: bool,
    policy: &CachePolicy,
) -> Result<Freshness, NotStored> {
    if status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return Err("status");
    }
    let cc = CacheControl::parse(headers);
    if cc.no_store {
        return Err("no-store");
    }
    if cc.private {
        return Err("private");
    }
    if vary_names(headers).is_none() {
        return Err("vary-star");
    }
    if headers.contains_key(header::SET_COOKIE) && !policy.store_set_cookie {
        return Err("set-cookie");
    }
    // RFC 9111 §3.5: an answer to a request with credentials is shared only
    // when the upstream says so, or when the key keeps consumers apart.
    if credentials
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
        && !policy.keyed_by_consumer()
    {
        return Err("authorization");
    }
    let explicit = cc.s_maxage.or(cc.max_age).or_else(|| expires(headers));
    let fresh_for = match explicit {
        Some(d) => d,
        None => match policy.default_freshness(status) {
            Some(d) => d,
            None if cc.no_cache && has_validators(headers) => Duration::ZERO,
            None => return Err("no-freshness"),
        },
    };
    let stale_while_revalidate = cc
        .stale_while_revalidate
        .unwrap_or(policy.stale_while_revalidate);
    let stale_if_error = cc.stale_if_error.unwrap_or(policy.stale_if_error);
    if fresh_for.is_zero() && stale_if_error.is_zero() && !has_validators(headers) {
        return Err("no-freshness");
    }
    Ok(Freshness {
        fresh_for,
        stale_while_revalidate,
        stale_if_error,
        must_revalidate: cc.must_revalidate,
        no_cache: cc.no_cache,
    })
}

/// `Expires` minus `Date` (or now); an unparsable `Expires` is in the past.
fn expires(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::EXPIRES)?;
    let Some(at) = http_date(Some(v)) else {
        return Some(Duration::ZERO);
    };
    let date = http_date(headers.get(header::DATE)).unwrap_or_else(SystemTime::now);
    Some(at.duration_since(date).unwrap_or(Duration::ZERO))
}

fn http_date(v: Option<&HeaderValue>) -> Option<SystemTime> {
    httpdate::parse_http_date(v?.to_str().ok()?).ok()
}

fn has_validators(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED)
}

/// The header names a response's `Vary` lists, lower-cased; `None` for
/// `*` (or a name that is not one): no request can be matched to it.
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut out = Vec::new();
    for v in headers.get_all(header::VARY) {
        for name in v.to_str().ok()?.split(',').map(str::trim) {
            if name.is_empty() {
                continue;
            }
            if name == "*" {
                return None;
            }
            let n = HeaderName::from_bytes(name.as_bytes()).ok()?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    Some(out)
}

/// A stored response.
#[derive(Debug)]
pub struct Object {
    /// The status.
    pub status: StatusCode,
    /// Headers as stored: no hop-by-hop, no `Age`, no `Set-Cookie`.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// How long it stays fresh, and the stale windows.
    pub freshness: Freshness,
    /// The headers its `Vary` named (empty: none).
    pub vary: Arc<[HeaderName]>,
    stored_at: Instant,
    initial_age: Duration,
}

/// Where an object stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Fresh: served as it is.
    Fresh,
    /// Stale, but within `stale-while-revalidate`.
    StaleWhileRevalidate,
    /// Stale: revalidate (or serve under `stale-if-error` if that fails).
    Stale,
}

impl Object {
    /// The object for a response received now to a request sent at
    /// `sent`; `headers` as the upstream sent them.
    pub fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        freshness: Freshness,
        sent: Instant,
    ) -> Self {
        let now = Instant::now();
        let initial_age = initial_age(&headers, now.duration_since(sent));
        headers.remove(header::AGE);
        headers.remove(header::SET_COOKIE);
        let vary = vary_names(&headers).unwrap_or_default().into();
        Self {
            status,
            headers,
            body,
            freshness,
            vary,
            stored_at: now,
            initial_age,
        }
    }

    /// Its current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// Seconds of freshness left, negative once stale (`Cache-Status` ttl).
    pub fn ttl(&self, now: Instant) -> i64 {
        let age = self.age(now).as_secs() as i64;
        self.freshness.fresh_for.as_secs() as i64 - age
    }

    /// Fresh, within `stale-while-revalidate`, or stale; `max_age` is the
    /// client's own limit when honoured.
    pub fn state(&self, now: Instant, max_age: Option<Duration>) -> State {
        let age = self.age(now);
        let f = &self.freshness;
        let fresh = age < f.fresh_for && !f.no_cache && max_age.is_none_or(|m| age <= m);
        if fresh {
            return State::Fresh;
        }
        let stale_by = age.saturating_sub(f.fresh_for);
        let swr = !f.must_revalidate && !f.no_cache && max_age.is_none();
        if swr && age >= f.fresh_for && stale_by < f.stale_while_revalidate {
            return State::StaleWhileRevalidate;
        }
        State::Stale
    }

    /// Whether it may stand in for a failed upstream (`stale-if-error`).
    pub fn usable_on_error(&self, now: Instant) -> bool {
        let f = &self.freshness;
        let stale_by = self.age(now).saturating_sub(f.fresh_for);
        !f.must_revalidate && stale_by < f.stale_if_error
    }

    /// How long the store keeps it: fresh time left plus the longest stale
    /// window, and [`VALIDATOR_GRACE`] more when it can be revalidated.
    pub fn keep_for(&self) -> Duration {
        let f = &self.freshness;
        let fresh_left = f.fresh_for.saturating_sub(self.initial_age);
        let mut stale = f.stale_while_revalidate.max(f.stale_if_error);
        if let (Some(_), _) | (_, Some(_)) = self.validators() {
            stale = stale.max(VALIDATOR_GRACE);
        }
        fresh_left + stale
    }

    /// Its `ETag` and `Last-Modified`, for a conditional request upstream.
    pub fn validators(&self) -> (Option<&HeaderValue>, Option<&HeaderValue>) {
        (
            self.headers.get(header::ETAG),
            self.headers.get(header::LAST_MODIFIED),
        )
    }

    /// Bytes it holds, for the store's bound.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + std::mem::size_of::<Self>()
    }

    /// The object after a `304` to a revalidation sent at `sent`: its
    /// headers updated by the 304's (but the body's framing, RFC 9111
    /// §3.2), freshness worked out again. `Err` when the updated headers no
    /// longer allow storing.
    pub fn refreshed(
        &self,
        not_modified: &HeaderMap,
        sent: Instant,
        credentials: bool,
        policy: &CachePolicy,
    ) -> Result<Self, NotStored> {
        let mut headers = self.headers.clone();
        for name in not_modified.keys() {
            if matches!(
                *name,
                header::CONTENT_LENGTH | header::CONTENT_ENCODING | header::TRANSFER_ENCODING
            ) || name.as_str() == "content-range"
            {
                continue;
            }
            headers.remove(name);
            for v in not_modified.get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        let freshness = storable(self.status, &headers, credentials, policy)?;
        Ok(Self::new(
            self.status,
            headers,
            self.body.clone(),
            freshness,
            sent,
        ))
    }

    /// The response a client gets from it: the stored head with `Age`, the
    /// body (none for `HEAD`).
    pub fn response(&self, now: Instant, head_only: bool) -> Response<Body> {
        let mut resp = Response::new(if head_only {
            Body::empty()
        } else {
            Body::full(self.body.clone())
        });
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers.clone();
        resp.headers_mut()
            .insert(header::AGE, self.age(now).as_secs().into());
        resp
    }

    /// Whether the client's `If-None-Match` (or, without one,
    /// `If-Modified-Since`) says it holds this representation already.
    pub fn not_modified_for(&self, request: &HeaderMap) -> bool {
        if self.status != StatusCode::OK {
            return false;
        }
        if let Some(inm) = request.get(header::IF_NONE_MATCH) {
            let Some(etag) = self.headers.get(header::ETAG) else {
                return false;
            };
            return etag_matches(inm, etag);
        }
        let since = http_date(request.get(header::IF_MODIFIED_SINCE));
        let modified = http_date(self.headers.get(header::LAST_MODIFIED));
        matches!((since, modified), (Some(s), Some(m)) if m <= s)
    }

    /// The `304` for a client whose validators match (RFC 9110 §15.4.5: the
    /// headers a `200` would have carried that describe it).
    pub fn not_modified(&self, now: Instant) -> Response<Body> {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        for name in [
            header::CACHE_CONTROL,
            header::CONTENT_LOCATION,
            header::DATE,
            header::ETAG,
            header::EXPIRES,
            header::LAST_MODIFIED,
            header::VARY,
        ] {
            for v in self.headers.get_all(&name) {
                resp.headers_mut().append(name.clone(), v.clone());
            }
        }
        resp.headers_mut()
            .insert(header::AGE, self.age(now).as_secs().into());
        resp
    }
}

/// `corrected_initial_age` (RFC 9111 §4.2.3) for a response that took
/// `delay` to arrive.
fn initial_age(headers: &HeaderMap, delay: Duration) -> Duration {
    let age_value = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let apparent = http_date(headers.get(header::DATE))
        .and_then(|d| SystemTime::now().duration_since(d).ok())
        .unwrap_or(Duration::ZERO);
    apparent.max(age_value + delay)
}

/// Weak comparison (RFC 9110 §8.8.3.2) of an `If-None-Match` list with an
/// entity tag; `*` matches any.
fn etag_matches(list: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let ours = weak(etag);
    list.split(',').any(|t| t.trim() == "*" || weak(t) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn check(status: u16, pairs: &[(&str, &str)], creds: bool) -> Result<Freshness, NotStored> {
        let s = StatusCode::from_u16(status).unwrap();
        storable(s, &headers(pairs), creds, &CachePolicy::default())
    }

    #[test]
    fn what_a_shared_cache_must_not_store() {
        assert_eq!(
            check(200, &[("cache-control", "no-store, max-age=60")], false).unwrap_err(),
            "no-store"
        );
        assert_eq!(
            check(200, &[("cache-control", "private, max-age=60")], false).unwrap_err(),
            "private"
        );
        assert_eq!(
            check(
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept, *")],
                false
            )
            .unwrap_err(),
            "vary-star"
        );
        assert_eq!(
            check(
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
                false
            )
            .unwrap_err(),
            "set-cookie"
        );
        assert_eq!(
            check(206, &[("cache-control", "max-age=60")], false).unwrap_err(),
            "status"
        );
        assert_eq!(check(200, &[], false).unwrap_err(), "no-freshness");
        assert_eq!(
            check(200, &[("cache-control", "max-age=60")], true).unwrap_err(),
            "authorization"
        );
    }

    #[test]
    fn credentials_are_shared_only_when_the_upstream_or_the_key_allows() {
        assert!(check(200, &[("cache-control", "public, max-age=60")], true).is_ok());
        assert!(check(200, &[("cache-control", "s-maxage=60")], true).is_ok());
        let policy = CachePolicy {
            vary_by: vec![crate::config::VaryBy::Attribute("consumer".into())],
            ..CachePolicy::default()
        };
        let h = headers(&[("cache-control", "max-age=60")]);
        assert!(storable(StatusCode::OK, &h, true, &policy).is_ok());
    }

    #[test]
    fn freshness_prefers_s_maxage_then_max_age_then_expires_then_the_policy() {
        let f = check(200, &[("cache-control", "max-age=10, s-maxage=20")], false).unwrap();
        assert_eq!(f.fresh_for, Duration::from_secs(20));
        let date = httpdate::fmt_http_date(SystemTime::now());
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        let f = check(200, &[("date", &date), ("expires", &later)], false).unwrap();
        assert!(f.fresh_for >= Duration::from_secs(99));
        // An unparsable Expires is in the past: with nothing else, not stored.
        assert_eq!(
            check(200, &[("expires", "0")], false).unwrap_err(),
            "no-freshness"
        );
        let policy = CachePolicy {
            default_ttl: Some(Duration::from_secs(7)),
            ..CachePolicy::default()
        };
        let f = storable(StatusCode::OK, &HeaderMap::new(), false, &policy).unwrap();
        assert_eq!(f.fresh_for, Duration::from_secs(7));
        assert!(storable(StatusCode::BAD_GATEWAY, &HeaderMap::new(), false, &policy).is_err());
    }

    fn object(pairs: &[(&str, &str)]) -> Object {
        let h = headers(pairs);
        let f = storable(StatusCode::OK, &h, false, &CachePolicy::default()).unwrap();
        Object::new(
            StatusCode::OK,
            h,
            Bytes::from_static(b"body"),
            f,
            Instant::now(),
        )
    }

    #[test]
    fn age_counts_the_upstreams_age_and_the_time_stored() {
        let o = object(&[("cache-control", "max-age=60"), ("age", "50")]);
        let now = Instant::now();
        assert_eq!(o.age(now).as_secs(), 50);
        assert_eq!(o.state(now, None), State::Fresh);
        assert_eq!(o.state(now + Duration::from_secs(11), None), State::Stale);
        assert!(!o.headers.contains_key(header::AGE));
        // The client's max-age makes it stale sooner.
        assert_eq!(o.state(now, Some(Duration::from_secs(10))), State::Stale);
    }

    #[test]
    fn stale_windows_end_and_must_revalidate_closes_them() {
        let o = object(&[(
            "cache-control",
            "max-age=1, stale-while-revalidate=5, stale-if-error=20",
        )]);
        let t = Instant::now() + Duration::from_secs(2);
        assert_eq!(o.state(t, None), State::StaleWhileRevalidate);
        assert!(o.usable_on_error(t));
        let late = Instant::now() + Duration::from_secs(8);
        assert_eq!(o.state(late, None), State::Stale);
        assert!(o.usable_on_error(late));
        assert!(!o.usable_on_error(Instant::now() + Duration::from_secs(30)));
        let strict = object(&[(
            "cache-control",
            "max-age=1, must-revalidate, stale-if-error=20",
        )]);
        assert!(!strict.usable_on_error(t));
    }

    #[test]
    fn client_validators_match_weakly_and_if_none_match_wins() {
        let o = object(&[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(o.not_modified_for(&headers(&[("if-none-match", "W/\"v1\"")])));
        assert!(o.not_modified_for(&headers(&[("if-none-match", "\"x\", \"v1\"")])));
        assert!(o.not_modified_for(&headers(&[("if-none-match", "*")])));
        assert!(!o.not_modified_for(&headers(&[("if-none-match", "\"v2\"")])));
        let ims = [("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")];
        assert!(o.not_modified_for(&headers(&ims)));
        let older = [("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")];
        assert!(!o.not_modified_for(&headers(&older)));
        // If-None-Match present and not matching: If-Modified-Since is ignored.
        let both = [("if-none-match", "\"v2\""), ims[0]];
        assert!(!o.not_modified_for(&headers(&both)));
        let r = o.not_modified(Instant::now());
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[header::ETAG], "\"v1\"");
    }

    #[test]
    fn a_304_updates_the_headers_but_not_the_framing() {
        let o = object(&[
            ("cache-control", "max-age=1"),
            ("etag", "\"v1\""),
            ("content-length", "4"),
            ("x-a", "old"),
        ]);
        let update = headers(&[
            ("cache-control", "max-age=100"),
            ("x-a", "new"),
            ("content-length", "0"),
        ]);
        let r = o
            .refreshed(&update, Instant::now(), false, &CachePolicy::default())
            .unwrap();
        assert_eq!(r.freshness.fresh_for, Duration::from_secs(100));
        assert_eq!(r.headers["x-a"], "new");
        assert_eq!(r.headers[header::CONTENT_LENGTH], "4");
        assert_eq!(r.body, o.body);
        let gone = headers(&[("cache-control", "no-store")]);
        assert!(
            o.refreshed(&gone, Instant::now(), false, &CachePolicy::default())
                .is_err()
        );
    }
}
