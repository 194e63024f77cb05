//! `request-validator`: JSON Schema validation of request bodies (and
//! optionally of query parameters) per route; 400 with the list of what failed.
//! Schemas are compiled once in `init`; drafts 4, 6, 7, 2019-09 and 2020-12
//! (the `jsonschema` crate, without remote reference fetching: a plugin has no
//! network).

use gatehouse_plugin_sdk::*;
use jsonschema::Validator;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Schema for the JSON request body.
    body_schema: Option<Value>,
    /// Schema for the query parameters, seen as an object of strings.
    query_schema: Option<Value>,
    /// Reject bodies whose Content-Type is not JSON (default true).
    require_json: Option<bool>,
    /// At most this many errors in the answer (default 10).
    max_errors: Option<usize>,
}

struct RequestValidator {
    body: Option<Validator>,
    query: Option<Validator>,
    require_json: bool,
    max_errors: usize,
}

fn compile(schema: &Value, key: &str) -> Result<Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("{key}: invalid schema: {e}"))
}

impl RequestValidator {
    fn errors(&self, v: &Validator, instance: &Value, place: &str) -> Vec<Value> {
        v.iter_errors(instance)
            .take(self.max_errors)
            .map(|e| {
                serde_json::json!({
                    "in": place,
                    "path": e.instance_path().to_string(),
                    "message": e.to_string(),
                })
            })
            .collect()
    }

    fn invalid(ctx: &Context, errors: Vec<Value>) -> Response {
        let body = serde_json::json!({
            "error": "invalid_request",
            "errors": errors,
            "request_id": ctx.request_id(),
        });
        Response::json(400, &body)
    }
}

/// `a=1&b=x%20y` as `{"a": "1", "b": "x y"}`: the first value of each name,
/// then one more object per further value of a repeated name (that value in
/// place of the first), so that every value is validated. An upstream that
/// reads the last value of `?a=ok&a=<attack>` must not get one unchecked.
fn query_objects(query: &str) -> Vec<Value> {
    let mut first = Map::new();
    let mut extra: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        if first.contains_key(&k) {
            extra.push((k, v));
        } else {
            first.insert(k, Value::String(v));
        }
    }
    let mut out = Vec::with_capacity(1 + extra.len());
    for (k, v) in extra {
        let mut o = first.clone();
        o.insert(k, Value::String(v));
        out.push(Value::Object(o));
    }
    out.insert(0, Value::Object(first));
    out
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = (b == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (b, escaped) {
            (_, Some(v)) => {
                out.push(v);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Plugin for RequestValidator {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        if c.body_schema.is_none() && c.query_schema.is_none() {
            return Err("set `body_schema`, `query_schema`, or both".into());
        }
        Ok(RequestValidator {
            body: c
                .body_schema
                .as_ref()
                .map(|s| compile(s, "body_schema"))
                .transpose()?,
            query: c
                .query_schema
                .as_ref()
                .map(|s| compile(s, "query_schema"))
                .transpose()?,
            require_json: c.require_json.unwrap_or(true),
            max_errors: c.max_errors.unwrap_or(10).max(1),
        })
    }

    fn features(&self) -> Features {
        if self.body.is_some() {
            Features::REQUEST_BODY
        } else {
            Features::empty()
        }
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        if let Some(v) = &self.query {
            let mut errors = Vec::new();
            for q in query_objects(&req.query().unwrap_or_default()) {
                for e in self.errors(v, &q, "query") {
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
            if !errors.is_empty() {
                return Self::invalid(ctx, errors).into();
            }
        }
        Action::Continue
    }

    fn on_request_body(&self, ctx: &Context, req: &Request, body: Vec<u8>) -> BodyAction {
        let Some(v) = &self.body else {
            return BodyAction::Continue;
        };
        let is_json = req
            .header_str("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
        if !is_json && self.require_json {
            let e = serde_json::json!({ "in": "body", "path": "", "message": "expected a JSON body (Content-Type: application/json)" });
            return Self::invalid(ctx, vec![e]).into();
        }
        let instance: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let e = serde_json::json!({ "in": "body", "path": "", "message": format!("not valid JSON: {e}") });
                return Self::invalid(ctx, vec![e]).into();
            }
        };
        let errors = self.errors(v, &instance, "body");
        if errors.is_empty() {
            BodyAction::Continue
        } else {
            Self::invalid(ctx, errors).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_become_objects() {
        assert_eq!(
            query_objects("a=1&b=x%20y+z&a=2&flag"),
            vec![
                serde_json::json!({ "a": "1", "b": "x y z", "flag": "" }),
                serde_json::json!({ "a": "2", "b": "x y z", "flag": "" }),
            ]
        );
        assert_eq!(decode("100%"), "100%");
    }
}

export_plugin!(RequestValidator);
