//! `request-transform`: edits the request before the upstream sees it —
//! headers (remove, rename, set, add, in that order; values may use
//! templates), the path (regex with captures), query parameters, and fields of
//! JSON bodies (other bodies pass untouched).

mod template;

use std::collections::BTreeMap;

use gatehouse_plugin_sdk::params::query_without;
use gatehouse_plugin_sdk::*;
use regex_lite::Regex;
use serde::Deserialize;
use serde_json::Value;
use template::Template;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    headers: HeaderOps,
    path: Option<PathRewrite>,
    query: QueryOps,
    body: BodyOps,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HeaderOps {
    remove: Vec<String>,
    rename: BTreeMap<String, String>,
    set: BTreeMap<String, String>,
    add: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathRewrite {
    /// Matched against the path (without the query).
    regex: String,
    /// The new path; `$1`, `${name}` refer to captures.
    replace: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct QueryOps {
    remove: Vec<String>,
    /// Set (replacing any existing value); values may use templates.
    set: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BodyOps {
    /// Dotted field paths (`meta.source`) → JSON values; strings may use templates.
    set: BTreeMap<String, Value>,
    /// Dotted field paths to delete.
    remove: Vec<String>,
}

struct Transform {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    set: Vec<(String, Template)>,
    add: Vec<(String, Template)>,
    path: Option<(Regex, String)>,
    query_remove: Vec<String>,
    query_set: Vec<(String, Template)>,
    body_set: Vec<(Vec<String>, BodyValue)>,
    body_remove: Vec<Vec<String>>,
}

enum BodyValue {
    Template(Template),
    Json(Value),
}

fn templates(map: &BTreeMap<String, String>, key: &str) -> Result<Vec<(String, Template)>, String> {
    map.iter()
        .map(|(k, v)| {
            Ok((
                k.to_ascii_lowercase(),
                Template::parse(v).map_err(|e| format!("{key}.{k}: {e}"))?,
            ))
        })
        .collect()
}

fn field_path(p: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = p.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("body field `{p}`: empty segment"));
    }
    Ok(parts)
}

impl Plugin for Transform {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        let path = c
            .path
            .map(|p| {
                Regex::new(&p.regex)
                    .map(|r| (r, p.replace))
                    .map_err(|e| format!("path.regex: {e}"))
            })
            .transpose()?;
        let body_set = c
            .body
            .set
            .into_iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => BodyValue::Template(
                        Template::parse(&s).map_err(|e| format!("body.set.{k}: {e}"))?,
                    ),
                    other => BodyValue::Json(other),
                };
                Ok((field_path(&k)?, value))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Transform {
            remove: c
                .headers
                .remove
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            rename: c.headers.rename.into_iter().collect(),
            set: templates(&c.headers.set, "headers.set")?,
            add: templates(&c.headers.add, "headers.add")?,
            path,
            query_remove: c.query.remove,
            query_set: templates(&c.query.set, "query.set")?,
            body_set,
            body_remove: c
                .body
                .remove
                .iter()
                .map(|p| field_path(p))
                .collect::<Result<_, _>>()?,
        })
    }

    fn features(&self) -> Features {
        if self.body_set.is_empty() && self.body_remove.is_empty() {
            Features::empty()
        } else {
            Features::REQUEST_BODY
        }
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        for h in &self.remove {
            req.remove_header(h);
        }
        for (from, to) in &self.rename {
            let values = req.header_all(from);
            if !values.is_empty() {
                req.remove_header(from);
                for v in values {
                    req.append_header(to, &v);
                }
            }
        }
        for (h, t) in &self.set {
            req.set_header(h, t.render(ctx, req).as_bytes());
        }
        for (h, t) in &self.add {
            req.append_header(h, t.render(ctx, req).as_bytes());
        }
        if let Some((re, replace)) = &self.path {
            let path = req.path();
            if re.is_match(&path) {
                let new = re.replace(&path, replace.as_str()).into_owned();
                if let Err(e) = req.set_path(&new) {
                    host::log(
                        Level::Warn,
                        &format!("path rewrite to `{new}` refused: {e}"),
                    );
                }
            }
        }
        if !self.query_remove.is_empty() || !self.query_set.is_empty() {
            let mut q = req.query();
            for name in self
                .query_remove
                .iter()
                .chain(self.query_set.iter().map(|(n, _)| n))
            {
                q = q.and_then(|q| query_without(&q, name));
            }
            let mut out = q.unwrap_or_default();
            for (name, t) in &self.query_set {
                if !out.is_empty() {
                    out.push('&');
                }
                out.push_str(&encode(name));
                out.push('=');
                out.push_str(&encode(&t.render(ctx, req)));
            }
            let _ = req.set_query((!out.is_empty()).then_some(out.as_str()));
        }
        Action::Continue
    }

    fn on_request_body(&self, ctx: &Context, req: &Request, body: Vec<u8>) -> BodyAction {
        // Fail closed: a body the configured edits cannot be applied to is
        // refused, never forwarded unedited (a removed field would reach the
        // upstream). Only an empty body has nothing to edit.
        if body.is_empty() {
            return BodyAction::Continue;
        }
        let (ct, ce) = (
            req.header_str("content-type"),
            req.header_str("content-encoding"),
        );
        if !params::is_plain_json(ct.as_deref(), ce.as_deref()) {
            return refuse(
                ctx,
                415,
                "the body edits of this route need an uncompressed JSON body",
            );
        }
        let doc = serde_json::from_slice::<Value>(&body);
        let Ok(mut doc @ Value::Object(_)) = doc else {
            return refuse(ctx, 400, "the body is not a JSON object");
        };
        for path in &self.body_remove {
            remove_field(&mut doc, path);
        }
        for (path, value) in &self.body_set {
            let v = match value {
                BodyValue::Json(v) => v.clone(),
                BodyValue::Template(t) => Value::String(t.render(ctx, req)),
            };
            set_field(&mut doc, path, v);
        }
        match serde_json::to_vec(&doc) {
            Ok(bytes) => BodyAction::Replace(bytes),
            Err(_) => refuse(ctx, 400, "the edited body could not be written"),
        }
    }
}

fn refuse(ctx: &Context, status: u16, message: &str) -> BodyAction {
    let body = serde_json::json!({
        "error": "request_transform_failed",
        "message": message,
        "request_id": ctx.request_id(),
    });
    Response::json(status, &body).into()
}

fn set_field(doc: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = doc;
    for p in parents {
        let Value::Object(map) = cur else { return };
        cur = map
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if let Value::Object(map) = cur {
        map.insert(last.clone(), value);
    }
}

fn remove_field(doc: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = doc;
    for p in parents {
        match cur.get_mut(p.as_str()) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(map) = cur {
        map.remove(last.as_str());
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let mut doc = serde_json::json!({ "user": { "password": "x", "name": "a" } });
        remove_field(&mut doc, &["user".into(), "password".into()]);
        set_field(&mut doc, &["meta".into(), "source".into()], "gw".into());
        assert_eq!(
            doc,
            serde_json::json!({ "user": { "name": "a" }, "meta": { "source": "gw" } })
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}

export_plugin!(Transform);
