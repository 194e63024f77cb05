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
        _ => Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "etcd_unavailable",
            e.to_string(),
        ),
    }
}

/// Every registered node, marked `lagging` when it serves an older version
/// than etcd holds and `failed` when it refused a version or a plugin.
pub async fn nodes(shared: &ControlPlane) -> Reply {
    let Some(link) = shared.fleet_link() else {
        return Reply::error(
            StatusCode::NOT_FOUND,
            "not_a_fleet",
            "this gateway serves a config file, not a fleet (start it with --etcd)",
        );
    };
    let read = async {
        let store = link.store()?;
        let (rec, _) = store.config().await?;
        Ok::<_, FleetError>((rec.map_or(0, |r| r.version), store.nodes().await?))
    };
    let (current, mut nodes) = match read.await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    for n in &mut nodes {
        let version = n["config"]["version"].as_u64().unwrap_or(0);
        let refused = !n["config"]["rejected"].is_null()
            || n["plugin_errors"]
                .as_object()
                .is_some_and(|o| !o.is_empty());
        n["lagging"] = json!(version < current);
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
    let author = caller.token.map_or("admin", |t| t.name.as_str());
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
