//! `response-transform`: edits the response before the client sees it —
//! headers (remove, set, add; e.g. drop `server`, add security headers) and
//! fields of JSON bodies (an allow-list or a deny-list of top-level fields,
//! renames). With JSON edits configured, a body that cannot be edited
//! (another type, compressed, malformed, not an object) becomes a 502.

use std::collections::BTreeMap;

use gatehouse_plugin_sdk::*;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    headers: HeaderOps,
    json: JsonOps,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HeaderOps {
    remove: Vec<String>,
    set: BTreeMap<String, String>,
    add: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct JsonOps {
    /// Only these top-level fields are kept.
    allow: Vec<String>,
    /// These top-level fields are removed.
    deny: Vec<String>,
    /// Top-level fields renamed (after allow/deny).
    rename: BTreeMap<String, String>,
}

struct Transform(Config);

impl Transform {
    fn edits_json(&self) -> bool {
        let j = &self.0.json;
        !j.allow.is_empty() || !j.deny.is_empty() || !j.rename.is_empty()
    }
}

impl Plugin for Transform {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        if !c.json.allow.is_empty() && !c.json.deny.is_empty() {
            return Err("json: use `allow` or `deny`, not both".into());
        }
        for (name, value) in c.headers.set.iter().chain(&c.headers.add) {
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| !(b.is_ascii_alphanumeric() || b"-_".contains(&b)))
            {
                return Err(format!("headers: `{name}` is not a header name"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!("headers.{name}: value must be one line"));
            }
        }
        Ok(Transform(c))
    }

    fn features(&self) -> Features {
        if self.edits_json() {
            Features::RESPONSE_HEADERS | Features::RESPONSE_BODY
        } else {
            Features::RESPONSE_HEADERS
        }
    }

    fn on_response(
        &self,
        _ctx: &Context,
        _req: &Request,
        resp: &ResponseHeadRef,
    ) -> ResponseAction {
        let h = &self.0.headers;
        for name in &h.remove {
            resp.remove_header(name);
        }
        for (name, value) in &h.set {
            resp.set_header(name, value.as_bytes());
        }
        for (name, value) in &h.add {
            resp.append_header(name, value.as_bytes());
        }
        ResponseAction::Continue
    }

    fn on_response_body(&self, ctx: &Context, resp: &ResponseHeadRef, body: Vec<u8>) -> BodyAction {
        // Fail closed: the fields `deny` hides must never reach the client
        // because the body came compressed, in another type or malformed.
        if body.is_empty() {
            return BodyAction::Continue;
        }
        let (ct, ce) = (
            resp.header_str("content-type"),
            resp.header_str("content-encoding"),
        );
        if !params::is_plain_json(ct.as_deref(), ce.as_deref()) {
            return failed(ctx);
        }
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) else {
            return failed(ctx);
        };
        let j = &self.0.json;
        if !j.allow.is_empty() {
            map.retain(|k, _| j.allow.contains(k));
        }
        for k in &j.deny {
            map.remove(k);
        }
        for (from, to) in &j.rename {
            if let Some(v) = map.remove(from) {
                map.insert(to.clone(), v);
            }
        }
        match serde_json::to_vec(&Value::Object(map)) {
            Ok(bytes) => BodyAction::Replace(bytes),
            Err(_) => failed(ctx),
        }
    }
}

/// 502 `response_transform_failed`: the upstream's answer could not be edited.
fn failed(ctx: &Context) -> BodyAction {
    let body = serde_json::json!({
        "error": "response_transform_failed",
        "request_id": ctx.request_id(),
    });
    Response::json(502, &body).into()
}

export_plugin!(Transform);
