//! Cache keys: route, service, canonical host, the path and normalised query
//! the upstream gets, and the operator's `vary_by` values. An attribute or
//! header that is absent is a value of its own, never equal to an empty one.

use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use crate::config::{CachePolicy, VaryBy};
use crate::exchange::PluginView;

/// One cache key. `variant` holds the values of the headers a response's
/// `Vary` named; the primary key (no variant) then holds a marker with
/// those names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The route's id.
    pub route: Arc<str>,
    /// The canonical path the upstream gets.
    pub path: Box<str>,
    /// Everything else of the primary key: service, host, query, `vary_by`.
    pub rest: Box<str>,
    /// The `Vary` headers' values, for a variant of the primary key.
    pub variant: Option<Box<str>>,
}

impl Key {
    /// The primary key of a request on `route` to `service`.
    pub fn primary(
        route: &Arc<str>,
        service: &str,
        policy: &CachePolicy,
        view: &PluginView,
    ) -> Self {
        let uri = &view.req.uri;
        let mut rest = String::with_capacity(64);
        rest.push_str(service);
        rest.push('\n');
        rest.push_str(&view.req.host);
        rest.push('\n');
        normalised_query(uri.query().unwrap_or(""), &policy.ignore_query, &mut rest);
        for v in &policy.vary_by {
            rest.push('\n');
            match v {
                VaryBy::Attribute(name) => {
                    rest.push_str("attr.");
                    rest.push_str(name);
                    push_value(&mut rest, view.attribute(name));
                }
                VaryBy::Header(name) => {
                    rest.push_str("header.");
                    rest.push_str(name.as_str());
                    let joined = joined(&view.req.headers, name);
                    push_value(&mut rest, joined.as_deref());
                }
            }
        }
        Self {
            route: route.clone(),
            path: uri.path().into(),
            rest: rest.into(),
            variant: None,
        }
    }

    /// The key of this request's variant, for a response that named `vary`.
    pub fn variant(&self, vary: &[HeaderName], headers: &HeaderMap) -> Self {
        let mut s = String::new();
        for name in vary {
            s.push_str(name.as_str());
            let joined = joined(headers, name);
            push_value(&mut s, joined.as_deref());
            s.push('\n');
        }
        Self {
            variant: Some(s.into()),
            ..self.clone()
        }
    }

    /// The same key without its variant.
    pub fn without_variant(&self) -> Self {
        Self {
            variant: None,
            ..self.clone()
        }
    }

    /// The canonical host it was made for.
    pub fn host(&self) -> &str {
        self.rest.split('\n').nth(1).unwrap_or("")
    }

    /// Its normalised query.
    pub fn query(&self) -> &str {
        self.rest.split('\n').nth(2).unwrap_or("")
    }

    /// Bytes it holds, for the store's bound.
    pub fn size(&self) -> usize {
        self.route.len()
            + self.path.len()
            + self.rest.len()
            + self.variant.as_ref().map_or(0, |v| v.len())
            + std::mem::size_of::<Self>()
    }
}

/// `=<length>:value`, or a NUL for a value that is not there. The length
/// keeps a value holding separators from posing as the next part.
fn push_value(out: &mut String, v: Option<&str>) {
    use std::fmt::Write as _;
    match v {
        Some(v) => {
            let _ = write!(out, "={}:", v.len());
            out.push_str(v);
        }
        None => out.push('\0'),
    }
}

/// Every value of `name`, comma-joined with whitespace trimmed (how a
/// `Vary` comparison normalises them, RFC 9111 §4.1).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = String::from_utf8_lossy(v.as_bytes());
        let o = out.get_or_insert_with(String::new);
        if !o.is_empty() {
            o.push(',');
        }
        o.push_str(s.trim());
    }
    out
}

/// A query with its parameters sorted as keys hold them (purges compare
/// with this).
pub fn sorted_query(query: &str) -> String {
    let mut out = String::new();
    normalised_query(query, &[], &mut out);
    out
}

/// The query's parameters sorted by name (parameters of one name keep their
/// order, which may matter to the upstream), empty ones and the ignored
/// names dropped.
fn normalised_query(query: &str, ignore: &[String], out: &mut String) {
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            !ignore.iter().any(|i| i == name)
        })
        .collect();
    params.sort_by_key(|p| p.split('=').next().unwrap_or(""));
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str, ignore: &[&str]) -> String {
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        let mut out = String::new();
        normalised_query(q, &ignore, &mut out);
        out
    }

    #[test]
    fn queries_differing_only_in_order_or_ignored_names_share_a_key() {
        assert_eq!(query("b=2&a=1", &[]), "a=1&b=2");
        assert_eq!(query("a=1&&utm_source=x&b=2", &["utm_source"]), "a=1&b=2");
        // Repeated names keep their order: `a=2&a=1` may mean something else.
        assert_eq!(query("a=2&b=0&a=1", &[]), "a=2&a=1&b=0");
        assert_ne!(query("a=1&a=2", &[]), query("a=2&a=1", &[]));
    }

    fn view(attrs: &[(&str, &str)]) -> PluginView {
        let mut v = PluginView::blank();
        v.req.uri = "/p?x=1".parse().unwrap();
        v.req.host = "api.test".into();
        v.attributes = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v
    }

    #[test]
    fn an_absent_consumer_never_shares_a_key_with_an_empty_one() {
        let policy = CachePolicy {
            vary_by: vec![VaryBy::Attribute("consumer".into())],
            ..CachePolicy::default()
        };
        let route: Arc<str> = "r".into();
        let k = |attrs| Key::primary(&route, "svc", &policy, &view(attrs));
        assert_ne!(k(&[]), k(&[("consumer", "")]));
        assert_ne!(k(&[("consumer", "alice")]), k(&[("consumer", "bob")]));
        assert_eq!(k(&[("consumer", "alice")]), k(&[("consumer", "alice")]));
        // Without vary_by, the consumer is not part of the key.
        let plain = Key::primary(
            &route,
            "svc",
            &CachePolicy::default(),
            &view(&[("consumer", "a")]),
        );
        let other = Key::primary(
            &route,
            "svc",
            &CachePolicy::default(),
            &view(&[("consumer", "b")]),
        );
        assert_eq!(plain, other);
    }

    #[test]
    fn variants_differ_by_the_named_headers_only() {
        let route: Arc<str> = "r".into();
        let base = Key::primary(&route, "svc", &CachePolicy::default(), &view(&[]));
        let mut a = HeaderMap::new();
        a.insert("accept-encoding", "gzip".parse().unwrap());
        a.insert("x-other", "1".parse().unwrap());
        let mut b = HeaderMap::new();
        b.insert("accept-encoding", " gzip ".parse().unwrap());
        let names = [http::header::ACCEPT_ENCODING];
        assert_eq!(base.variant(&names, &a), base.variant(&names, &b));
        assert_ne!(
            base.variant(&names, &a),
            base.variant(&names, &HeaderMap::new())
        );
        assert_eq!(base.variant(&names, &a).without_variant(), base);
    }
}
