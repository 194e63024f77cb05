//! Claims → request attributes, for later plugins (acl, rate-limit tiers) and
//! the access log.

use serde_json::{Map, Value};

use crate::config::ClaimNames;

/// The attributes a verified token yields, as (attribute, value).
pub fn attributes(claims: &Map<String, Value>, names: &ClaimNames) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(5);
    if let Some(v) = claims.get(&names.consumer).and_then(scalar) {
        out.push(("consumer", v));
    }
    let scopes = claims.get(&names.scopes).or_else(|| {
        (names.scopes == "scope")
            .then(|| claims.get("scp"))
            .flatten()
    });
    if let Some(v) = scopes.and_then(words) {
        out.push(("scopes", v));
    }
    if let Some(v) = claims.get(&names.roles).and_then(words) {
        out.push(("roles", v));
    }
    if let Some(v) = claims.get(&names.tenant).and_then(scalar) {
        out.push(("tenant", v));
    }
    if let Some(v) = claims.get(&names.tier).and_then(scalar) {
        out.push(("tier", v));
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A space-separated string (OAuth `scope`) or an array of strings, as one
/// space-separated string.
fn words(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.split_whitespace().collect::<Vec<_>>().join(" ")),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_scope_or_scp_and_roles_from_arrays() {
        let names = ClaimNames::default();
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"alice","scp":["orders:read","orders:write"],"roles":"admin  ops","tier":"premium"}"#,
        )
        .unwrap();
        let attrs = attributes(&claims, &names);
        assert_eq!(
            attrs,
            [
                ("consumer", "alice".to_string()),
                ("scopes", "orders:read orders:write".to_string()),
                ("roles", "admin ops".to_string()),
                ("tier", "premium".to_string()),
            ]
        );
    }
}
