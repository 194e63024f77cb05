//! Consumers and their API keys. A key is generated here, shown once, and
//! only its SHA-256 is kept, in the consumer store ([`crate::credentials`]):
//! on a single gateway a journal beside the config, on a fleet node one etcd
//! key per consumer and per key ([`crate::fleet::consumers`]), replicated to
//! every node by its watch. Either way a new key costs one small write, not
//! a new version of a config holding every key, and the `api-key` plugin
//! (with `keys_from_consumers: true`) finds it through
//! `host.find-credential` from the write on.

use std::sync::Arc;

use http::StatusCode;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Reply;
use crate::control::{ControlPlane, Origin};
use crate::credentials::{Credentials, KeyRecord, Record, StoreError};

/// Hex of `bytes` random bytes.
fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buf).ok()?;
    Some(hex::encode(buf))
}

/// Most consumers one `GET /consumers` lists without `limit`.
const MAX_LIST: usize = 1000;

/// `/consumers[...]`.
pub async fn handle(
    shared: &Arc<ControlPlane>,
    query: Option<&str>,
    method: &str,
    rest: &[&str],
    body: &[u8],
) -> Reply {
    let creds = shared.runtime.credentials();
    match (method, rest) {
        ("GET", []) => list(creds, query),
        ("GET", [name]) => match creds.consumer(name) {
            Some(c) => Reply::ok(&json!(c)),
            None => not_found(format!("no consumer `{name}`")),
        },
        ("POST", []) => create(shared, body).await,
        ("POST", ["import"]) => import(shared, body).await,
        ("DELETE", [name]) => {
            if let Some(r) = in_config(creds, name) {
                return r;
            }
            let rec = Record::DeleteConsumer {
                name: name.to_string(),
            };
            match commit(shared, vec![rec]).await {
                Ok(()) => Reply::ok(&json!({ "deleted": name })),
                Err(r) => r,
            }
        }
        ("POST", [name, "keys"]) => create_key(shared, name, body).await,
        ("POST", [name, "keys", id, "disable"]) => {
            let rec = Record::Disable {
                consumer: name.to_string(),
                id: id.to_string(),
            };
            edited(shared, name, rec).await
        }
        ("DELETE", [name, "keys", id]) => {
            let rec = Record::DeleteKey {
                consumer: name.to_string(),
                id: id.to_string(),
            };
            edited(shared, name, rec).await
        }
        _ => not_found("no such consumer endpoint".into()),
    }
}

fn not_found(message: String) -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "not_found", message)
}

fn bad_request(message: impl Into<String>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// The answer to a refused store change.
fn store_error(e: &StoreError) -> Reply {
    // A batch answers as its refused record would, with the record named.
    let kind = match e {
        StoreError::InRecord { source, .. } => source,
        e => e,
    };
    let (status, code) = match kind {
        StoreError::ConsumerExists(_)
        | StoreError::KeyExists { .. }
        | StoreError::DuplicateHash { .. } => (StatusCode::CONFLICT, "conflict"),
        StoreError::NoConsumer(_) | StoreError::NoKey { .. } => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        StoreError::Invalid { .. } | StoreError::InRecord { .. } => {
            (StatusCode::BAD_REQUEST, "bad_request")
        }
        StoreError::Closed | StoreError::Io { .. } | StoreError::Journal { .. } => {
            tracing::error!(error = %e, "consumer store write failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "store_unavailable")
        }
    };
    Reply::error(status, code, e.to_string())
}

/// A 409 for a consumer the config file defines: the file, not the API, owns it.
fn in_config(creds: &Credentials, name: &str) -> Option<Reply> {
    creds.in_config(name).then(|| {
        Reply::error(
            StatusCode::CONFLICT,
            "defined_in_config",
            format!(
                "consumer `{name}` is defined in the config file's `consumers:`; edit it there"
            ),
        )
    })
}

/// Runs `f` off the runtime's workers (the journal is synced to disk).
async fn blocking(
    f: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
) -> Result<(), StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Io {
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Makes `records` one change of the consumer store: on a single gateway
/// appended to the journal; on a fleet node checked here, written to etcd,
/// then applied here at once (the watch brings the same records again, and
/// to every other node).
async fn commit(shared: &Arc<ControlPlane>, records: Vec<Record>) -> Result<(), Reply> {
    let creds = shared.runtime.credentials().clone();
    let Origin::Fleet(link) = &shared.origin else {
        return blocking(move || creds.apply(records))
            .await
            .map_err(|e| store_error(&e));
    };
    creds.check(&records).map_err(|e| store_error(&e))?;
    // A disabled key is written whole, so etcd holds what every node serves.
    let records: Vec<Record> = records
        .into_iter()
        .map(|r| match r {
            Record::Disable { consumer, id } => match creds.key_record(&consumer, &id) {
                Some(mut k) => {
                    k.enabled = false;
                    Record::Key(k)
                }
                None => Record::Disable { consumer, id },
            },
            r => r,
        })
        .collect();
    let store = link.store().map_err(|e| super::fleet::unavailable(&e))?;
    store
        .write_consumers(&records)
        .await
        .map_err(|e| super::fleet::unavailable(&e))?;
    blocking(move || creds.apply_replicated(records))
        .await
        .map_err(|e| store_error(&e))
}

/// Applies `rec` and answers with the consumer as it is now.
async fn edited(shared: &Arc<ControlPlane>, name: &str, rec: Record) -> Reply {
    let creds = shared.runtime.credentials();
    if let Some(r) = in_config(creds, name) {
        return r;
    }
    if let Err(r) = commit(shared, vec![rec]).await {
        return r;
    }
    match creds.consumer(name) {
        Some(c) => Reply::ok(&json!(c)),
        None => not_found(format!("no consumer `{name}`")),
    }
}

/// `GET /consumers?limit=N&after=name`: a page of consumers in name order.
fn list(creds: &Credentials, query: Option<&str>) -> Reply {
    let mut limit = MAX_LIST;
    let mut after = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIST).contains(&n) => limit = n,
                _ => return bad_request(format!("`limit` must be 1 to {MAX_LIST}")),
            },
            "after" => after = Some(v.into_owned()),
            _ => {}
        }
    }
    Reply::ok(&json!(creds.consumers(after.as_deref(), limit)))
}

