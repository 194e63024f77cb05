//! Routing: picks the route for a request. Compiled once per snapshot into a path
//! trie per host, so lookup cost depends on the path's depth, not on the number
//! of routes; `path_regex` routes of a host are one [`regex::RegexSet`] tried
//! after its trie. Second stage of the flow, after the listener.

mod conditions;
mod regexes;
mod trie;

use std::collections::HashMap;

use http::{HeaderMap, Method};

use crate::config::{ConfigError, HostPattern, PathMatch, RouteConfig};
use conditions::Conditions;
use regexes::Regexes;
use trie::Trie;

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    /// Lower-case host without port (empty when the request named none).
    pub host: &'a str,
    /// The request method.
    pub method: &'a Method,
    /// The path, without query.
    pub path: &'a str,
    /// The raw query string (without `?`), if any.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// The result of a successful match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the route in config order.
    pub route: usize,
    /// Byte ranges in the path of the route's parameters, in pattern order.
    pub params: Params,
}

/// Path parameter values as byte ranges into the matched path (no allocation
/// unless the route has parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(u32, u32)>);

impl Params {
    /// The `i`th parameter's value in `path` (the path that was matched).
    pub fn get<'p>(&self, path: &'p str, i: usize) -> Option<&'p str> {
        self.0.get(i).map(|&(s, e)| &path[s as usize..e as usize])
    }

    /// Number of captured parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the route captured no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The routes of one host (or of every host): the trie, then the regexes.
#[derive(Debug, Default)]
struct Tier {
    trie: Trie,
    regexes: Regexes,
}

impl Tier {
    fn insert(
        &mut self,
        i: usize,
        r: &RouteConfig,
        all: &[RouteConfig],
        errors: &mut Vec<ConfigError>,
    ) {
        match &r.path {
            PathMatch::Pattern(p) => self.trie.insert(i, r, p, all, errors),
            PathMatch::Regex(_) => self.regexes.insert(i, r, all, errors),
        }
    }

    fn find(&self, key: &RequestKey<'_>, accept: &dyn Fn(u32) -> bool) -> Option<RouteMatch> {
        self.trie
            .find(key.path, accept)
            .or_else(|| self.regexes.find(key.path, accept))
    }
}

/// The compiled route table.
#[derive(Debug)]
pub struct Router {
    exact: HashMap<Box<str>, Tier>,
    wildcard: HashMap<Box<str>, Tier>,
    any: Tier,
    conditions: Vec<Conditions>,
}

impl Router {
    /// Compiles `routes`; two routes that could never be told apart are an error.
    pub fn build(routes: &[RouteConfig]) -> Result<Self, Vec<ConfigError>> {
        let mut router = Router {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: Tier::default(),
            conditions: Vec::with_capacity(routes.len()),
        };
        let mut errors = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            router.conditions.push(Conditions::new(r));
            if !r.enabled {
                // `enabled: false`: as if it were not there (it stays in the
                // config and the admin API, so turning it back on is one key).
                continue;
            }
            if r.hosts.is_empty() {
                router.any.insert(i, r, routes, &mut errors);
            }
            for (n, h) in r.hosts.iter().enumerate() {
                if r.hosts[..n].contains(h) {
                    continue;
                }
                let tier = match h {
                    HostPattern::Exact(h) => router.exact.entry(h.as_str().into()).or_default(),
                    HostPattern::Wildcard(s) => {
                        router.wildcard.entry(s.as_str().into()).or_default()
                    }
                };
                tier.insert(i, r, routes, &mut errors);
            }
        }
        let tiers = router
            .exact
            .values_mut()
            .chain(router.wildcard.values_mut());
        for tier in tiers.chain(std::iter::once(&mut router.any)) {
            tier.regexes.compile(routes, &mut errors);
        }
        if errors.is_empty() {
            Ok(router)
        } else {
            Err(errors)
        }
    }

    /// Finds the best route: exact host, then the longest `*.` suffix, then routes
    /// without hosts; within a host, static beats `{param}` beats a `*` tail
    /// beats a `path_regex`, then priority, then config order.
    pub fn match_request(&self, key: &RequestKey<'_>) -> Option<RouteMatch> {
        let accept = |i: u32| self.conditions[i as usize].accepts(key);
        if !key.host.is_empty() {
            if let Some(m) = self.exact.get(key.host).and_then(|t| t.find(key, &accept)) {
                return Some(m);
            }
            if !self.wildcard.is_empty() {
                let mut rest = key.host;
                while let Some(dot) = rest.find('.') {
                    rest = &rest[dot + 1..];
                    if let Some(m) = self.wildcard.get(rest).and_then(|t| t.find(key, &accept)) {
                        return Some(m);
                    }
                }
            }
        }
        self.any.find(key, &accept)
    }
}

/// Lower-cases a `Host` value and strips its port, allocating only when needed.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |i| &raw[..=i])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests;
