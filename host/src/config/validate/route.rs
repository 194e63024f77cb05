//! Validation of routes: match patterns (host, path), the target (one
//! service or a weighted split), the rewrite template and plugin attachments.

use std::collections::HashMap;
use std::path::Path;

use http::{HeaderName, HeaderValue, Method};

use super::pattern::{
    anchored, parse_host_pattern, parse_path_pattern, parse_path_regex, parse_template,
};
use super::{Errors, ingress};
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::{PathMatch, ValueMatch};

pub(super) fn route(
    r: &RawRoute,
    path: &str,
    services: &HashMap<String, usize>,
    base: &Path,
    errs: &mut Errors,
) -> Option<RouteConfig> {
    let before = errs.0.len();
    let m = &r.matcher;
    let pattern = path_match(m, path, errs);
    let methods = methods(m, path, errs);
    let hosts = hosts(m, path, errs);
    let headers = headers(m, path, errs);
    let query = query(m, path, errs);
    let target = target(r, path, services, errs);
    let rewrite = r
        .rewrite
        .as_ref()
        .and_then(|rw| rewrite(rw, pattern.as_ref(), path, errs));
    let plugins = attachments(&r.plugins, &format!("{path}.plugins"), base, errs);
    let retries = r
        .retries
        .as_ref()
        .map(|rt| super::resilience::retries(rt, &format!("{path}.retries"), errs));
    let timeout = r.timeout.as_ref().map(|d| d.0);
    if timeout.is_some_and(|d| d.is_zero()) {
        errs.push(format!("{path}.timeout"), "must be more than 0s");
    }
    let per_try_timeout = r.per_try_timeout.as_ref().map(|d| d.0);
    if per_try_timeout.is_some_and(|d| d.is_zero()) {
        errs.push(format!("{path}.per_try_timeout"), "must be more than 0s");
    }
    let fallback = r.fallback.as_ref().and_then(|f| {
        super::fallback::fallback(f, &format!("{path}.fallback"), services, None, errs)
    });
    if errs.0.len() > before {
        return None;
    }
    Some(RouteConfig {
        id: r.id.as_str().into(),
        methods,
        hosts,
        path: pattern?,
        headers,
        query,
        priority: r.priority,
        rewrite,
        target: target?,
        plugins,
        preserve_host: r.preserve_host.unwrap_or(true),
        retry_non_idempotent: r.retry_non_idempotent,
        cache: None,
        enabled: r.enabled.unwrap_or(true),
        timeout,
        per_try_timeout,
        retries,
        fallback,
    })
}

/// `match.methods`, upper-cased; none means any method.
fn methods(m: &RawMatch, path: &str, errs: &mut Errors) -> Option<Vec<Method>> {
    m.methods.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .filter_map(
                |(i, s)| match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        errs.push(
                            format!("{path}.match.methods[{i}]"),
                            format!("`{s}` is not an HTTP method"),
                        );
                        None
                    }
                },
            )
            .collect()
    })
}

/// `match.hosts`: exact names or `*.suffix` wildcards.
fn hosts(m: &RawMatch, path: &str, errs: &mut Errors) -> Vec<HostPattern> {
    m.hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match parse_host_pattern(h) {
            Ok(h) => Some(h),
            Err(e) => {
                errs.push(format!("{path}.match.hosts[{i}]"), e);
                None
            }
        })
        .collect()
}

/// `match.path` (a pattern) or `match.path_regex`, exactly one.
fn path_match(m: &RawMatch, path: &str, errs: &mut Errors) -> Option<PathMatch> {
    match (&m.path, &m.path_regex) {
        (Some(p), None) => match parse_path_pattern(p) {
            Ok(p) => Some(PathMatch::Pattern(p)),
            Err(e) => {
                errs.push(format!("{path}.match.path"), e);
                None
            }
        },
        (None, Some(re)) => match parse_path_regex(re) {
            Ok(r) => Some(PathMatch::Regex(r)),
            Err(e) => {
                errs.push(format!("{path}.match.path_regex"), e);
                None
            }
        },
        (Some(_), Some(_)) => {
            errs.push(
                format!("{path}.match"),
                "set either `path` or `path_regex`, not both",
            );
            None
        }
        (None, None) => {
            errs.push(format!("{path}.match"), "missing `path` (or `path_regex`)");
            None
        }
    }
}

