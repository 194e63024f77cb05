//! `/plugins/{name}/trace`: start a bounded live trace of one plugin on this
//! node, read what it recorded (as JSON, or as a `gatehouse plugin test`
//! case file), stop it. Full-access tokens only: even redacted, a trace
//! shows requests.

use std::sync::Arc;

use http::{HeaderName, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::handlers::{bad_request, not_found};
use super::{Caller, Reply};
use crate::control::ControlPlane;
use crate::plugin::trace::{DEFAULT_REDACT_HEADERS, DEFAULT_REDACT_QUERY, Invocation, Recorder};

/// Most calls one trace records.
const MAX_COUNT: usize = 100;
/// Longest a trace runs.
const MAX_SECONDS: u64 = 600;

/// What `POST` may say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    /// Calls to record (default 10, at most 100).
    count: Option<usize>,
    /// Seconds it may run (default 60, at most 600).
    seconds: Option<u64>,
    /// Header values to redact besides the defaults.
    #[serde(default)]
    redact_headers: Vec<String>,
    /// Query parameter values to redact besides the defaults.
    #[serde(default)]
    redact_query: Vec<String>,
}

/// `/plugins/{name}/trace`.
pub async fn handle(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    method: &str,
    name: &str,
    body: &[u8],
) -> Reply {
    if caller.token.is_none_or(|t| t.read_only) {
        return Reply::error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "plugin traces need a full-access token",
        );
    }
    let snap = shared.snapshot();
    let attached = snap.attachments();
    if !attached.iter().any(|a| &*a.config().name == name) {
        return not_found("plugin", name);
    }
    let tracer = shared.runtime.shared(&Arc::from(name));
    match method {
        "POST" => {
            let start: Start = if body.iter().all(u8::is_ascii_whitespace) {
                Start::default()
            } else {
                match serde_json::from_slice(body) {
                    Ok(s) => s,
                    Err(e) => return bad_request(format!("body: {e}")),
                }
            };
            let count = start.count.unwrap_or(10);
            let seconds = start.seconds.unwrap_or(60);
            if !(1..=MAX_COUNT).contains(&count) {
                return bad_request(format!("`count` must be 1 to {MAX_COUNT}"));
            }
            if !(1..=MAX_SECONDS).contains(&seconds) {
                return bad_request(format!("`seconds` must be 1 to {MAX_SECONDS}"));
            }
            let mut headers: Vec<HeaderName> = DEFAULT_REDACT_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect();
            for h in &start.redact_headers {
                match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(n) => headers.push(n),
                    Err(_) => return bad_request(format!("`{h}` is not a header name")),
                }
            }
            let mut query: Vec<String> =
                DEFAULT_REDACT_QUERY.iter().map(|q| q.to_string()).collect();
            query.extend(start.redact_query);
            let shown: Vec<&str> = headers.iter().map(HeaderName::as_str).collect();
            let answer = json!({ "plugin": name, "count": count, "seconds": seconds, "redact_headers": shown, "redact_query": query });
            tracer
                .trace
                .start(Arc::new(Recorder::new(count, seconds, headers, query)));
            Reply::json(StatusCode::CREATED, &answer)
        }
        "GET" => {
            let Some(r) = tracer.trace.current() else {
                return not_found("trace of plugin", name);
            };
            let records = r.records();
            if caller
                .query
                .is_some_and(|q| q.split('&').any(|p| p == "format=cases"))
            {
                return Reply::text(cases(name, &records, shared), "application/yaml");
            }
            Reply::ok(&json!({
                "plugin": name,
                "active": !r.done(),
                "count": r.count,
                "seconds": r.seconds,
                "started": crate::telemetry::access_log::rfc3339(r.started),
                "recorded": records.len(),
                "records": records,
            }))
        }
        "DELETE" => {
            tracer.trace.clear();
            Reply::ok(&json!({ "plugin": name, "stopped": true }))
        }
        _ => Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST, GET or DELETE",
        ),
    }
}

