//! The `path_regex` routes of one host: one [`RegexSet`] over all of them,
//! so a request pays one pass over its path however many regex routes there
//! are, then the captures of the one route that takes it.

use regex::RegexSet;

use super::conditions::indistinguishable;
use super::{Params, RouteMatch};
use crate::config::{ConfigError, PathMatch, RouteConfig};

/// Memory a host's compiled set may take; each regex is already bounded
/// (1 MiB), this bounds thousands of them together.
const SET_SIZE_LIMIT: usize = 64 << 20;

/// Regex routes, best first (priority, then config order), and their set.
#[derive(Debug, Default)]
pub(super) struct Regexes {
    routes: Vec<(u32, regex::Regex)>,
    set: Option<RegexSet>,
}

impl Regexes {
    /// Adds route `i` (its path is a regex); a route with the same regex and
    /// conditions is a duplicate.
    pub(super) fn insert(
        &mut self,
        i: usize,
        r: &RouteConfig,
        all: &[RouteConfig],
        errors: &mut Vec<ConfigError>,
    ) {
        let PathMatch::Regex(re) = &r.path else {
            return;
        };
        for (j, _) in &self.routes {
            let other = &all[*j as usize];
            if other.path == r.path && indistinguishable(r, other) {
                errors.push(ConfigError::new(
                    format!("routes[{i}]"),
                    format!(
                        "route \"{}\" duplicates route \"{}\" (routes[{j}]): same host, path_regex `{}`, methods, headers, query and priority",
                        r.id, other.id, re.source
                    ),
                ));
            }
        }
        self.routes.push((i as u32, re.regex.clone()));
    }

    /// Orders the routes and compiles their set (once, when the router is built).
    pub(super) fn compile(&mut self, all: &[RouteConfig], errors: &mut Vec<ConfigError>) {
        if self.routes.is_empty() {
            return;
        }
        self.routes
            .sort_by_key(|(j, _)| (std::cmp::Reverse(all[*j as usize].priority), *j));
        let built = regex::RegexSetBuilder::new(self.routes.iter().map(|(_, re)| re.as_str()))
            .size_limit(SET_SIZE_LIMIT)
            .build();
        match built {
            Ok(set) => self.set = Some(set),
            Err(e) => errors.push(ConfigError::new(
                "routes",
                format!("the path_regex routes of one host do not compile together: {e}"),
            )),
        }
    }

    /// The best regex route matching `path` that `accept` allows.
    pub(super) fn find(&self, path: &str, accept: &dyn Fn(u32) -> bool) -> Option<RouteMatch> {
        let set = self.set.as_ref()?;
        let hits = set.matches(path);
        let (route, re) = hits
            .iter()
            .map(|k| &self.routes[k])
            .find(|(j, _)| accept(*j))?;
        let caps = re.captures(path)?;
        // Named groups only, in order: they are the rewrite's `{name}`s.
        let params = re
            .capture_names()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(k, _)| {
                caps.get(k)
                    .map_or((0, 0), |m| (m.start() as u32, m.end() as u32))
            })
            .collect();
        Some(RouteMatch {
            route: *route as usize,
            params: Params(params),
        })
    }
}
