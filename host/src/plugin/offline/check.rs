//! What a case made happen, against what it expects: one line per miss.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::case::{Expect, Outcome};
use crate::exchange::RequestHead;

/// What the plugin did with one request.
#[derive(Debug, Default)]
pub struct Observed {
    /// `init` refused the config.
    pub init_error: Option<String>,
    /// A hook failed.
    pub error: Option<String>,
    /// A request hook answered.
    pub responded: bool,
    /// What the upstream got (head, body), when the request went on.
    pub upstream: Option<(RequestHead, Bytes)>,
    /// What the client got.
    pub client: Option<(StatusCode, HeaderMap, Bytes)>,
    /// Attributes after the request hooks.
    pub attributes: Vec<(String, String)>,
}

impl Observed {
    /// `init` refused.
    pub fn init_error(e: String) -> Self {
        Self {
            init_error: Some(e),
            ..Self::default()
        }
    }

    /// A hook failed.
    pub fn hook_error(e: String) -> Self {
        Self {
            error: Some(e),
            ..Self::default()
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Header expectations: a value must be the first value; `None`, absent.
fn headers(
    what: &str,
    want: &BTreeMap<String, Option<String>>,
    got: &HeaderMap,
    out: &mut Vec<String>,
) {
    for (name, value) in want {
        let actual = got.get(name.as_str()).map(|v| text(v.as_bytes()));
        if actual.as_ref() != value.as_ref() {
            let show = |v: &Option<String>| {
                v.as_ref()
                    .map_or("absent".to_string(), |v| format!("{v:?}"))
            };
            out.push(format!(
                "{what} header {name}: expected {}, got {}",
                show(value),
                show(&actual)
            ));
        }
    }
}

/// Whether every field of `want` is in `got` with the same value (recursively for objects).
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| contains(gv, v))),
        _ => got == want,
    }
}

/// The misses of `o` against `e`.
pub fn check(e: &Expect, o: &Observed, calls: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    match (&e.init_error, &o.init_error) {
        (Some(want), Some(got)) if got.contains(want.as_str()) => return out,
        (Some(want), Some(got)) => {
            out.push(format!(
                "init error: expected one containing {want:?}, got {got:?}"
            ));
            return out;
        }
        (Some(want), None) => {
            out.push(format!(
                "init error: expected one containing {want:?}, but init accepted the config"
            ));
            return out;
        }
        (None, Some(got)) => {
            out.push(format!("init refused the config: {got}"));
            return out;
        }
        (None, None) => {}
    }
    match (&e.error, &o.error) {
        (Some(want), Some(got)) if got.contains(want.as_str()) => return out,
        (Some(want), got) => {
            let got = got.as_deref().unwrap_or("no error");
            out.push(format!(
                "error: expected one containing {want:?}, got {got:?}"
            ));
            return out;
        }
        (None, Some(got)) => {
            out.push(format!("a hook failed: {got}"));
            return out;
        }
        (None, None) => {}
    }
    if let Some(want) = e.outcome {
        let got = if o.responded {
            Outcome::Respond
        } else {
            Outcome::Continue
        };
        if got != want {
            out.push(format!("outcome: expected {want:?}, got {got:?}").to_lowercase());
        }
    }
    if let Some((status, h, body)) = &o.client {
        if let Some(want) = e.status
            && want != status.as_u16()
        {
            out.push(format!("status: expected {want}, got {}", status.as_u16()));
        }
        headers("client", &e.headers, h, &mut out);
        let body_text = text(body);
        if let Some(want) = &e.body
            && *want != body_text
        {
            out.push(format!("body: expected {want:?}, got {body_text:?}"));
        }
        if let Some(want) = &e.body_contains
            && !body_text.contains(want.as_str())
        {
            out.push(format!(
                "body: expected it to contain {want:?}, got {body_text:?}"
            ));
        }
        if let Some(want) = &e.body_json {
            match serde_json::from_slice::<Value>(body) {
                Ok(got) if contains(&got, want) => {}
                Ok(got) => out.push(format!(
                    "body JSON: expected it to contain {want}, got {got}"
                )),
                Err(_) => out.push(format!("body JSON: expected JSON, got {body_text:?}")),
            }
        }
    }
    if let Some(want) = &e.upstream {
        match &o.upstream {
            None => out.push("upstream: expected a request, but the plugin answered".into()),
            Some((head, body)) => {
                if let Some(m) = &want.method
                    && m != head.method.as_str()
                {
                    out.push(format!(
                        "upstream method: expected {m}, got {}",
                        head.method
                    ));
                }
                if let Some(p) = &want.path
                    && p != head.uri.path()
                {
                    out.push(format!(
                        "upstream path: expected {p:?}, got {:?}",
                        head.uri.path()
                    ));
                }
                if let Some(q) = &want.query
                    && q.as_deref() != head.uri.query()
                {
                    out.push(format!(
                        "upstream query: expected {q:?}, got {:?}",
                        head.uri.query()
                    ));
                }
                headers("upstream", &want.headers, &head.headers, &mut out);
                if let Some(b) = &want.body
                    && *b != text(body)
                {
                    out.push(format!(
                        "upstream body: expected {b:?}, got {:?}",
                        text(body)
                    ));
                }
            }
        }
    }
    for (name, want) in &e.attributes {
        let got = o
            .attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        if got != *want {
            let show = |v: &Option<String>| {
                v.as_ref()
                    .map_or("not set".to_string(), |v| format!("{v:?}"))
            };
            out.push(format!(
                "attribute {name}: expected {}, got {}",
                show(want),
                show(&got)
            ));
        }
    }
    let mut rest = calls.iter();
    for want in &e.host_calls {
        if !rest.any(|c| c.starts_with(want.as_str())) {
            out.push(format!("host calls: expected {want:?} (in this order)"));
        }
    }
    out
}