/// `GET /plugins/{name}/shadow`: how often the shadow version decided as
/// the live one did, and the last requests where it did not.
pub fn shadow(shared: &ControlPlane, caller: &Caller<'_>, name: &str) -> Reply {
    if caller.token.is_none_or(|t| t.read_only) {
        return Reply::error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "shadow samples need a full-access token",
        );
    }
    let Some(s) = shared.runtime.metrics().shadow_of(name) else {
        return not_found("shadow of plugin", name);
    };
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let running = shared
        .snapshot()
        .attachments()
        .iter()
        .filter(|a| &*a.config().name == name)
        .find_map(|a| a.shadow().map(|s| s.label.to_string()));
    Reply::ok(&json!({
        "plugin": name,
        "shadow": running,
        "same": n(&s.same),
        "differ": n(&s.differ),
        "error": n(&s.error),
        "skipped": n(&s.skipped),
        "differences": s.samples(),
    }))
}

/// The recorded `on-request` calls as a `gatehouse plugin test` case file:
/// each call's request and attachment config, and what it did as the
/// expectation. Redacted values stay `[redacted]`: put real test values in.
fn cases(name: &str, records: &[Invocation], shared: &ControlPlane) -> String {
    let snap = shared.snapshot();
    let config_on = |route: &str| -> Value {
        snap.routes
            .iter()
            .find(|r| &*r.id == route)
            .and_then(|r| {
                r.chain
                    .items()
                    .iter()
                    .find(|a| &*a.config().name == name)
                    .cloned()
            })
            .and_then(|a| serde_json::from_str(&a.config().config).ok())
            .unwrap_or(Value::Null)
    };
    let one = |v: &Vec<String>| if v.len() == 1 { json!(v[0]) } else { json!(v) };
    let list: Vec<Value> = records
        .iter()
        .filter(|r| r.hook == "on-request")
        .map(|r| {
            let path = match (&r.request.path, &r.request.query) {
                (Some(p), Some(q)) => format!("{p}?{q}"),
                (Some(p), None) => p.clone(),
                _ => "/".into(),
            };
            let headers: Map<String, Value> = r.request.headers.iter().map(|(k, v)| (k.clone(), one(v))).collect();
            let mut expect = Map::new();
            match r.outcome {
                "respond" => {
                    expect.insert("outcome".into(), json!("respond"));
                    if let Some(a) = &r.answer {
                        expect.insert("status".into(), json!(a.status));
                    }
                }
                "continue" => {
                    expect.insert("outcome".into(), json!("continue"));
                    let mut up: Map<String, Value> = r.edits.headers_set.iter().map(|(k, v)| (k.clone(), json!(v[0]))).collect();
                    for h in &r.edits.headers_removed {
                        up.insert(h.clone(), Value::Null);
                    }
                    if !up.is_empty() {
                        expect.insert("upstream".into(), json!({ "headers": up }));
                    }
                }
                other => {
                    expect.insert("error".into(), json!(r.error.clone().unwrap_or_else(|| other.into())));
                }
            }
            if !r.edits.attributes.is_empty() {
                expect.insert("attributes".into(), json!(r.edits.attributes));
            }
            json!({
                "name": format!("recorded {} {} {}", r.request_id, r.request.method.as_deref().unwrap_or("GET"), path),
                "config": config_on(&r.route),
                "request": {
                    "method": r.request.method,
                    "path": path,
                    "headers": headers,
                    "client_ip": r.client_ip,
                    "route": r.route,
                    "attributes": r.attributes,
                },
                "expect": expect,
            })
        })
        .collect();
    let doc = json!({ "plugin": name, "cases": list });
    let yaml = serde_yaml::to_string(&doc).unwrap_or_default();
    format!(
        "# Recorded by POST /plugins/{name}/trace; values shown as [redacted] need real test values.\n# gatehouse plugin test {name}.wasm --cases this-file.yaml\n{yaml}"
    )
}
