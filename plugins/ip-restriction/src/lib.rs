//! `ip-restriction`: allow and deny lists of IPv4/IPv6 networks, checked
//! against the client address the host computed (which honours the gateway's
//! `trusted_proxies`, so `X-Forwarded-For` from anyone else is ignored).

use std::net::IpAddr;

use gatehouse_plugin_sdk::*;
use ipnet::IpNet;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// When not empty, only these networks get through.
    allow: Vec<String>,
    /// These networks never get through (checked first).
    deny: Vec<String>,
}

struct IpRestriction {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

fn nets(list: &[String], key: &str) -> Result<Vec<IpNet>, String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{key}[{i}]: `{s}` is not an IP address or CIDR"))
        })
        .collect()
}

impl IpRestriction {
    fn allows(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen on a dual-stack socket as ::ffff:a.b.c.d is still IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !self.deny.iter().any(|n| n.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
    }
}

impl Plugin for IpRestriction {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        if c.allow.is_empty() && c.deny.is_empty() {
            return Err("set `allow`, `deny`, or both".into());
        }
        Ok(IpRestriction {
            allow: nets(&c.allow, "allow")?,
            deny: nets(&c.deny, "deny")?,
        })
    }

    fn on_request(&self, ctx: &Context, _req: &Request) -> Action {
        let allowed = ctx
            .client_ip()
            .parse::<IpAddr>()
            .is_ok_and(|ip| self.allows(ip));
        if allowed {
            return Action::Continue;
        }
        let body = serde_json::json!({
            "error": "forbidden",
            "error_description": "client address not allowed",
            "request_id": ctx.request_id(),
        });
        Response::json(403, &body).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_allow_limits() {
        let r = IpRestriction::new(Config {
            allow: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            deny: vec!["10.6.6.6".into()],
        })
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(r.allows(ip("10.1.2.3")));
        assert!(r.allows(ip("::ffff:10.1.2.3")));
        assert!(r.allows(ip("2001:db8::1")));
        assert!(!r.allows(ip("10.6.6.6")));
        assert!(!r.allows(ip("192.168.1.1")));
        assert!(
            IpRestriction::new(Config {
                allow: vec!["10.0.0.0/33".into()],
                deny: vec![]
            })
            .is_err_and(|e| e.contains("allow[0]"))
        );
    }
}

export_plugin!(IpRestriction);