/// `match.headers`: per header a value, `{present: bool}` or `{regex}`.
fn headers(m: &RawMatch, path: &str, errs: &mut Errors) -> Vec<(HeaderName, ValueMatch)> {
    m.headers
        .iter()
        .filter_map(|(k, v)| {
            let at = format!("{path}.match.headers.{k}");
            let Ok(name) = HeaderName::try_from(k.as_str()) else {
                errs.push(at, format!("`{k}` is not a header name"));
                return None;
            };
            let cond = value_match(v, &at, errs)?;
            if let ValueMatch::Exact(v) = &cond
                && HeaderValue::try_from(v.as_str()).is_err()
            {
                errs.push(at, "not a valid header value");
                return None;
            }
            Some((name, cond))
        })
        .collect()
}

/// `match.query`: per parameter (decoded name) a value, `{present: bool}` or `{regex}`.
fn query(m: &RawMatch, path: &str, errs: &mut Errors) -> Vec<(String, ValueMatch)> {
    m.query
        .iter()
        .filter_map(|(k, v)| {
            let at = format!("{path}.match.query.{k}");
            if k.is_empty() {
                errs.push(at, "a query parameter needs a name");
                return None;
            }
            Some((k.clone(), value_match(v, &at, errs)?))
        })
        .collect()
}

fn value_match(v: &serde_json::Value, at: &str, errs: &mut Errors) -> Option<ValueMatch> {
    use serde_json::Value;
    const SHAPE: &str = "expected a value, `{ present: true|false }` or `{ regex: \"...\" }`";
    let cond = match v {
        Value::String(s) => ValueMatch::Exact(s.clone()),
        Value::Number(n) => ValueMatch::Exact(n.to_string()),
        Value::Bool(b) => ValueMatch::Exact(b.to_string()),
        Value::Object(o) if o.len() == 1 => match o.iter().next() {
            Some((k, Value::String(s))) if k == "exact" => ValueMatch::Exact(s.clone()),
            Some((k, Value::Bool(true))) if k == "present" => ValueMatch::Present,
            Some((k, Value::Bool(false))) if k == "present" => ValueMatch::Absent,
            Some((k, Value::String(re))) if k == "regex" => match anchored(re) {
                Ok(re) => ValueMatch::Regex(re),
                Err(e) => {
                    errs.push(format!("{at}.regex"), e);
                    return None;
                }
            },
            _ => {
                errs.push(at.to_string(), SHAPE);
                return None;
            }
        },
        _ => {
            errs.push(at.to_string(), SHAPE);
            return None;
        }
    };
    Some(cond)
}

fn target(
    r: &RawRoute,
    path: &str,
    services: &HashMap<String, usize>,
    errs: &mut Errors,
) -> Option<Target> {
    let lookup = |name: &str, at: String, errs: &mut Errors| match services.get(name) {
        Some(&i) => Some(i),
        None => {
            errs.push(at, format!("unknown service \"{name}\""));
            None
        }
    };
    match (&r.upstream, &r.split) {
        (Some(name), None) => {
            if r.split_key.is_some() {
                errs.push(format!("{path}.split_key"), "only meaningful with `split`");
            }
            lookup(name, format!("{path}.upstream"), errs).map(Target::Service)
        }
        (None, Some(arms)) => {
            if arms.is_empty() {
                errs.push(format!("{path}.split"), "needs at least one service");
            }
            let mut out = Vec::new();
            for (i, arm) in arms.iter().enumerate() {
                if arm.weight == 0 {
                    errs.push(format!("{path}.split[{i}].weight"), "must be at least 1");
                }
                if let Some(s) = lookup(&arm.service, format!("{path}.split[{i}].service"), errs) {
                    out.push((s, arm.weight));
                }
            }
            let key = match r.split_key.as_deref() {
                None | Some("random") => SplitKey::Random,
                Some("ip") => SplitKey::ClientIp,
                Some(k) => match k.strip_prefix("header:").map(HeaderName::try_from) {
                    Some(Ok(h)) => SplitKey::Header(h),
                    _ => {
                        errs.push(
                            format!("{path}.split_key"),
                            format!("`{k}`: expected `ip`, `random` or `header:<name>`"),
                        );
                        SplitKey::Random
                    }
                },
            };
            Some(Target::Split { arms: out, key })
        }
        (Some(_), Some(_)) => {
            errs.push(
                path.to_string(),
                "set either `upstream` or `split`, not both",
            );
            None
        }
        (None, None) => {
            errs.push(path.to_string(), "missing `upstream` (or `split`)");
            None
        }
    }
}