fn now() -> String {
    crate::telemetry::access_log::rfc3339(std::time::SystemTime::now())
}

/// `POST /consumers`: a new consumer without keys.
async fn create(shared: &Arc<ControlPlane>, body: &[u8]) -> Reply {
    let creds = shared.runtime.credentials();
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return bad_request("body is not JSON");
    };
    let Some(name) = v["name"].as_str().map(str::to_string) else {
        return bad_request("`name` is required");
    };
    if let Some(r) = in_config(creds, &name) {
        return r;
    }
    let rec = Record::Consumer {
        name: name.clone(),
        created: Some(now()),
    };
    match commit(shared, vec![rec]).await {
        Ok(()) => Reply::json(StatusCode::CREATED, &json!(creds.consumer(&name))),
        Err(r) => r,
    }
}

/// What `POST /consumers/{name}/keys` and each line of an import may say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    /// The consumer (import lines only).
    consumer: Option<String>,
    /// The key's name (default: generated; on import, the hash's first 12 hex digits).
    id: Option<String>,
    /// An existing key's `sha256:<hex>`, to register it instead of making one.
    hash: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    tier: Option<String>,
    expires: Option<String>,
    enabled: Option<bool>,
}

/// `POST /consumers/{name}/keys`: a new key, shown once (or, with `hash`,
/// an existing key registered by its hash).
async fn create_key(shared: &Arc<ControlPlane>, name: &str, body: &[u8]) -> Reply {
    let creds = shared.runtime.credentials();
    let req: KeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        KeyRequest::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("body: {e}")),
        }
    };
    if let Some(r) = in_config(creds, name) {
        return r;
    }
    let (Some(secret), Some(suffix)) = (random_hex(24), random_hex(6)) else {
        return Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no_randomness",
            "the system random source failed",
        );
    };
    let (key, hash) = match req.hash {
        Some(h) => (None, h),
        None => {
            let k = format!("gh_{secret}");
            let h = format!("sha256:{}", hex::encode(Sha256::digest(k.as_bytes())));
            (Some(k), h)
        }
    };
    let id = req.id.unwrap_or_else(|| format!("k_{suffix}"));
    let rec = KeyRecord {
        consumer: name.to_string(),
        id: id.clone(),
        hash,
        scopes: req.scopes,
        tier: req.tier,
        expires: req.expires,
        enabled: req.enabled.unwrap_or(true),
        created: Some(now()),
    };
    if let Err(r) = commit(shared, vec![Record::Key(rec)]).await {
        return r;
    }
    let mut out = json!({ "consumer": name, "id": id });
    if let Some(k) = key {
        out["key"] = json!(k);
        out["note"] = json!("the key is shown only now; only its hash is stored");
    }
    Reply::json(StatusCode::CREATED, &out)
}

/// `POST /consumers/import`: keys by hash, one JSON object per line
/// (`{"consumer":"c1","hash":"sha256:…","scopes":[…]}`), written as one
/// change: all of them or, when any line is refused, none.
async fn import(shared: &Arc<ControlPlane>, body: &[u8]) -> Reply {
    let creds = shared.runtime.credentials();
    let created = now();
    let mut records = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let req: KeyRequest = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => return bad_request(format!("line {}: {e}", n + 1)),
        };
        let (Some(consumer), Some(hash)) = (req.consumer, req.hash) else {
            return bad_request(format!(
                "line {}: `consumer` and `hash` are required",
                n + 1
            ));
        };
        if let Some(r) = in_config(creds, &consumer) {
            return r;
        }
        let hex_part = hash.strip_prefix("sha256:").unwrap_or(&hash);
        let id = req
            .id
            .unwrap_or_else(|| hex_part.get(..12).unwrap_or(hex_part).to_string());
        records.push(Record::Key(KeyRecord {
            consumer,
            id,
            hash,
            scopes: req.scopes,
            tier: req.tier,
            expires: req.expires,
            enabled: req.enabled.unwrap_or(true),
            created: Some(created.clone()),
        }));
    }
    let n = records.len();
    match commit(shared, records).await {
        Ok(()) => Reply::ok(&json!({ "imported": n })),
        Err(r) => r,
    }
}
