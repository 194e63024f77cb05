//! The patterns of a route: host (`*.example.com`), path (`/a/{id}/*`) and
//! the rewrite template (`/v2/{id}`).

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