fn rewrite(
    rw: &RawRewrite,
    pattern: Option<&PathMatch>,
    path: &str,
    errs: &mut Errors,
) -> Option<Rewrite> {
    match (&rw.strip_prefix, &rw.path) {
        (Some(p), None) if p.starts_with('/') => Some(Rewrite::StripPrefix(p.clone())),
        (Some(_), None) => {
            errs.push(
                format!("{path}.rewrite.strip_prefix"),
                "must start with `/`",
            );
            None
        }
        (None, Some(t)) => match parse_template(t) {
            Ok(parts) => {
                let names = pattern.map(PathMatch::param_names).unwrap_or_default();
                for part in &parts {
                    if let TemplatePart::Param(p) = part
                        && pattern.is_some()
                        && !names.contains(&p.as_str())
                    {
                        errs.push(
                            format!("{path}.rewrite.path"),
                            format!(
                                "`{{{p}}}` is not a parameter (or named capture) of match.path"
                            ),
                        );
                    }
                }
                Some(Rewrite::Template(parts))
            }
            Err(e) => {
                errs.push(format!("{path}.rewrite.path"), e);
                None
            }
        },
        _ => {
            errs.push(
                format!("{path}.rewrite"),
                "set exactly one of `strip_prefix` or `path`",
            );
            None
        }
    }
}

pub(super) fn attachments(
    raw: &[RawAttachment],
    path: &str,
    base: &Path,
    errs: &mut Errors,
) -> Vec<AttachmentConfig> {
    raw.iter()
        .enumerate()
        // A `policy` still here names a policy that is unknown or invalid:
        // its error is reported already (`policy::expand`).
        .filter(|(_, a)| a.policy.is_none())
        .filter_map(|(i, a)| attachment(a, &format!("{path}[{i}]"), base, errs))
        .collect()
}

/// One attachment (or policy) at `p`.
pub(super) fn attachment(
    a: &RawAttachment,
    p: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<AttachmentConfig> {
    if a.name.is_empty() {
        errs.push(
            format!("{p}.name"),
            "an attachment names a plugin (`name`) or a `policy`",
        );
        return None;
    }
    let valid_name = a
        .name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        errs.push(
            format!("{p}.name"),
            format!(
                "`{}`: plugin names use letters, digits, `-` and `_`",
                a.name
            ),
        );
        return None;
    }
    let on_error = match a.on_error.as_deref() {
        None | Some("deny") => OnError::Deny,
        Some("allow") => OnError::Allow,
        Some(other) => {
            errs.push(
                format!("{p}.on_error"),
                format!("`{other}`: expected `deny` or `allow`"),
            );
            return None;
        }
    };
    let config = if a.config.is_null() {
        "{}".to_string()
    } else {
        a.config.to_string()
    };
    let (versions, version_key) = versions(a, p, errs);
    if let Some(f) = &a.shadow
        && !wasm_file(f)
    {
        errs.push(
            format!("{p}.shadow"),
            format!(
                "`{f}`: a file name in plugin_dir ending in .wasm (letters, digits, `-`, `_`, `.`)"
            ),
        );
    }
    Some(AttachmentConfig {
        versions,
        version_key,
        shadow: a.shadow.as_deref().map(std::sync::Arc::from),
        name: a.name.as_str().into(),
        on_error,
        config: config.into(),
        timeout: a.timeout.map_or(DEFAULT_PLUGIN_TIMEOUT, |d| d.0),
        memory_limit: a
            .memory_limit_mb
            .map_or(DEFAULT_PLUGIN_MEMORY, |m| (m as usize) << 20),
        max_instances: a.max_instances.unwrap_or(DEFAULT_MAX_INSTANCES).max(1),
        body_limit: a.body_limit_bytes.unwrap_or(DEFAULT_BODY_LIMIT),
        optional: a.optional,
        allow_read: a.allow_read.iter().map(|d| base.join(d)).collect(),
        counter: ingress::counter(a.counter.as_deref(), p, errs),
        callouts: a.callouts.iter().map(|s| s.as_str().into()).collect(),
        callout_timeout: a.callout_timeout.map_or(DEFAULT_CALLOUT_TIMEOUT, |d| d.0),
        callout_total_timeout: a
            .callout_total_timeout
            .map_or(DEFAULT_CALLOUT_TOTAL_TIMEOUT, |d| d.0),
        callout_max_body: a.callout_max_body_bytes.unwrap_or(DEFAULT_CALLOUT_MAX_BODY),
        callout_cache_ttl: a.callout_cache_ttl.map(|d| d.0),
        sha256: a.sha256.as_deref().and_then(|h| {
            let hex = h.strip_prefix("sha256:").unwrap_or(h).to_ascii_lowercase();
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Some(hex.into())
            } else {
                errs.push(format!("{p}.sha256"), format!("`{h}` is not a hex SHA-256"));
                None
            }
        }),
    })
}

