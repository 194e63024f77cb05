//! The admin endpoints. Writes follow one path: take the control lock, edit
//! the live document, validate + build + persist + swap ([`ControlPlane::apply_document`]),
//! so a bad write changes nothing and concurrent writes never lose one another.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Caller, Reply, collections};
use crate::config::document::{ROUTES, SERVICES};
use crate::control::{ControlPlane, WriteError};

/// Routes one request to its handler.
pub async fn dispatch(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    method: &Method,
    segments: &[&str],
    body: &[u8],
) -> Reply {
    let m = method.as_str();
    match (m, segments) {
        ("GET", ["health"]) => Reply::ok(&json!({ "status": "ok" })),
        ("GET", ["ready"]) => ready(shared),
        ("GET", ["metrics"]) => Reply::text(
            super::metrics::render(shared),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        ("GET", ["openapi.json"]) => Reply::text(OPENAPI.to_string(), "application/json"),
        ("GET", ["config"]) => Reply::ok(&current(shared)),
        ("GET", ["config", "versions"]) => versions(shared).await,
        ("GET", ["config", "versions", n]) => version(shared, n).await,
        ("POST", ["config", "rollback", n]) => rollback(shared, caller, n).await,
        ("GET", ["nodes"]) => super::fleet::nodes(shared).await,
        ("GET", ["config", "rollout"]) => super::fleet::rollout_state(shared).await,
        ("POST", ["config", "rollout"]) => super::fleet::start_rollout(shared, caller, body).await,
        ("POST", ["config", "rollout", "promote"]) => super::fleet::promote(shared, caller).await,
        ("POST", ["config", "rollout", "abort"]) => super::fleet::abort(shared, caller).await,
        ("GET", ["plugins"]) => plugins(shared),
        ("PUT", ["plugins", name]) => super::fleet::put_plugin(shared, caller, name, body).await,
        ("GET", ["plugins", name, "shadow"]) => super::trace::shadow(shared, caller, name),
        (_, ["plugins", name, "trace"]) => {
            super::trace::handle(shared, caller, m, name, body).await
        }
        ("POST", ["plugins"]) => super::policies::attach(shared, caller, body).await,
        (_, ["policies", rest @ ..]) => {
            super::policies::handle(shared, caller, m, rest, body).await
        }
        ("GET", ["routes", id, "stats"]) => route_stats(shared, id),
        ("GET", ["cache"]) => super::cache::stats(shared),
        ("DELETE", ["cache"]) => super::cache::purge(shared, body),
        (_, ["routes", id, "plugins", rest @ ..]) => {
            collections::attachments(shared, caller, m, id, rest, body).await
        }
        (_, ["routes", rest @ ..]) => {
            collections::collection(shared, caller, ROUTES, m, rest, body).await
        }
        (_, ["services", rest @ ..]) => {
            collections::collection(shared, caller, SERVICES, m, rest, body).await
        }
        (_, ["consumers", rest @ ..]) => {
            super::consumers::handle(shared, caller.query, m, rest, body).await
        }
        _ => Reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint (see /openapi.json)",
        ),
    }
}

/// The kept versions, oldest first: this gateway's, or the fleet's from etcd.
async fn versions(shared: &ControlPlane) -> Reply {
    let Some(link) = shared.fleet_link() else {
        return Reply::ok(&json!(shared.versions.list()));
    };
    let history = match link.store() {
        Ok(store) => store.history().await,
        Err(e) => Err(e),
    };
    match history {
        Ok(list) => Reply::ok(&json!(
            list.iter()
                .map(crate::versions::Version::from)
                .collect::<Vec<_>>()
        )),
        Err(e) => super::fleet::unavailable(&e),
    }
}

/// Version `n` with its document, from this gateway's list or from etcd.
async fn find_version(shared: &ControlPlane, n: &str) -> Result<crate::versions::Version, Reply> {
    let Ok(number) = n.parse::<u64>() else {
        return Err(not_found("version", n));
    };
    let found = match shared.fleet_link() {
        None => shared.versions.get(number),
        Some(link) => {
            let stored = match link.store() {
                Ok(store) => store.version(number).await,
                Err(e) => Err(e),
            };
            stored
                .map_err(|e| super::fleet::unavailable(&e))?
                .as_ref()
                .map(crate::versions::Version::from)
        }
    };
    found.ok_or_else(|| not_found("version", n))
}

/// One stored version, with its document.
async fn version(shared: &ControlPlane, n: &str) -> Reply {
    match find_version(shared, n).await {
        Ok(v) => {
            let mut out = json!(v);
            out["document"] = v.document;
            Reply::ok(&out)
        }
        Err(r) => r,
    }
}

