//! `Cache-Control` as RFC 9111 §5.2 defines it, read from requests and
//! responses (by the response cache and by the plugin callout cache).
//! Unknown directives are ignored, as the RFC asks; a directive given twice
//! keeps its first value; an invalid or missing number is 0, so the answer
//! counts as stale (§4.2.1 encourages that).

use std::time::Duration;

use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};

/// The directives of one message that a shared cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age=N`.
    pub max_age: Option<Duration>,
    /// `s-maxage=N` (responses): overrides `max-age` for shared caches.
    pub s_maxage: Option<Duration>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names: either way, revalidate).
    pub no_cache: bool,
    /// `private` (with or without field names: a shared cache stores neither).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate` or `proxy-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `stale-while-revalidate=N` (RFC 5861).
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error=N` (RFC 5861).
    pub stale_if_error: Option<Duration>,
    /// `only-if-cached` (requests).
    pub only_if_cached: bool,
}

impl CacheControl {
    /// The directives of every `Cache-Control` line in `headers`; a request's
    /// `Pragma: no-cache` counts as `no-cache` when it has no `Cache-Control`
    /// (RFC 9111 §5.4).
    pub fn parse(headers: &HeaderMap) -> Self {
        let values = headers.get_all(CACHE_CONTROL);
        let seen = values.iter().next().is_some();
        let mut cc = Self::from_values(values.iter().map(|v| v.as_bytes()));
        if !seen
            && headers
                .get_all(PRAGMA)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
        {
            cc.no_cache = true;
        }
        cc
    }

    /// The directives of these `Cache-Control` values (lines that are not
    /// UTF-8 are skipped).
    pub fn from_values<'a>(values: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut cc = Self::default();
        for value in values {
            let Ok(s) = std::str::from_utf8(value) else {
                continue;
            };
            for (name, arg) in directives(s) {
                cc.apply(&name, arg.as_deref());
            }
        }
        cc
    }

    fn apply(&mut self, name: &str, arg: Option<&str>) {
        let secs = || Some(arg.and_then(delta_seconds).unwrap_or(Duration::ZERO));
        match name {
            "max-age" if self.max_age.is_none() => self.max_age = secs(),
            "s-maxage" if self.s_maxage.is_none() => self.s_maxage = secs(),
            "no-store" => self.no_store = true,
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" | "proxy-revalidate" => self.must_revalidate = true,
            "stale-while-revalidate" if self.stale_while_revalidate.is_none() => {
                self.stale_while_revalidate = secs()
            }
            "stale-if-error" if self.stale_if_error.is_none() => self.stale_if_error = secs(),
            "only-if-cached" => self.only_if_cached = true,
            _ => {}
        }
    }
}

/// `delta-seconds` (RFC 9111 §1.2.2): a value past 2^31 counts as 2^31.
fn delta_seconds(s: &str) -> Option<Duration> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = s.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31);
    Some(Duration::from_secs(n))
}

/// The `name[=value]` pairs of one header line, names lower-cased, quoted
/// values unquoted; commas inside quotes do not split.
fn directives(s: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest.find([',', '=']).unwrap_or(rest.len());
        let name = rest[..end].trim().to_ascii_lowercase();
        rest = &rest[end..];
        let mut arg = None;
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut consumed = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            consumed = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                arg = Some(value);
                rest = &quoted[consumed..];
                rest = rest.find(',').map_or("", |i| &rest[i..]);
            } else {
                let end = after.find(',').unwrap_or(after.len());
                arg = Some(after[..end].trim().to_string());
                rest = &after[end..];
            }
        }
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if !name.is_empty() {
            out.push((name, arg));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cc(lines: &[&str]) -> CacheControl {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CACHE_CONTROL, HeaderValue::from_str(l).unwrap());
        }
        CacheControl::parse(&h)
    }

    #[test]
    fn reads_the_directives_a_shared_cache_needs() {
        let c = cc(&["public, max-age=60", "s-maxage=\"120\", stale-if-error=30"]);
        assert!(c.public);
        assert_eq!(c.max_age, Some(Duration::from_secs(60)));
        assert_eq!(c.s_maxage, Some(Duration::from_secs(120)));
        assert_eq!(c.stale_if_error, Some(Duration::from_secs(30)));
        assert!(!c.no_store && !c.private && !c.no_cache);
    }

    #[test]
    fn qualified_forms_and_odd_spacing_still_count() {
        let c = cc(&["private=\"set-cookie, x-a\" ,NO-CACHE=\"x\",  Proxy-Revalidate"]);
        assert!(c.private && c.no_cache && c.must_revalidate);
    }

    #[test]
    fn bad_numbers_count_as_stale_and_huge_ones_are_capped() {
        assert_eq!(cc(&["max-age=-1"]).max_age, Some(Duration::ZERO));
        assert_eq!(cc(&["max-age=abc"]).max_age, Some(Duration::ZERO));
        assert_eq!(cc(&["max-age"]).max_age, Some(Duration::ZERO));
        assert_eq!(
            cc(&["max-age=99999999999999999999999"]).max_age,
            Some(Duration::from_secs(1 << 31))
        );
        // The first of two values wins.
        assert_eq!(
            cc(&["max-age=5, max-age=500"]).max_age,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn pragma_no_cache_counts_only_without_cache_control() {
        let mut h = HeaderMap::new();
        h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(CacheControl::parse(&h).no_cache);
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert!(!CacheControl::parse(&h).no_cache);
    }
}
