//! `GET /cache` (what the response cache holds) and `DELETE /cache`
//! (purge: everything, or what a route, host, path, prefix or query picks).

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::Reply;
use crate::cache::Key;
use crate::control::ControlPlane;

/// What a purge removes: entries matching every filter given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    /// A route's id.
    route: Option<String>,
    /// The canonical host, lower-cased, without port.
    host: Option<String>,
    /// An exact path (every query and variant of it).
    path: Option<String>,
    /// A path prefix.
    prefix: Option<String>,
    /// An exact query, e.g. `a=1&b=2` (compared with parameters sorted).
    query: Option<String>,
}

impl Purge {
    fn picks(&self, k: &Key) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.route, &k.route)
            && eq(&self.host, k.host())
            && eq(&self.path, &k.path)
            && self.prefix.as_deref().is_none_or(|p| k.path.starts_with(p))
            && self
                .query
                .as_deref()
                .is_none_or(|q| crate::cache::key::sorted_query(q) == k.query())
    }
}

/// `DELETE /cache` with an optional JSON body of filters.
pub fn purge(shared: &ControlPlane, body: &[u8]) -> Reply {
    let filter: Purge = if body.iter().all(u8::is_ascii_whitespace) {
        Purge::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(f) => f,
            Err(e) => {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_purge",
                    format!("expected {{route, host, path, prefix, query}}: {e}"),
                );
            }
        }
    };
    let snap = shared.snapshot();
    let Some(store) = &snap.cache else {
        return Reply::ok(&json!({ "purged": 0 }));
    };
    let purged = store.purge(|k| filter.picks(k));
    Reply::ok(&json!({ "purged": purged }))
}

/// `GET /cache`: the store's totals and each cached route's counters.
pub fn stats(shared: &ControlPlane) -> Reply {
    let snap = shared.snapshot();
    let Some(store) = &snap.cache else {
        return Reply::ok(&json!({ "enabled": false }));
    };
    let t = store.totals();
    let routes: serde_json::Map<String, serde_json::Value> = snap
        .routes
        .iter()
        .filter_map(|r| Some((r, r.cache.as_ref()?)))
        .map(|(r, c)| {
            let mut counts: serde_json::Map<String, serde_json::Value> = c
                .metrics
                .by_outcome()
                .iter()
                .map(|(o, n)| (o.to_string(), json!(n)))
                .collect();
            counts.insert(
                "stored".into(),
                json!(c.metrics.stored.load(std::sync::atomic::Ordering::Relaxed)),
            );
            (r.id.to_string(), serde_json::Value::Object(counts))
        })
        .collect();
    Reply::ok(&json!({
        "enabled": true,
        "bytes": t.bytes,
        "max_bytes": t.max_bytes,
        "entries": t.entries,
        "evictions": t.evictions,
        "routes": routes,
    }))
}
