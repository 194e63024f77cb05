//! What a route requires once its host and path matched: methods, headers
//! and query parameters. Checked only for candidate routes, so a table of
//! thousands of routes pays for the conditions of a handful.

use http::{HeaderName, Method};

use super::RequestKey;
use crate::config::{RouteConfig, ValueMatch};

/// One route's conditions.
#[derive(Debug)]
pub(super) struct Conditions {
    methods: Option<Vec<Method>>,
    headers: Vec<(HeaderName, ValueMatch)>,
    query: Vec<(String, ValueMatch)>,
}

impl Conditions {
    pub(super) fn new(r: &RouteConfig) -> Self {
        Self {
            methods: r.methods.clone(),
            headers: r.headers.clone(),
            query: r.query.clone(),
        }
    }

    pub(super) fn accepts(&self, key: &RequestKey<'_>) -> bool {
        let method_ok = self
            .methods
            .as_ref()
            .is_none_or(|ms| ms.contains(key.method));
        method_ok
            && self
                .headers
                .iter()
                .all(|(n, m)| m.accepts(key.headers.get_all(n).iter().map(|v| v.as_bytes())))
            && self.query.iter().all(|(n, m)| {
                let q = key.query.unwrap_or("").as_bytes();
                // Decoded the WHATWG way (`+` is a space, escapes undone), so
                // `?v=%32` and `?v=2` match alike; a bare `?beta` is present.
                let values = form_urlencoded::parse(q)
                    .filter(|(k, _)| k == n)
                    .map(|(_, v)| v);
                m.accepts(values.map(Decoded))
            })
    }
}

/// A decoded query value, borrowed unless it had escapes.
struct Decoded<'a>(std::borrow::Cow<'a, str>);

impl AsRef<[u8]> for Decoded<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// True when no request could tell `a` and `b` apart once their paths
/// matched alike: same priority, methods, headers and query conditions.
/// Overlapping but different conditions are legitimate (config order
/// decides).
pub(super) fn indistinguishable(a: &RouteConfig, b: &RouteConfig) -> bool {
    fn same_set<T: PartialEq>(x: &[T], y: &[T]) -> bool {
        x.len() == y.len() && x.iter().all(|e| y.contains(e))
    }
    let same_methods = match (&a.methods, &b.methods) {
        (Some(x), Some(y)) => same_set(x, y),
        (None, None) => true,
        _ => false,
    };
    a.priority == b.priority
        && same_methods
        && same_set(&a.headers, &b.headers)
        && same_set(&a.query, &b.query)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn key<'a>(query: Option<&'a str>, headers: &'a HeaderMap) -> RequestKey<'a> {
        RequestKey {
            host: "",
            method: &Method::GET,
            path: "/",
            query,
            headers,
        }
    }

    #[test]
    fn query_values_are_decoded_and_presence_counts_bare_names() {
        let c = Conditions {
            methods: None,
            headers: Vec::new(),
            query: vec![
                ("version".into(), ValueMatch::Exact("2 b".into())),
                ("beta".into(), ValueMatch::Present),
                ("debug".into(), ValueMatch::Absent),
            ],
        };
        let h = HeaderMap::new();
        assert!(c.accepts(&key(Some("version=2+b&beta"), &h)));
        assert!(c.accepts(&key(Some("beta=&v%65rsion=2%20b"), &h)));
        assert!(!c.accepts(&key(Some("version=2+b"), &h)), "beta missing");
        assert!(
            !c.accepts(&key(Some("version=2+b&beta&debug=0"), &h)),
            "debug present"
        );
        assert!(!c.accepts(&key(None, &h)));
    }

    #[test]
    fn headers_match_any_of_their_values() {
        let c = Conditions {
            methods: Some(vec![Method::GET]),
            headers: vec![(
                HeaderName::from_static("x-v"),
                ValueMatch::Regex(regex::Regex::new("^(?:v[0-9]+)$").unwrap()),
            )],
            query: Vec::new(),
        };
        let mut h = HeaderMap::new();
        assert!(!c.accepts(&key(None, &h)));
        h.append("x-v", "beta".parse().unwrap());
        assert!(!c.accepts(&key(None, &h)));
        h.append("x-v", "v3".parse().unwrap());
        assert!(c.accepts(&key(None, &h)));
    }
}
