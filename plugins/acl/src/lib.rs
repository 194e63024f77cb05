//! `acl`: authorizes a request from the attributes an authentication plugin
//! set before it (`consumer`, `scopes`, `roles`). No consumer → 401; a consumer
//! without the required grants → 403.

use gatehouse_plugin_sdk::*;
use serde::Deserialize;

/// The config as written; at least one rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// At least one of these scopes or roles.
    require_any: Vec<String>,
    /// Every one of these scopes or roles.
    require_all: Vec<String>,
    /// Only these consumers (when not empty).
    allow_consumers: Vec<String>,
    /// Never these consumers.
    deny_consumers: Vec<String>,
}

struct Acl(Config);

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    NoConsumer,
    Forbidden(&'static str),
}

impl Acl {
    fn decide(&self, consumer: Option<&str>, grants: &[&str]) -> Result<(), Refusal> {
        let c = &self.0;
        let consumer = consumer.ok_or(Refusal::NoConsumer)?;
        if c.deny_consumers.iter().any(|d| d == consumer) {
            return Err(Refusal::Forbidden("consumer denied"));
        }
        if !c.allow_consumers.is_empty() && !c.allow_consumers.iter().any(|a| a == consumer) {
            return Err(Refusal::Forbidden("consumer not allowed"));
        }
        let has = |g: &String| grants.contains(&g.as_str());
        if !c.require_all.iter().all(has) {
            return Err(Refusal::Forbidden("missing a required scope or role"));
        }
        if !c.require_any.is_empty() && !c.require_any.iter().any(has) {
            return Err(Refusal::Forbidden("none of the accepted scopes or roles"));
        }
        Ok(())
    }
}

impl Plugin for Acl {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let c = &config;
        if c.require_any.is_empty()
            && c.require_all.is_empty()
            && c.allow_consumers.is_empty()
            && c.deny_consumers.is_empty()
        {
            return Err(
                "no rule: set require_any, require_all, allow_consumers or deny_consumers".into(),
            );
        }
        Ok(Acl(config))
    }

    fn on_request(&self, ctx: &Context, _req: &Request) -> Action {
        let consumer = ctx.attribute("consumer");
        let (scopes, roles) = (ctx.attribute("scopes"), ctx.attribute("roles"));
        let grants: Vec<&str> = scopes
            .iter()
            .chain(roles.iter())
            .flat_map(|s| s.split_whitespace())
            .collect();
        match self.decide(consumer.as_deref(), &grants) {
            Ok(()) => Action::Continue,
            Err(Refusal::NoConsumer) => {
                Response::error(401, "unauthorized", &ctx.request_id()).into()
            }
            Err(Refusal::Forbidden(why)) => {
                let body = serde_json::json!({
                    "error": "forbidden",
                    "error_description": why,
                    "request_id": ctx.request_id(),
                });
                Response::json(403, &body).into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(any: &[&str], all: &[&str], allow: &[&str], deny: &[&str]) -> Acl {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Acl(Config {
            require_any: v(any),
            require_all: v(all),
            allow_consumers: v(allow),
            deny_consumers: v(deny),
        })
    }

    #[test]
    fn rules() {
        let a = acl(
            &["admin", "orders:read"],
            &["tenant:acme"],
            &[],
            &["mallory"],
        );
        assert_eq!(a.decide(None, &[]), Err(Refusal::NoConsumer));
        assert!(
            a.decide(Some("alice"), &["orders:read", "tenant:acme"])
                .is_ok()
        );
        assert!(a.decide(Some("alice"), &["orders:read"]).is_err());
        assert!(a.decide(Some("alice"), &["tenant:acme"]).is_err());
        assert!(
            a.decide(Some("mallory"), &["admin", "tenant:acme"])
                .is_err()
        );
        let only = acl(&[], &[], &["bob"], &[]);
        assert!(only.decide(Some("bob"), &[]).is_ok());
        assert!(only.decide(Some("alice"), &[]).is_err());
    }
}

export_plugin!(Acl);
