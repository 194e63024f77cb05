//! `rate-limit`: counts requests per key with the host's rate-limit primitive
//! (token bucket or sliding window; the counters live in the host, so they
//! survive instance recycling and hot swaps) and answers 429 with
//! `Retry-After`, IETF `RateLimit-Policy`/`RateLimit` and `X-RateLimit-*`
//! headers. Allowed responses carry the same headers, handed to the host at
//! request time (`set-response-headers`), so the plugin needs no response hook.

mod config;

use config::{Config, OnBackendError, Scope};
use gatehouse_plugin_sdk::host::{self, LimitDecision, LimitRequest};
use gatehouse_plugin_sdk::*;

struct RateLimit {
    config: Config,
    /// Each limit's name in the headers, resolved once.
    names: Vec<String>,
    /// Whether any limit has tiers (otherwise the `tier` attribute is not read).
    tiered: bool,
}

impl Plugin for RateLimit {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        let names = config
            .limits
            .iter()
            .enumerate()
            .map(|(i, l)| l.name(i))
            .collect();
        let tiered = config.limits.iter().any(|l| !l.tiers.is_empty());
        Ok(RateLimit {
            config,
            names,
            tiered,
        })
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        let tier = if self.tiered {
            ctx.attribute("tier")
        } else {
            None
        };
        // The most restrictive allowed decision is reported on the response.
        let mut tightest: Option<(usize, LimitDecision)> = None;
        for (i, limit) in self.config.limits.iter().enumerate() {
            let Some(max) = limit.limit_for(tier.as_deref()) else {
                continue;
            };
            let request = LimitRequest {
                key: key_for(i, &limit.scope, self.config.ipv6_prefix, ctx, req),
                algorithm: self.config.algorithm.into(),
                backend: self.config.backend.into(),
                limit: max,
                window_ms: limit.window_ms,
                burst: limit.burst.unwrap_or(0),
                cost: 1,
            };
            match host::rate_limit(&request) {
                Ok(d) if !d.allowed => {
                    return too_many(ctx, &self.names[i], limit.window_ms, &d);
                }
                Ok(d) => {
                    if tightest
                        .as_ref()
                        .is_none_or(|(_, t)| d.remaining < t.remaining)
                    {
                        tightest = Some((i, d));
                    }
                }
                Err(e) => match self.config.on_backend_error {
                    OnBackendError::Allow => {
                        host::log(
                            Level::Warn,
                            &format!("rate-limit backend unavailable, allowing: {e}"),
                        );
                    }
                    OnBackendError::Deny => {
                        host::log(
                            Level::Error,
                            &format!("rate-limit backend unavailable, denying: {e}"),
                        );
                        return Response::error(503, "rate_limit_unavailable", &ctx.request_id())
                            .into();
                    }
                },
            }
        }
        if let Some((i, d)) = tightest {
            let headers = headers_for(&self.names[i], self.config.limits[i].window_ms, &d);
            ctx.set_response_headers(&headers.map(|(name, value)| Header {
                name: name.to_string(),
                value: value.into_bytes(),
            }));
        }
        Action::Continue
    }
}

/// The counter key for one request: the limit's index, then the scope's parts,
/// joined with `|`. A consumer scope without an authenticated consumer falls
/// back to the client IP, so anonymous traffic is never unlimited.
fn key_for(i: usize, scope: &[Scope], v6: u8, ctx: &Context, req: &Request) -> String {
    let mut key = String::with_capacity(48);
    push_u64(&mut key, i as u64);
    for s in scope {
        key.push('|');
        match s {
            Scope::Ip => push_ip(&mut key, v6, ctx),
            Scope::Consumer => match ctx.attribute("consumer") {
                Some(c) => push2(&mut key, "consumer:", &c),
                None => push_ip(&mut key, v6, ctx),
            },
            Scope::ApiKey => match ctx
                .attribute("api_key_id")
                .or_else(|| ctx.attribute("consumer"))
            {
                Some(k) => push2(&mut key, "key:", &k),
                None => push_ip(&mut key, v6, ctx),
            },
            Scope::Route => push2(&mut key, "route:", &ctx.route_id()),
            Scope::Header(h) => {
                push2(&mut key, "h:", h);
                push2(&mut key, ":", &req.header_str(h).unwrap_or_default());
            }
            Scope::Global => key.push_str("global"),
        }
    }
    key
}

