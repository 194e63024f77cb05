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

/// The config's consumers and their keys, checked: unique names, unique
/// key ids per consumer, and no hash shared by two keys.
pub(super) fn consumers(raw: &[RawConsumer], errs: &mut Errors) -> Vec<ConsumerConfig> {
    let mut names = std::collections::HashSet::new();
    let mut hashes = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        if !names.insert(c.name.as_str()) {
            errs.push(
                format!("consumers[{i}].name"),
                format!("duplicate consumer \"{}\"", c.name),
            );
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = Vec::with_capacity(c.keys.len());
        for (k, key) in c.keys.iter().enumerate() {
            let at = format!("consumers[{i}].keys[{k}]");
            let record = crate::credentials::KeyRecord {
                consumer: c.name.clone(),
                id: key.id.clone(),
                hash: key.hash.clone(),
                scopes: key.scopes.clone(),
                tier: key.tier.clone(),
                expires: key.expires.clone(),
                enabled: key.enabled.unwrap_or(true),
                created: key.created.clone(),
            };
            if !ids.insert(key.id.as_str()) {
                errs.push(
                    format!("{at}.id"),
                    format!("duplicate key id \"{}\"", key.id),
                );
            }
            match crate::credentials::parse_key(&record) {
                Ok((hash, expires_ms)) => {
                    if !hashes.insert(hash) {
                        errs.push(format!("{at}.hash"), "the same hash as an earlier key");
                    }
                    keys.push(ConsumerKey {
                        hash,
                        expires_ms,
                        record,
                    });
                }
                Err(crate::credentials::StoreError::Invalid { field, message }) => {
                    let field = if field == "consumer" { "name" } else { field };
                    let path = if field == "name" {
                        format!("consumers[{i}].name")
                    } else {
                        format!("{at}.{field}")
                    };
                    errs.push(path, message);
                }
                Err(e) => errs.push(at, e.to_string()),
            }
        }
        out.push(ConsumerConfig {
            name: c.name.clone(),
            keys,
        });
    }
    out
}

/// `consumer_store`.
pub(super) fn consumer_store(
    raw: Option<&RawConsumerStore>,
    base: &Path,
    errs: &mut Errors,
) -> ConsumerStoreConfig {
    let mut out = ConsumerStoreConfig::default();
    let Some(raw) = raw else {
        return out;
    };
    out.path = raw.path.as_ref().map(|p| base.join(p));
    if let Some(d) = &raw.flush_interval {
        if d.0 < Duration::from_millis(100) {
            errs.push("consumer_store.flush_interval", "must be at least 100ms");
        }
        out.flush_interval = d.0;
    }
    out
}
