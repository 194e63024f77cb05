//! `aggregate`: answers a route by calling several services at once (one
//! `send-all`, so the wait is about the slowest part) and merging their JSON
//! under configured keys, the backend-for-frontend pattern of KrakenD and
//! Kong's request-callout. Paths are templated from path parameters and
//! attributes (`/users/{id}`, `/recs/{consumer}`), values percent-encoded.
//!
//! A part that fails (no answer, timeout, non-2xx, not JSON):
//! - `required` (the default): the whole answer is 502, or 504 for a
//!   timeout, naming the part;
//! - optional: its key is `null`, and `x-aggregate-partial` lists the parts
//!   that degraded.

use gatehouse_plugin_sdk::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The parts, merged in this order.
    parts: Vec<Part>,
    /// Client request headers sent with every part (e.g. `authorization`).
    #[serde(default)]
    forward_headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Part {
    /// Where the part's JSON goes in the answer.
    key: String,
    /// The service (granted in the attachment's `callouts`).
    service: String,
    /// Path and query, with `{name}` taken from a path parameter or, failing
    /// that, an attribute.
    path: String,
    /// A failing required part fails the answer; an optional one is `null`.
    #[serde(default = "yes")]
    required: bool,
    /// A bound shorter than the attachment's `callout_timeout`.
    timeout_ms: Option<u32>,
}

fn yes() -> bool {
    true
}

struct Aggregate {
    c: Config,
}

/// Why a part gave no JSON.
enum Failed {
    Timeout,
    Other(String),
}

impl Plugin for Aggregate {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        if c.parts.is_empty() {
            return Err("`parts` must list at least one part".into());
        }
        for (i, p) in c.parts.iter().enumerate() {
            if !p.path.starts_with('/') {
                return Err(format!("parts[{i}].path must start with `/`"));
            }
            if c.parts[..i].iter().any(|q| q.key == p.key) {
                return Err(format!("parts[{i}].key `{}` is used twice", p.key));
            }
            template_names(&p.path).map_err(|e| format!("parts[{i}].path: {e}"))?;
        }
        Ok(Self { c })
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        let forwarded: Vec<(String, Vec<u8>)> = self
            .c
            .forward_headers
            .iter()
            .filter_map(|h| req.header(h).map(|v| (h.clone(), v)))
            .collect();
        let mut calls = Vec::with_capacity(self.c.parts.len());
        let mut unresolved = Vec::new();
        for (i, p) in self.c.parts.iter().enumerate() {
            match fill(&p.path, ctx) {
                Ok(path) => {
                    let mut call = callout::Request::get(&p.service, &path)
                        .header("accept", "application/json");
                    for (name, value) in &forwarded {
                        call = call.header(name, value);
                    }
                    if let Some(ms) = p.timeout_ms {
                        call = call.timeout_ms(ms);
                    }
                    calls.push((i, call));
                }
                Err(name) => unresolved.push((i, name)),
            }
        }
        let requests: Vec<callout::Request> = calls.iter().map(|(_, c)| c.clone()).collect();
        let answers = callout::send_all(&requests);
        let mut results: Vec<Option<Result<Value, Failed>>> =
            self.c.parts.iter().map(|_| None).collect();
        for ((i, _), answer) in calls.iter().zip(answers) {
            results[*i] = Some(json_of(answer));
        }
        for (i, name) in unresolved {
            results[i] = Some(Err(Failed::Other(format!("no value for {{{name}}}"))));
        }
        self.merge(ctx, results)
    }
}

impl Aggregate {
    fn merge(&self, ctx: &Context, results: Vec<Option<Result<Value, Failed>>>) -> Action {
        let mut out = Map::new();
        let mut partial = Vec::new();
        for (p, result) in self.c.parts.iter().zip(results) {
            match result.unwrap_or(Err(Failed::Other("not sent".into()))) {
                Ok(v) => {
                    out.insert(p.key.clone(), v);
                }
                Err(f) if p.required => {
                    let (status, error, detail) = match f {
                        Failed::Timeout => (504, "gateway_timeout", "timed out".to_string()),
                        Failed::Other(d) => (502, "bad_gateway", d),
                    };
                    let body = json!({ "error": error, "part": p.key, "detail": detail, "request_id": ctx.request_id() });
                    return Response::json(status, &body).into();
                }
                Err(_) => {
                    out.insert(p.key.clone(), Value::Null);
                    partial.push(p.key.as_str());
                }
            }
        }
        let mut answer = Response::json(200, &Value::Object(out));
        if !partial.is_empty() {
            answer = answer.header("x-aggregate-partial", partial.join(","));
        }
        answer.into()
    }
}

/// The part's JSON, or why there is none.
fn json_of(answer: Result<callout::Response, callout::Error>) -> Result<Value, Failed> {
    match answer {
        Ok(a) if (200..300).contains(&a.status) => serde_json::from_slice(&a.body)
            .map_err(|_| Failed::Other("the answer is not JSON".into())),
        Ok(a) => Err(Failed::Other(format!("status {}", a.status))),
        Err(callout::Error::Timeout) => Err(Failed::Timeout),
        Err(e) => Err(Failed::Other(format!("{e:?}"))),
    }
}

/// The `{name}`s of a template, or why it is malformed.
fn template_names(t: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("a `{` without `}`")?;
        let name = &after[..close];
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!("`{{{name}}}` is not a name"));
        }
        names.push(name);
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("a `}` without `{`".into());
    }
    Ok(names)
}

/// The template with every `{name}` replaced by the path parameter or
/// attribute of that name, percent-encoded; `Err(name)` for one with none.
fn fill(t: &str, ctx: &Context) -> Result<String, String> {
    let mut out = String::with_capacity(t.len() + 16);
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').unwrap_or(after.len());
        let name = &after[..close];
        let value = ctx
            .path_param(name)
            .or_else(|| ctx.attribute(name))
            .ok_or_else(|| name.to_string())?;
        // A whole `.` or `..` would be a dot segment, which encoding keeps.
        if value == "." || value == ".." {
            return Err(name.to_string());
        }
        out.push_str(&encode(&value));
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// Percent-encodes all but RFC 3986 unreserved characters, so a value can
/// never add a path segment or a query parameter.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

export_plugin!(Aggregate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert_eq!(
            template_names("/users/{id}?x={consumer}").unwrap(),
            ["id", "consumer"]
        );
        assert!(template_names("/users/{id").is_err());
        assert!(template_names("/users/id}").is_err());
        assert!(template_names("/users/{}").is_err());
        assert!(template_names("/users/{a b}").is_err());
    }

    #[test]
    fn values_cannot_add_segments_or_parameters() {
        assert_eq!(encode("7"), "7");
        assert_eq!(encode("../admin?x=1&y"), "..%2Fadmin%3Fx%3D1%26y");
    }
}
