//! Named policies: `policies: { standard-user: { name: rate-limit, config: … } }`
//! defined once and attached anywhere as `{ policy: standard-user }`. Each
//! reference becomes a copy of the policy before the attachments are
//! validated, so the rest of the gateway sees ordinary attachments: a route
//! gets its own instances and its own rate-limit counters (unless the policy
//! sets `counter`), and an edit of the policy reaches every route that names
//! it with the next snapshot.

use std::path::Path;

use super::Errors;
use super::route::attachment;
use crate::config::raw::{RawAttachment, RawConfig};

/// Checks every policy, then replaces each `{ policy: … }` reference with a
/// copy of it. A reference to an unknown or invalid policy stays (and is
/// skipped by the attachment validation): its error is reported here.
pub(super) fn expand(raw: &mut RawConfig, base: &Path, errs: &mut Errors) {
    let mut valid = std::collections::BTreeMap::new();
    for (name, p) in &raw.policies {
        let path = format!("policies.{name}");
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok_name {
            errs.push(
                path,
                format!("`{name}`: policy names are 1 to 64 letters, digits, `-`, `_` or `.`"),
            );
            continue;
        }
        if p.policy.is_some() {
            errs.push(
                format!("{path}.policy"),
                "a policy names a plugin, not another policy",
            );
            continue;
        }
        let before = errs.len();
        if attachment(p, &path, base, errs).is_some() && errs.len() == before {
            valid.insert(name.clone(), p.clone());
        }
    }
    let known = || {
        let names: Vec<&str> = raw.policies.keys().map(String::as_str).collect();
        if names.is_empty() {
            "there are no `policies`".to_string()
        } else {
            format!("policies: {}", names.join(", "))
        }
    };
    let mut lists: Vec<(String, &mut Vec<RawAttachment>)> =
        vec![("plugins".to_string(), &mut raw.plugins)];
    for (i, r) in raw.routes.iter_mut().enumerate() {
        lists.push((format!("routes[{i}].plugins"), &mut r.plugins));
    }
    let mut unknown = Vec::new();
    for (path, list) in lists {
        for (i, a) in list.iter_mut().enumerate() {
            let Some(name) = a.policy.clone() else {
                continue;
            };
            let at = format!("{path}[{i}]");
            if !only_policy(a) {
                errs.push(
                    at,
                    "an attachment with `policy` takes everything from the policy: set nothing else",
                );
                continue;
            }
            match (valid.get(&name), raw.policies.contains_key(&name)) {
                (Some(p), _) => *a = p.clone(),
                // Its own errors are reported under `policies.{name}`.
                (None, true) => {}
                (None, false) => unknown.push((format!("{at}.policy"), name)),
            }
        }
    }
    for (at, name) in unknown {
        errs.push(at, format!("unknown policy `{name}` ({})", known()));
    }
}

/// Whether `a` sets nothing but `policy`.
fn only_policy(a: &RawAttachment) -> bool {
    let bare = RawAttachment {
        policy: a.policy.clone(),
        ..RawAttachment::default()
    };
    *a == bare
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    const BASE: &str = "services: [{ name: s, instances: [{ url: \"http://127.0.0.1:1\" }] }]\n";

    fn parsed(rest: &str) -> Result<crate::config::Config, Vec<String>> {
        parse(Path::new("t.yaml"), &format!("{BASE}{rest}"))
            .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_reference_is_a_copy_of_the_policy() {
        let cfg = parsed(
            "policies:\n  standard-user: { name: rate-limit, on_error: allow, config: { limit: 5 } }\nplugins: [{ policy: standard-user }]\nroutes:\n  - { id: a, match: { path: /a }, upstream: s, plugins: [{ policy: standard-user }, { name: cors }] }\n  - { id: b, match: { path: /b }, upstream: s, plugins: [{ policy: standard-user }] }\n",
        )
        .expect("valid");
        for a in [
            &cfg.global_plugins[0],
            &cfg.routes[0].plugins[0],
            &cfg.routes[1].plugins[0],
        ] {
            assert_eq!(&*a.name, "rate-limit");
            assert_eq!(&*a.config, r#"{"limit":5}"#);
            assert_eq!(a.on_error, crate::config::OnError::Allow);
        }
        assert_eq!(&*cfg.routes[0].plugins[1].name, "cors");
    }

    #[test]
    fn unknown_invalid_and_overridden_references_are_named() {
        let routes = |plugins: &str| {
            format!(
                "policies:\n  p: {{ name: rate-limit }}\n  bad: {{ name: rate-limit, on_error: maybe }}\nroutes:\n  - {{ id: a, match: {{ path: /a }}, upstream: s, plugins: {plugins} }}\n"
            )
        };
        assert_eq!(
            parsed(&routes("[{ policy: nope }]")).unwrap_err(),
            [
                "policies.bad.on_error: `maybe`: expected `deny` or `allow`",
                "routes[0].plugins[0].policy: unknown policy `nope` (policies: bad, p)"
            ]
        );
        // The invalid policy's error is reported once, where it is defined.
        assert_eq!(
            parsed(&routes("[{ policy: bad }]")).unwrap_err(),
            ["policies.bad.on_error: `maybe`: expected `deny` or `allow`"]
        );
        let errs = parsed(
            "policies: { p: { name: rate-limit } }\nroutes:\n  - { id: a, match: { path: /a }, upstream: s, plugins: [{ policy: p, config: { limit: 1 } }, {}] }\n",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "routes[0].plugins[0]: an attachment with `policy` takes everything from the policy: set nothing else",
                "routes[0].plugins[1].name: an attachment names a plugin (`name`) or a `policy`"
            ]
        );
        assert_eq!(
            parsed("policies: { \"a b\": { name: x }, q: { policy: p } }\n").unwrap_err(),
            [
                "policies.a b: `a b`: policy names are 1 to 64 letters, digits, `-`, `_` or `.`",
                "policies.q.policy: a policy names a plugin, not another policy"
            ]
        );
    }
}