/// Makes an earlier version's document the live one, as a new version.
async fn rollback(shared: &Arc<ControlPlane>, caller: &Caller<'_>, n: &str) -> Reply {
    let v = match find_version(shared, n).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    write(shared, caller, |doc| {
        // Consumers and their keys stay as they are now: a rollback must not
        // bring back a key revoked since.
        let consumers = doc.get_mut("consumers").map(Value::take);
        *doc = v.document;
        match (doc.as_object_mut(), consumers) {
            (Some(d), Some(c)) => {
                d.insert("consumers".into(), c);
            }
            (Some(d), None) => {
                d.remove("consumers");
            }
            (None, _) => {}
        }
        Ok(())
    })
    .await
}

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub(super) fn not_found(what: &str, id: &str) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {what} `{id}`"),
    )
}

pub(super) fn bad_request(message: impl Into<String>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "bad_request", message)
}

pub(super) fn current(shared: &ControlPlane) -> Value {
    shared
        .versions
        .current()
        .map(|v| v.document)
        .unwrap_or_default()
}

pub(super) fn parse_body(body: &[u8]) -> Result<Value, Reply> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("body is not JSON: {e}")))
}

/// Applies `edit` to the live document as one new version.
pub async fn write(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    edit: impl FnOnce(&mut Value) -> Result<(), Reply>,
) -> Reply {
    let _control = shared.lock_control().await;
    let mut doc = current(shared);
    if let Err(reply) = edit(&mut doc) {
        return reply;
    }
    let author = caller.token.map_or("admin", |t| t.name.as_str());
    match shared.apply_document(&doc, author).await {
        Ok(version) => Reply::ok(&json!({ "version": version })),
        Err(WriteError::Invalid(e)) => Reply::json(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "invalid_config", "message": "the change was rejected; nothing changed", "errors": config_errors(&e.errors) }),
        ),
        Err(WriteError::Fleet(e)) => super::fleet::unavailable(&e),
    }
}

fn ready(shared: &ControlPlane) -> Reply {
    if shared.data.is_draining() {
        return Reply::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "draining": true }),
        );
    }
    let snap = shared.snapshot();
    let missing: Vec<String> = snap
        .attachments()
        .iter()
        .filter(|a| a.pool().is_none() && !a.config().optional)
        .map(|a| a.config().name.to_string())
        .collect();
    let fleet = shared.fleet_link().map(|l| json!(l.status()));
    if missing.is_empty() {
        let mut out = json!({ "ready": true, "routes": snap.routes.len() });
        if let Some(f) = fleet {
            out["fleet"] = f;
        }
        Reply::ok(&out)
    } else {
        Reply::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "plugins_not_loaded": missing }),
        )
    }
}

fn plugins(shared: &ControlPlane) -> Reply {
    let snap = shared.snapshot();
    let mut out: Vec<Value> = Vec::new();
    for r in &snap.routes {
        for a in r.chain.items() {
            let name = a.config().name.to_string();
            let entry = match out.iter_mut().find(|v| v["name"] == name.as_str()) {
                Some(e) => e,
                None => {
                    let pool = a.pool();
                    let rejected = shared.plugin_error(&name);
                    out.push(json!({
                        "name": name,
                        "version": a.version().map(|v| v.to_string()),
                        "loaded_at": pool.as_ref().map(|p| crate::telemetry::access_log::rfc3339(p.loaded_at)),
                        "routes": [],
                        "last_error": rejected.as_ref().map(ToString::to_string),
                        "last_error_details": rejected.map(|e| config_errors(&e.errors)),
                    }));
                    let Some(e) = out.last_mut() else { continue };
                    e
                }
            };
            if let Some(routes) = entry["routes"].as_array_mut()
                && !routes.iter().any(|x| x == &*r.id)
            {
                routes.push(json!(r.id));
            }
        }
    }
    Reply::ok(&json!(out))
}

fn route_stats(shared: &ControlPlane, id: &str) -> Reply {
    let snap = shared.snapshot();
    let Some(route) = snap.routes.iter().find(|r| &*r.id == id) else {
        return not_found("route", id);
    };
    let m = &route.metrics;
    let requests: serde_json::Map<String, Value> = m
        .by_class()
        .iter()
        .map(|(c, n)| (c.to_string(), json!(n)))
        .collect();
    let h = m.duration.snapshot();
    let ms = |q: f64| {
        h.quantile(q).map(|s| {
            if s.is_finite() {
                json!(s * 1000.0)
            } else {
                json!("+Inf")
            }
        })
    };
    Reply::ok(&json!({
        "route": id,
        "requests": requests,
        "total": h.count,
        "latency_ms": { "p50_le": ms(0.5), "p90_le": ms(0.9), "p99_le": ms(0.99), "mean": (h.count > 0).then(|| h.sum * 1000.0 / h.count as f64) },
    }))
}

/// Config errors as the admin API lists them: `[{"path": .., "message": ..}]`.
pub(super) fn config_errors(errors: &[crate::config::ConfigError]) -> Vec<Value> {
    errors
        .iter()
        .map(|e| json!({ "path": e.path, "message": e.message }))
        .collect()
}
