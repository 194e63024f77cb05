//! The fleet endpoints: `GET /nodes` (every node's registry entry, with
//! which lag or refused a version) and `PUT /plugins/{name}` (a component
//! for every node, through etcd; into `plugin_dir` on a single gateway).

use http::StatusCode;
use serde_json::{Value, json};

use super::{Caller, Reply};
use crate::control::ControlPlane;
use crate::fleet::{FleetError, sync::valid_name};

/// Largest plugin upload: Python and JavaScript components run to 40 MB.
pub const MAX_PLUGIN: usize = 64 << 20;

/// etcd's refusal or absence, as the admin API answers it.
pub fn unavailable(e: &FleetError) -> Reply {
    match e {
        FleetError::Conflict { current, .. } => Reply::json(
            StatusCode::CONFLICT,
            &json!({ "error": "conflict", "message": e.to_string(), "current_version": current }),
        ),
        FleetError::RolloutActive { version } => Reply::json(
            StatusCode::CONFLICT,
            &json!({ "error": "rollout_active", "message": e.to_string(), "rollout_version": version }),
        ),
        FleetError::NoRollout => Reply::error(StatusCode::NOT_FOUND, "no_rollout", e.to_string()),
        _ => Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "etcd_unavailable",
            e.to_string(),
        ),
    }
}

fn not_a_fleet() -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "not_a_fleet",
        "this gateway serves a config file, not a fleet (start it with --etcd)",
    )
}

fn store(shared: &ControlPlane) -> Result<std::sync::Arc<crate::fleet::Store>, Reply> {
    let link = shared.fleet_link().ok_or_else(not_a_fleet)?;
    link.store().map_err(|e| unavailable(&e))
}

fn author<'a>(caller: &Caller<'a>) -> &'a str {
    caller.token.map_or("admin", |t| t.name.as_str())
}

/// The rollout under way, if any, and how the last one ended.
pub async fn rollout_state(shared: &ControlPlane) -> Reply {
    match store(shared) {
        Ok(s) => match s.rollout_state().await {
            Ok(v) => Reply::ok(&v),
            Err(e) => unavailable(&e),
        },
        Err(r) => r,
    }
}

/// `{"document": {...}, "labels": {...}, "auto_rollback": {...}}`: checks the
/// document as this node would build it, then starts rolling it out to the
/// nodes whose labels match, as the version after the live one.
pub async fn start_rollout(shared: &ControlPlane, caller: &Caller<'_>, body: &[u8]) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Start {
        document: Value,
        labels: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        auto_rollback: Option<crate::fleet::rollout::AutoRollback>,
    }
    let store = match store(shared) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let start: Start = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => return super::handlers::bad_request(format!("body: {e}")),
    };
    if start.labels.is_empty() {
        return super::handlers::bad_request(
            "labels: name at least one label the canary nodes carry",
        );
    }
    if let Some(a) = &start.auto_rollback
        && !(0.0..=1.0).contains(&a.max_error_rate)
    {
        return super::handlers::bad_request("auto_rollback.max_error_rate: between 0 and 1");
    }
    let _control = shared.lock_control().await;
    if let Err(e) = shared.check_document(&start.document).await {
        return Reply::json(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "invalid_config", "message": "the version was rejected; nothing changed", "errors": super::handlers::config_errors(&e.errors) }),
        );
    }
    let Some(base) = shared.versions.current().map(|v| v.record()) else {
        return unavailable(&FleetError::Etcd("no live version".into()));
    };
    match store
        .start_rollout(
            start.document,
            author(caller),
            &base,
            start.labels,
            start.auto_rollback,
        )
        .await
    {
        Ok(c) => Reply::ok(&json!({ "version": c.record.version, "labels": c.labels })),
        Err(e) => unavailable(&e),
    }
}

/// Makes the rollout's version every node's.
pub async fn promote(shared: &ControlPlane, caller: &Caller<'_>) -> Reply {
    let store = match store(shared) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match store.promote(author(caller)).await {
        Ok(rec) => Reply::ok(&json!({ "version": rec.version, "outcome": "promoted" })),
        Err(e) => unavailable(&e),
    }
}

/// Ends the rollout: the canary nodes return to the live config.
pub async fn abort(shared: &ControlPlane, caller: &Caller<'_>) -> Reply {
    let store = match store(shared) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match store.roll_back(author(caller), None, None).await {
        Ok(o) => Reply::ok(&json!(o)),
        Err(e) => unavailable(&e),
    }
}

/// Every registered node, marked `canary` when a rollout selects it,
/// `lagging` when it serves an older version than it should (the rollout's
/// or the config's) and `failed` when it refused a version or a plugin.
pub async fn nodes(shared: &ControlPlane) -> Reply {
    let Some(link) = shared.fleet_link() else {
        return not_a_fleet();
    };
    let read = async {
        let store = link.store()?;
        let (rec, _) = store.config().await?;
        let canary = store.canary().await?.map(|(c, _)| c);
        Ok::<_, FleetError>((rec.map_or(0, |r| r.version), canary, store.nodes().await?))
    };
    let (current, canary, mut nodes) = match read.await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    for n in &mut nodes {
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(n["labels"].clone()).unwrap_or_default();
        let selected = canary.as_ref().filter(|c| c.selects(&labels));
        let expected = selected.map_or(current, |c| c.record.version);
        let version = n["config"]["version"].as_u64().unwrap_or(0);
        let refused = !n["config"]["rejected"].is_null()
            || n["plugin_errors"]
                .as_object()
                .is_some_and(|o| !o.is_empty());
        n["canary"] = json!(selected.is_some());
        n["lagging"] = json!(version < expected);
        n["failed"] = json!(refused);
    }
    Reply::ok(&json!({ "config_version": current, "nodes": nodes }))
}

/// Stores a component as plugin `name`: in etcd for every node, or in this
/// gateway's `plugin_dir` (then hot-swapped, as a file drop would be).
pub async fn put_plugin(
    shared: &ControlPlane,
    caller: &Caller<'_>,
    name: &str,
    body: &[u8],
) -> Reply {
    if !valid_name(name) {
        return super::handlers::bad_request(format!("`{name}` is not a valid plugin name"));
    }
    if !body.starts_with(b"\0asm") {
        return super::handlers::bad_request("the body is not a WebAssembly component");
    }
    let author = author(caller);
    if let Some(link) = shared.fleet_link() {
        let pushed = match link.store() {
            Ok(store) => store.push_plugin(name, body, author).await,
            Err(e) => Err(e),
        };
        return match pushed {
            Ok(rec) => Reply::ok(
                &json!({ "name": name, "sha256": rec.sha256, "size": rec.size, "chunks": rec.chunks }),
            ),
            Err(e) => unavailable(&e),
        };
    }
    let file = shared
        .snapshot()
        .config
        .plugin_dir
        .join(format!("{name}.wasm"));
    let (target, bytes) = (file.clone(), body.to_vec());
    let written =
        tokio::task::spawn_blocking(move || crate::files::write_atomically(&target, &bytes)).await;
    if let Err(e) = written.map_err(std::io::Error::other).and_then(|r| r) {
        return Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "write_failed",
            format!("{}: {e}", file.display()),
        );
    }
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(body));
    match shared.swap_plugin(name).await {
        Ok(()) => Reply::ok(&json!({ "name": name, "sha256": sha, "size": body.len() })),
        Err(e) => Reply::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "error": "plugin_rejected", "message": e.to_string(), "sha256": sha, "running": Value::Null }),
        ),
    }
}
