//! Consumers on a fleet node: kept in the fleet's document (`consumers:`),
//! so that every node has them from its watch. Each write is a version of
//! the document; the keys reach plugins through `host.find-credential` with
//! the snapshot that version builds.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::handlers::write;
use super::super::{Caller, Reply};
use super::random_hex;
use crate::config::document::CONSUMERS;
use crate::control::ControlPlane;

/// `/consumers[...]` on a fleet node.
pub async fn handle(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    method: &str,
    rest: &[&str],
    body: &[u8],
) -> Reply {
    match (method, rest) {
        ("GET", []) => list(shared),
        ("POST", []) => create(shared, caller, body).await,
        ("DELETE", [name]) => {
            write(shared, caller, |doc| {
                if CONSUMERS.remove(doc, name) {
                    Ok(())
                } else {
                    Err(Reply::error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("no consumer `{name}`"),
                    ))
                }
            })
            .await
        }
        ("POST", [name, "keys"]) => create_key(shared, caller, name, body).await,
        ("POST", [name, "keys", id, "disable"]) => {
            edit_key(shared, caller, name, id, |keys, i| {
                keys[i]["enabled"] = json!(false)
            })
            .await
        }
        ("DELETE", [name, "keys", id]) => {
            edit_key(shared, caller, name, id, |keys, i| {
                keys.remove(i);
            })
            .await
        }
        _ => Reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such consumer endpoint",
        ),
    }
}

/// `GET /consumers`: names and key metadata (hashes stay inside).
fn list(shared: &ControlPlane) -> Reply {
    let doc = shared
        .versions
        .current()
        .map(|v| v.document)
        .unwrap_or_default();
    let list: Vec<Value> = CONSUMERS
        .items(&doc)
        .iter()
        .map(|c| {
            let keys: Vec<Value> = c["keys"]
                .as_array()
                .map(|ks| {
                    ks.iter()
                        .map(|k| json!({ "id": k["id"], "enabled": k.get("enabled").cloned().unwrap_or(json!(true)), "created": k["created"], "scopes": k.get("scopes").cloned().unwrap_or(json!([])) }))
                        .collect()
                })
                .unwrap_or_default();
            json!({ "name": c["name"], "keys": keys })
        })
        .collect();
    Reply::ok(&json!(list))
}

/// `POST /consumers`: a new consumer without keys.
async fn create(shared: &Arc<ControlPlane>, caller: &Caller<'_>, body: &[u8]) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Reply::error(StatusCode::BAD_REQUEST, "bad_request", "body is not JSON");
    };
    let Some(name) = v["name"].as_str().map(str::to_string) else {
        return Reply::error(StatusCode::BAD_REQUEST, "bad_request", "`name` is required");
    };
    write(shared, caller, |doc| {
        if CONSUMERS.insert(doc, json!({ "name": name, "keys": [] })) {
            Ok(())
        } else {
            Err(Reply::error(
                StatusCode::CONFLICT,
                "conflict",
                "that consumer exists",
            ))
        }
    })
    .await
}

async fn create_key(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    name: &str,
    body: &[u8],
) -> Reply {
    let opts: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                return Reply::error(StatusCode::BAD_REQUEST, "bad_request", "body is not JSON");
            }
        }
    };
    let (Some(secret), Some(id)) = (random_hex(24), random_hex(6)) else {
        return Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no_randomness",
            "the system random source failed",
        );
    };
    let key = format!("gh_{secret}");
    let id = format!("k_{id}");
    let mut entry = json!({
        "id": id,
        "hash": format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes()))),
        "enabled": true,
        "created": crate::telemetry::access_log::rfc3339(std::time::SystemTime::now()),
    });
    for field in ["scopes", "tier", "expires"] {
        if let Some(v) = opts.get(field) {
            entry[field] = v.clone();
        }
    }
    let reply = write(shared, caller, |doc| {
        if CONSUMERS.get(doc, name).is_none() {
            CONSUMERS.insert(doc, json!({ "name": name, "keys": [] }));
        }
        let Some(c) = CONSUMERS.get_mut(doc, name) else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "consumer vanished",
            ));
        };
        let mut keys = c["keys"].as_array().cloned().unwrap_or_default();
        keys.push(entry);
        c["keys"] = Value::Array(keys);
        Ok(())
    })
    .await;
    if reply.status != StatusCode::OK {
        return reply;
    }
    let version: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    Reply::json(
        StatusCode::CREATED,
        &json!({ "consumer": name, "id": id, "key": key, "version": version["version"], "note": "the key is shown only now; only its hash is stored" }),
    )
}

async fn edit_key(
    shared: &Arc<ControlPlane>,
    caller: &Caller<'_>,
    name: &str,
    id: &str,
    f: impl FnOnce(&mut Vec<Value>, usize),
) -> Reply {
    write(shared, caller, |doc| {
        let Some(c) = CONSUMERS.get_mut(doc, name) else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no consumer `{name}`"),
            ));
        };
        let mut keys = c["keys"].as_array().cloned().unwrap_or_default();
        let Some(i) = keys.iter().position(|k| k["id"] == id) else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no key `{id}`"),
            ));
        };
        f(&mut keys, i);
        c["keys"] = Value::Array(keys);
        Ok(())
    })
    .await
}
