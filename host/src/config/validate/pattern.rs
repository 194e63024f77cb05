//! The patterns of a route: host (`*.example.com`), path (`/a/{id}/*`) and
//! the rewrite template (`/v2/{id}`).

use crate::config::PathRegex;
use crate::config::model::*;

/// Parses `*.example.com` or `api.example.com` (lower-cased, no port).
pub(super) fn parse_host_pattern(h: &str) -> Result<HostPattern, String> {
    let h = h.to_ascii_lowercase();
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    match h.strip_prefix("*.") {
        Some(suffix) if ok(suffix) => Ok(HostPattern::Wildcard(suffix.to_string())),
        None if ok(&h) => Ok(HostPattern::Exact(h)),
        _ => Err(format!("`{h}` is not a host name or `*.suffix` wildcard")),
    }
}

/// Parses a route path pattern: `/exact`, `/a/{param}/b`, `/prefix/*`, `/prefix/{*rest}`.
pub(super) fn parse_path_pattern(p: &str) -> Result<PathPattern, String> {
    let Some(body) = p.strip_prefix('/') else {
        return Err(format!("`{p}` must start with `/`"));
    };
    let mut segments = Vec::new();
    let mut tail = None;
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len() - 1;
    for (i, seg) in parts.iter().enumerate() {
        if *seg == "*" || (seg.starts_with("{*") && seg.ends_with('}')) {
            if i != last {
                return Err(format!("`{p}`: a `*` tail must be the last segment"));
            }
            let name = if *seg == "*" {
                "rest"
            } else {
                &seg[2..seg.len() - 1]
            };
            check_name(name, p)?;
            tail = Some(name.to_string());
        } else if seg.starts_with('{') && seg.ends_with('}') {
            let name = &seg[1..seg.len() - 1];
            check_name(name, p)?;
            segments.push(Segment::Param(name.to_string()));
        } else if seg.contains(['{', '}', '*']) {
            return Err(format!(
                "`{p}`: `{seg}` mixes literal text with `{{`, `}}` or `*`"
            ));
        } else {
            segments.push(Segment::Static(seg.to_string()));
        }
    }
    let pattern = PathPattern {
        raw: p.to_string(),
        segments,
        tail,
    };
    let names = pattern.param_names();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(format!("`{p}`: parameter `{n}` appears twice"));
        }
    }
    Ok(pattern)
}

fn check_name(name: &str, p: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{p}`: `{name}` is not a valid parameter name"))
    }
}

impl PathPattern {
    /// Names of `{param}` segments, then the tail's name, in order.
    pub fn param_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n) => Some(n.as_str()),
                Segment::Static(_) => None,
            })
            .collect();
        out.extend(self.tail.as_deref());
        out
    }
}

/// Largest compiled regex accepted (the `regex` crate's default is 10 MiB):
/// a route table of thousands of regexes must stay small in memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles `re` anchored at both ends, so it must match the whole value.
pub(super) fn anchored(re: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => {
                format!("`{re}`: compiles larger than {REGEX_SIZE_LIMIT} bytes")
            }
            e => format!("`{re}` is not a valid regex: {e}"),
        })
}

/// Parses `match.path_regex`: anchored, must be able to match only paths
/// (it starts with `/` or `^/`), named captures become rewrite parameters.
pub(super) fn parse_path_regex(re: &str) -> Result<PathRegex, String> {
    let body = re.strip_prefix('^').unwrap_or(re);
    let body = body
        .strip_suffix('$')
        .filter(|b| !b.ends_with('\\'))
        .unwrap_or(body);
    if !body.starts_with('/') {
        return Err(format!(
            "`{re}` must start with `/` (it is matched against the whole path)"
        ));
    }
    let regex = anchored(body)?;
    let names: Vec<String> = regex
        .capture_names()
        .flatten()
        .map(str::to_string)
        .collect();
    for n in &names {
        check_name(n, re)?;
    }
    Ok(PathRegex {
        regex,
        source: re.to_string(),
        names,
    })
}

pub(super) fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    if !t.starts_with('/') {
        return Err(format!("`{t}` must start with `/`"));
    }
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("`{t}`: unclosed `{{`"))?
            + open;
        let name = rest[open + 1..close].trim_start_matches('*');
        check_name(name, t)?;
        parts.push(TemplatePart::Param(name.to_string()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let p = parse_path_pattern("/api/orders/{id}").unwrap();
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.tail, None);
        let p = parse_path_pattern("/api/*").unwrap();
        assert_eq!(p.tail.as_deref(), Some("rest"));
        let p = parse_path_pattern("/files/{*path}").unwrap();
        assert_eq!(p.param_names(), vec!["path"]);
        assert!(parse_path_pattern("api").is_err());
        assert!(parse_path_pattern("/a/*/b").is_err());
        assert!(
            parse_path_pattern("/a/{x}/{x}")
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse_path_pattern("/a/x{y}").is_err());
    }

    #[test]
    fn path_regexes() {
        let r = parse_path_regex(r"^/v(?P<ver>[0-9]+)/items/(?<id>\d+)$").unwrap();
        assert_eq!(r.names, ["ver", "id"]);
        assert!(r.regex.is_match("/v2/items/7"));
        assert!(!r.regex.is_match("/v2/items/7/x"), "anchored at the end");
        assert!(!r.regex.is_match("/x/v2/items/7"), "anchored at the start");
        let r = parse_path_regex("/a|/b").unwrap();
        assert!(
            r.regex.is_match("/b") && !r.regex.is_match("/bb"),
            "alternation stays inside the anchors"
        );
        assert!(
            parse_path_regex("v1/.*")
                .unwrap_err()
                .contains("must start with `/`")
        );
        assert!(
            parse_path_regex("/(")
                .unwrap_err()
                .contains("not a valid regex")
        );
        assert!(parse_path_regex("/(?P<a-b>x)").is_err());
        assert!(
            parse_path_regex("/x{1000}{1000}")
                .unwrap_err()
                .contains("larger than")
        );
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            parse_host_pattern("API.example.com"),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            parse_host_pattern("*.example.com"),
            Ok(HostPattern::Wildcard("example.com".into()))
        );
        assert!(parse_host_pattern("a*.b").is_err());
    }

    #[test]
    fn templates() {
        let t = parse_template("/v1/orders/{order_id}/x").unwrap();
        assert_eq!(
            t,
            vec![
                TemplatePart::Literal("/v1/orders/".into()),
                TemplatePart::Param("order_id".into()),
                TemplatePart::Literal("/x".into())
            ]
        );
    }
}
