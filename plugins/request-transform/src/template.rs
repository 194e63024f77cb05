//! Header and query values with placeholders, parsed once in `init`:
//! `{path.<param>}`, `{header.<name>}`, `{attr.<name>}`, `{consumer}`,
//! `{client_ip}`, `{request_id}`, `{route_id}`. `{{` and `}}` are literal braces.

use gatehouse_plugin_sdk::{Context, Request};

#[derive(Debug)]
enum Part {
    Text(String),
    PathParam(String),
    Header(String),
    Attribute(String),
    ClientIp,
    RequestId,
    RouteId,
}

/// A parsed template.
#[derive(Debug)]
pub struct Template(Vec<Part>);

impl Template {
    /// Parses `s`; an unknown placeholder or an unclosed brace is an error.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                text.push(tail.as_bytes()[0] as char);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!(
                    "`{s}`: unmatched `}}` (write `}}}}` for a literal brace)"
                ));
            }
            let Some(end) = tail.find('}') else {
                return Err(format!("`{s}`: unclosed `{{`"));
            };
            let name = &tail[1..end];
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(placeholder(name).ok_or_else(|| {
                format!("`{s}`: unknown placeholder {{{name}}} (path.<p>, header.<h>, attr.<a>, consumer, client_ip, request_id, route_id)")
            })?);
            rest = &tail[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template(parts))
    }

    /// The value for this request; missing values render as empty strings.
    pub fn render(&self, ctx: &Context, req: &Request) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::PathParam(n) => out.push_str(&ctx.path_param(n).unwrap_or_default()),
                Part::Header(h) => out.push_str(&req.header_str(h).unwrap_or_default()),
                Part::Attribute(a) => out.push_str(&ctx.attribute(a).unwrap_or_default()),
                Part::ClientIp => out.push_str(&ctx.client_ip()),
                Part::RequestId => out.push_str(&ctx.request_id()),
                Part::RouteId => out.push_str(&ctx.route_id()),
            }
        }
        out
    }
}

fn placeholder(name: &str) -> Option<Part> {
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(match name {
        "consumer" => Part::Attribute("consumer".into()),
        "client_ip" => Part::ClientIp,
        "request_id" => Part::RequestId,
        "route_id" => Part::RouteId,
        _ => {
            if let Some(p) = name.strip_prefix("path.") {
                Part::PathParam(nonempty(p)?)
            } else if let Some(h) = name.strip_prefix("header.") {
                Part::Header(nonempty(h)?)
            } else if let Some(a) = name.strip_prefix("attr.") {
                Part::Attribute(nonempty(a)?)
            } else {
                return None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_placeholders_and_literal_braces() {
        let t = Template::parse("user={consumer};order={path.id};{{x}}").unwrap();
        assert_eq!(t.0.len(), 5, "{t:?}");
        assert!(Template::parse("{nope}").is_err_and(|e| e.contains("unknown placeholder")));
        assert!(Template::parse("{consumer").is_err_and(|e| e.contains("unclosed")));
        assert!(Template::parse("a}b").is_err());
        assert!(Template::parse("{path.}").is_err());
    }
}
