//! Named policies (`/policies`) and attaching one plugin or policy to many
//! routes at once (`POST /plugins`). Both are edits of the config document,
//! validated and applied as one version like every other write: a policy
//! edit reaches every route that names it, and a bad one changes nothing.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::handlers::{bad_request, current, not_found, parse_body, write};
use super::{Caller, Reply};
use crate::config::document::ROUTES;
use crate::control::ControlPlane;

/// `/policies[...]`.
pub async fn handle(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    method: &str,
    rest: &[&str],
    body: &[u8],
) -> Reply {
    match (method, rest) {
        ("GET", []) => {
            let doc = current(shared);
            Reply::ok(doc.get("policies").unwrap_or(&json!({})))
        }
        ("GET", [name]) => {
            let doc = current(shared);
            match doc.get("policies").and_then(|p| p.get(*name)) {
                Some(p) => {
                    Reply::ok(&json!({ "name": name, "policy": p, "used_by": used_by(&doc, name) }))
                }
                None => not_found("policy", name),
            }
        }
        ("PUT", [name]) => {
            let policy = match parse_body(body) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    return bad_request("a policy is an attachment object: { name, config, … }");
                }
                Err(r) => return r,
            };
            write(shared, caller, |doc| {
                let Some(d) = doc.as_object_mut() else {
                    return Err(bad_request("the live document is not a mapping"));
                };
                let policies = d
                    .entry("policies")
                    .or_insert_with(|| Value::Object(Map::new()));
                match policies.as_object_mut() {
                    Some(p) => {
                        p.insert(name.to_string(), policy);
                        Ok(())
                    }
                    None => Err(bad_request(
                        "`policies` in the live document is not a mapping",
                    )),
                }
            })
            .await
        }
        ("DELETE", [name]) => {
            write(shared, caller, |doc| {
                let removed = doc
                    .get_mut("policies")
                    .and_then(Value::as_object_mut)
                    .and_then(|p| p.remove(*name));
                match removed {
                    Some(_) => Ok(()),
                    None => Err(not_found("policy", name)),
                }
            })
            .await
        }
        _ => Reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such policy endpoint",
        ),
    }
}

/// Where `name` is attached: `[{"route": id, "index": i}]`, `"route": null`
/// for the global chain.
fn used_by(doc: &Value, name: &str) -> Vec<Value> {
    let names = |list: Option<&Value>| -> Vec<usize> {
        list.and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .enumerate()
                    .filter(|(_, a)| a.get("policy").and_then(Value::as_str) == Some(name))
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out: Vec<Value> = names(doc.get("plugins"))
        .into_iter()
        .map(|i| json!({ "route": null, "index": i }))
        .collect();
    for r in ROUTES.items(doc) {
        for i in names(r.get("plugins")) {
            out.push(json!({ "route": r["id"], "index": i }));
        }
    }
    out
}

/// `POST /plugins`: `{"routes": [ids], ...attachment}` appends the
/// attachment (a plugin, or `{"policy": name}`) to every listed route's
/// chain, in one version.
pub async fn attach(shared: &Arc<ControlPlane>, caller: &Caller<'_>, body: &[u8]) -> Reply {
    let mut item = match parse_body(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return bad_request("the body is an attachment object with `routes`"),
        Err(r) => return r,
    };
    let routes: Vec<String> = match item.remove("routes") {
        Some(Value::Array(ids)) if !ids.is_empty() => {
            match ids.iter().map(|v| v.as_str().map(str::to_string)).collect() {
                Some(ids) => ids,
                None => return bad_request("`routes` lists route ids (strings)"),
            }
        }
        _ => return bad_request("`routes` (a non-empty list of route ids) is required"),
    };
    let item = Value::Object(item);
    let n = routes.len();
    let reply = write(shared, caller, |doc| {
        for id in &routes {
            let Some(r) = ROUTES.get_mut(doc, id) else {
                return Err(not_found("route", id));
            };
            let Some(r) = r.as_object_mut() else {
                return Err(bad_request(format!("route `{id}` is not a mapping")));
            };
            let list = r
                .entry("plugins")
                .or_insert_with(|| Value::Array(Vec::new()));
            match list.as_array_mut() {
                Some(l) => l.push(item.clone()),
                None => {
                    return Err(bad_request(format!(
                        "route `{id}`: `plugins` is not a list"
                    )));
                }
            }
        }
        Ok(())
    })
    .await;
    if reply.status != StatusCode::OK {
        return reply;
    }
    let version: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    Reply::ok(&json!({ "version": version["version"], "attached": n }))
}