fn push_ip(key: &mut String, v6: u8, ctx: &Context) {
    let ip = ctx.client_ip();
    key.push_str("ip:");
    match ip.parse::<std::net::Ipv6Addr>() {
        Ok(addr) if v6 < 128 && addr.to_ipv4_mapped().is_none() => push_v6_prefix(key, addr, v6),
        _ => key.push_str(&ip),
    }
}

/// `addr` masked to its first `bits` bits, then `/bits`.
fn push_v6_prefix(key: &mut String, addr: std::net::Ipv6Addr, bits: u8) {
    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
    let net = std::net::Ipv6Addr::from(u128::from(addr) & mask);
    key.push_str(&net.to_string());
    key.push('/');
    push_u64(key, u64::from(bits));
}

fn push2(key: &mut String, prefix: &str, value: &str) {
    key.push_str(prefix);
    key.push_str(value);
}

/// The IETF draft headers and the `X-RateLimit-*` ones. Built without
/// `format!`: `core::fmt` cost ~2.3k guest instructions on every request
/// (callgrind), a fifth of the plugin's own work.
fn headers_for(name: &str, window_ms: u64, d: &LimitDecision) -> [(&'static str, String); 5] {
    let reset_s = d.reset_ms.div_ceil(1000);
    let quoted = |parts: &[(&str, u64)]| {
        let mut v = String::with_capacity(name.len() + 24);
        v.push('"');
        v.push_str(name);
        v.push('"');
        for (label, n) in parts {
            v.push_str(label);
            push_u64(&mut v, *n);
        }
        v
    };
    let number = |n: u64| {
        let mut v = String::with_capacity(20);
        push_u64(&mut v, n);
        v
    };
    [
        (
            "ratelimit-policy",
            quoted(&[(";q=", d.limit.into()), (";w=", window_ms.div_ceil(1000))]),
        ),
        (
            "ratelimit",
            quoted(&[(";r=", d.remaining.into()), (";t=", reset_s)]),
        ),
        ("x-ratelimit-limit", number(d.limit.into())),
        ("x-ratelimit-remaining", number(d.remaining.into())),
        ("x-ratelimit-reset", number(reset_s)),
    ]
}

/// Appends `n` in decimal.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

fn too_many(ctx: &Context, name: &str, window_ms: u64, d: &LimitDecision) -> Action {
    let mut r = Response::error(429, "rate_limited", &ctx.request_id()).header(
        "retry-after",
        d.retry_after_ms.div_ceil(1000).max(1).to_string(),
    );
    for (k, v) in headers_for(name, window_ms, d) {
        r = r.header(k, v);
    }
    r.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_ietf_draft_and_the_x_ratelimit_convention() {
        let d = LimitDecision {
            allowed: true,
            limit: 100,
            remaining: 42,
            reset_ms: 1500,
            retry_after_ms: 0,
        };
        let h = headers_for("per-ip", 60_000, &d);
        assert_eq!(
            h[0],
            ("ratelimit-policy", "\"per-ip\";q=100;w=60".to_string())
        );
        assert_eq!(h[1], ("ratelimit", "\"per-ip\";r=42;t=2".to_string()));
        assert_eq!(h[3], ("x-ratelimit-remaining", "42".to_string()));
        assert_eq!(h[4], ("x-ratelimit-reset", "2".to_string()));
        assert_eq!(h[2], ("x-ratelimit-limit", "100".to_string()));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix() {
        let key = |ip: &str, bits| {
            let mut k = String::new();
            push_v6_prefix(&mut k, ip.parse().unwrap(), bits);
            k
        };
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9", 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9", 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8::1", 1), "::/1");
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 1000, 4_294_967_295, u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }
}

export_plugin!(RateLimit);