/// Whether `f` names a `.wasm` file in `plugin_dir` (no directories).
fn wasm_file(f: &str) -> bool {
    let stem = f.strip_suffix(".wasm").unwrap_or("");
    !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// `versions` and `version_key`: files in `plugin_dir`, positive weights.
fn versions(a: &RawAttachment, p: &str, errs: &mut Errors) -> (Vec<PluginVersion>, VersionKey) {
    let mut out = Vec::with_capacity(a.versions.len());
    for (i, v) in a.versions.iter().enumerate() {
        let at = format!("{p}.versions[{i}]");
        if !wasm_file(&v.file) {
            errs.push(
                format!("{at}.file"),
                format!("`{}`: a file name in plugin_dir ending in .wasm (letters, digits, `-`, `_`, `.`)", v.file),
            );
        }
        if v.weight == 0 {
            errs.push(format!("{at}.weight"), "must be at least 1");
        }
        if out.iter().any(|o: &PluginVersion| *o.file == *v.file) {
            errs.push(
                format!("{at}.file"),
                format!("`{}` is listed twice", v.file),
            );
        }
        out.push(PluginVersion {
            file: v.file.as_str().into(),
            weight: v.weight,
        });
    }
    if !out.is_empty() && a.sha256.is_some() {
        errs.push(
            format!("{p}.sha256"),
            "`sha256` pins the one file of a plugin; with `versions`, each file is named",
        );
    }
    let key = match a.version_key.as_deref() {
        None | Some("random") => VersionKey::Random,
        Some(_) if out.is_empty() => {
            errs.push(
                format!("{p}.version_key"),
                "only meaningful with `versions`",
            );
            VersionKey::Random
        }
        Some("ip") => VersionKey::ClientIp,
        Some("consumer") => VersionKey::Consumer,
        Some(k) => match k
            .strip_prefix("header:")
            .map(|h| HeaderName::from_bytes(h.as_bytes()))
        {
            Some(Ok(h)) => VersionKey::Header(h),
            _ => {
                errs.push(
                    format!("{p}.version_key"),
                    format!("`{k}`: expected random, ip, consumer or header:<name>"),
                );
                VersionKey::Random
            }
        },
    };
    (out, key)
}

/// Every service an attachment may call must exist: the grant is checked
/// here, when the config is loaded, and again on every call.
pub(super) fn check_callouts(
    global: &[AttachmentConfig],
    routes: &[RouteConfig],
    services: &HashMap<String, usize>,
    errs: &mut Errors,
) {
    let lists = std::iter::once(("plugins".to_string(), global)).chain(
        routes
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("routes[{i}].plugins"), &r.plugins[..])),
    );
    for (path, attachments) in lists {
        for (i, a) in attachments.iter().enumerate() {
            for (j, name) in a.callouts.iter().enumerate() {
                if !services.contains_key(&**name) {
                    errs.push(
                        format!("{path}[{i}].callouts[{j}]"),
                        format!("no service named `{name}`"),
                    );
                }
            }
        }
    }
}
