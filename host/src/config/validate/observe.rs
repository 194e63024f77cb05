//! Validation of `admin`, `access_log` and `tracing`.

use std::path::Path;
use std::time::Duration;

use super::Errors;
use crate::config::observe::*;
use crate::config::raw::*;

pub(super) fn admin(a: &RawAdmin, errs: &mut Errors) -> Option<AdminConfig> {
    let addr = match a.addr.as_deref().unwrap_or("127.0.0.1:9901").parse() {
        Ok(addr) => addr,
        Err(_) => {
            errs.push("admin.addr", "not an ip:port address");
            return None;
        }
    };
    let mut tokens: Vec<AdminToken> = Vec::new();
    if let Some(t) = &a.token {
        tokens.push(AdminToken {
            name: "admin".into(),
            token: t.clone(),
            read_only: false,
        });
    }
    if let Some(t) = &a.read_token {
        tokens.push(AdminToken {
            name: "read".into(),
            token: t.clone(),
            read_only: true,
        });
    }
    for t in &a.tokens {
        tokens.push(AdminToken {
            name: t.name.clone(),
            token: t.token.clone(),
            read_only: t.read_only,
        });
    }
    if tokens.is_empty() {
        errs.push(
            "admin.token",
            "the admin API needs a token (`token`, `read_token` or `tokens`)",
        );
    }
    for (i, t) in tokens.iter().enumerate() {
        // A short secret is guessable; the admin API can rewrite every route.
        if t.token.len() < 16 {
            errs.push(
                format!("admin.tokens[{i}]"),
                format!("token `{}` is shorter than 16 characters", t.name),
            );
        }
    }
    Some(AdminConfig { addr, tokens })
}

pub(super) fn access_log(a: &RawAccessLog, base: &Path, errs: &mut Errors) -> AccessLogConfig {
    let target = match a.path.as_deref().unwrap_or("stdout") {
        "stdout" | "-" => LogTarget::Stdout,
        "stderr" => LogTarget::Stderr,
        p => LogTarget::File(base.join(p)),
    };
    let buffer = a.buffer.unwrap_or(8192);
    if buffer == 0 {
        errs.push("access_log.buffer", "must be at least 1");
    }
    AccessLogConfig {
        target,
        buffer: buffer.max(1),
    }
}

pub(super) fn tracing(t: &RawTracing, errs: &mut Errors) -> Option<TracingConfig> {
    let endpoint = match t.otlp_endpoint.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => u,
        _ => {
            errs.push(
                "tracing.otlp_endpoint",
                format!(
                    "`{}` is not an http://host:port/v1/traces URL",
                    t.otlp_endpoint
                ),
            );
            return None;
        }
    };
    let sample_ratio = t.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        errs.push("tracing.sample_ratio", "must be between 0 and 1");
    }
    Some(TracingConfig {
        endpoint,
        service_name: t.service_name.clone().unwrap_or_else(|| "gatehouse".into()),
        sample_ratio,
        batch_size: t.batch_size.unwrap_or(512).max(1),
        flush_interval: t
            .flush_interval
            .as_ref()
            .map_or(Duration::from_secs(1), |d| d.0),
        queue: t.queue.unwrap_or(2048).max(1),
    })
}

/// The consumers' keys, given to every attachment (global or per route)
/// that asks for them with `keys_from_consumers: true`.
pub(super) fn give_keys(
    consumers: &[RawConsumer],
    global: &mut [crate::config::AttachmentConfig],
    routes: &mut [crate::config::RouteConfig],
    errs: &mut Errors,
) {
    let keys = consumer_keys(consumers, errs);
    inject_keys(global, &keys, "plugins", errs);
    for (i, r) in routes.iter_mut().enumerate() {
        inject_keys(&mut r.plugins, &keys, &format!("routes[{i}].plugins"), errs);
    }
}

/// Every consumer key as the api-key plugin's `keys` entries.
fn consumer_keys(consumers: &[RawConsumer], errs: &mut Errors) -> Vec<serde_json::Value> {
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, c) in consumers.iter().enumerate() {
        if !names.insert(c.name.as_str()) {
            errs.push(
                format!("consumers[{i}].name"),
                format!("duplicate consumer \"{}\"", c.name),
            );
        }
        for (k, key) in c.keys.iter().enumerate() {
            let hex = key.hash.strip_prefix("sha256:").unwrap_or(&key.hash);
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                errs.push(
                    format!("consumers[{i}].keys[{k}].hash"),
                    "expected sha256:<64 hex digits>",
                );
            }
            let mut entry = serde_json::json!({
                "hash": key.hash,
                "consumer": c.name,
                "id": key.id,
                "enabled": key.enabled.unwrap_or(true),
                "scopes": key.scopes,
            });
            if let Some(t) = &key.tier {
                entry["tier"] = t.clone().into();
            }
            if let Some(e) = &key.expires {
                entry["expires"] = e.clone().into();
            }
            out.push(entry);
        }
    }
    out
}

/// For attachments whose config has `keys_from_consumers: true`: the
/// consumers' keys are appended to `keys` (the marker stays, so the plugin
/// knows an empty list is expected).
fn inject_keys(
    attachments: &mut [crate::config::AttachmentConfig],
    keys: &[serde_json::Value],
    path: &str,
    errs: &mut Errors,
) {
    for (i, a) in attachments.iter_mut().enumerate() {
        if !a.config.contains("keys_from_consumers") {
            continue;
        }
        let Ok(mut cfg) = serde_json::from_str::<serde_json::Value>(&a.config) else {
            continue;
        };
        let Some(obj) = cfg.as_object_mut() else {
            continue;
        };
        match obj.get("keys_from_consumers").cloned() {
            Some(serde_json::Value::Bool(true)) => {}
            Some(serde_json::Value::Bool(false)) | None => continue,
            Some(_) => {
                errs.push(
                    format!("{path}[{i}].config.keys_from_consumers"),
                    "expected true or false",
                );
                continue;
            }
        }
        let list = obj
            .entry("keys")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let Some(list) = list.as_array_mut() {
            list.extend(keys.iter().cloned());
        }
        a.config = cfg.to_string().into();
    }
}
