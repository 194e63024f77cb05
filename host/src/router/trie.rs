//! A path trie: one node per segment, static children in a hash map, one `{param}`
//! child, and `*` tails. Lookup walks the path once, backtracking only across the
//! (at most three) kinds of child at each depth.

use std::collections::HashMap;

use super::conditions::indistinguishable;
use super::{Params, RouteMatch};
use crate::config::{ConfigError, PathPattern, RouteConfig, Segment};

#[derive(Debug, Default)]
struct Node {
    statics: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// Routes whose pattern ends exactly here, best first.
    exact: Vec<u32>,
    /// Prefix routes (`/*` tail) rooted here, best first.
    tail: Vec<u32>,
}

/// The trie for one host (or for routes without hosts).
#[derive(Debug, Default)]
pub struct Trie {
    root: Node,
}

impl Trie {
    /// Adds route `i`; reports a duplicate when a route with the same pattern shape,
    /// priority, methods and headers is already there.
    pub fn insert(
        &mut self,
        i: usize,
        r: &RouteConfig,
        pattern: &PathPattern,
        all: &[RouteConfig],
        errors: &mut Vec<ConfigError>,
    ) {
        let mut node = &mut self.root;
        for seg in &pattern.segments {
            node = match seg {
                Segment::Static(s) => node.statics.entry(s.as_str().into()).or_default(),
                Segment::Param(_) => node.param.get_or_insert_with(Box::default),
            };
        }
        let list = if pattern.tail.is_some() {
            &mut node.tail
        } else {
            &mut node.exact
        };
        for &j in list.iter() {
            let other = &all[j as usize];
            if indistinguishable(r, other) {
                errors.push(ConfigError::new(
                    format!("routes[{i}]"),
                    format!(
                        "route \"{}\" duplicates route \"{}\" (routes[{j}]): same host, path `{}`, methods, headers, query and priority",
                        r.id, other.id, pattern.raw
                    ),
                ));
            }
        }
        list.push(i as u32);
        // Best first: higher priority, then earlier in the config.
        list.sort_by_key(|&j| (std::cmp::Reverse(all[j as usize].priority), j));
    }

    /// Finds the most specific route for `path` that `accept` allows.
    pub fn find(&self, path: &str, accept: &dyn Fn(u32) -> bool) -> Option<RouteMatch> {
        let body = path.strip_prefix('/')?;
        let mut params = Vec::new();
        let route = walk(
            &self.root,
            path,
            Some(path.len() - body.len()),
            accept,
            &mut params,
        )?;
        Some(RouteMatch {
            route: route as usize,
            params: Params(params),
        })
    }
}

/// `pos` is the start of the next unconsumed segment, `None` once all are consumed.
fn walk(
    node: &Node,
    path: &str,
    pos: Option<usize>,
    accept: &dyn Fn(u32) -> bool,
    params: &mut Vec<(u32, u32)>,
) -> Option<u32> {
    let Some(start) = pos else {
        if let Some(&r) = node.exact.iter().find(|&&r| accept(r)) {
            return Some(r);
        }
        let end = path.len() as u32;
        return take_tail(node, (end, end), accept, params);
    };
    let rest = &path[start..];
    let (seg, next) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(start + i + 1)),
        None => (rest, None),
    };
    if let Some(child) = node.statics.get(seg)
        && let Some(r) = walk(child, path, next, accept, params)
    {
        return Some(r);
    }
    if let Some(child) = &node.param
        && !seg.is_empty()
    {
        params.push((start as u32, (start + seg.len()) as u32));
        if let Some(r) = walk(child, path, next, accept, params) {
            return Some(r);
        }
        params.pop();
    }
    take_tail(node, (start as u32, path.len() as u32), accept, params)
}

fn take_tail(
    node: &Node,
    rest: (u32, u32),
    accept: &dyn Fn(u32) -> bool,
    params: &mut Vec<(u32, u32)>,
) -> Option<u32> {
    let &r = node.tail.iter().find(|&&r| accept(r))?;
    params.push(rest);
    Some(r)
}
