//! `rate-limit`: counts requests per key with the host's rate-limit primitive
//! (token bucket or sliding window; the counters live in the host, so they
//! survive instance recycling and hot swaps) and answers 429 with
//! `Retry-After`, IETF `RateLimit-Policy`/`RateLimit` and `X-RateLimit-*`
//! headers. Allowed responses carry the same headers.

mod config;

use config::{Config, OnBackendError, Scope};
use gatehouse_plugin_sdk::host::{self, LimitDecision, LimitRequest};
use gatehouse_plugin_sdk::*;

struct RateLimit(Config);

/// Attribute carrying the decision to the response hook (which may run on
/// another instance, so it cannot live in plugin memory).
const DECISION: &str = "rate-limit.decision";

impl Plugin for RateLimit {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(RateLimit(config))
    }

    fn features(&self) -> Features {
        Features::RESPONSE_HEADERS
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        // The most restrictive allowed decision is reported on the response.
        let mut tightest: Option<(usize, LimitDecision)> = None;
        for (i, limit) in self.0.limits.iter().enumerate() {
            let tier = ctx.attribute("tier");
            let Some(max) = limit.limit_for(tier.as_deref()) else {
                continue;
            };
            let key = format!("{i}|{}", key_for(&limit.scope, ctx, req));
            let request = LimitRequest {
                key,
                algorithm: self.0.algorithm.into(),
                backend: self.0.backend.into(),
                limit: max,
                window_ms: limit.window_ms,
                burst: limit.burst.unwrap_or(0),
                cost: 1,
            };
            match host::rate_limit(&request) {
                Ok(d) if !d.allowed => return too_many(ctx, &limit.name(i), limit.window_ms, &d),
                Ok(d) => {
                    if tightest
                        .as_ref()
                        .is_none_or(|(_, t)| d.remaining < t.remaining)
                    {
                        tightest = Some((i, d));
                    }
                }
                Err(e) => match self.0.on_backend_error {
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
            let l = &self.0.limits[i];
            ctx.set_attribute(DECISION, &encode(&l.name(i), l.window_ms, &d));
        }
        Action::Continue
    }

    fn on_response(&self, ctx: &Context, _req: &Request, resp: &ResponseHeadRef) -> ResponseAction {
        if let Some(headers) = ctx.attribute(DECISION).as_deref().and_then(decode) {
            for (name, value) in headers {
                resp.set_header(&name, value.as_bytes());
            }
        }
        ResponseAction::Continue
    }
}

/// The counter key for one request: the scope's parts joined. A consumer scope
/// without an authenticated consumer falls back to the client IP, so anonymous
/// traffic is never unlimited.
fn key_for(scope: &[Scope], ctx: &Context, req: &Request) -> String {
    let parts: Vec<String> = scope
        .iter()
        .map(|s| match s {
            Scope::Ip => format!("ip:{}", ctx.client_ip()),
            Scope::Consumer => match ctx.attribute("consumer") {
                Some(c) => format!("consumer:{c}"),
                None => format!("ip:{}", ctx.client_ip()),
            },
            Scope::ApiKey => match ctx
                .attribute("api_key_id")
                .or_else(|| ctx.attribute("consumer"))
            {
                Some(k) => format!("key:{k}"),
                None => format!("ip:{}", ctx.client_ip()),
            },
            Scope::Route => format!("route:{}", ctx.route_id()),
            Scope::Header(h) => format!("h:{h}:{}", req.header_str(h).unwrap_or_default()),
            Scope::Global => "global".to_string(),
        })
        .collect();
    parts.join("|")
}

fn headers_for(name: &str, window_ms: u64, d: &LimitDecision) -> Vec<(String, String)> {
    let reset_s = d.reset_ms.div_ceil(1000);
    vec![
        (
            "ratelimit-policy".into(),
            format!("\"{name}\";q={};w={}", d.limit, window_ms.div_ceil(1000)),
        ),
        (
            "ratelimit".into(),
            format!("\"{name}\";r={};t={reset_s}", d.remaining),
        ),
        ("x-ratelimit-limit".into(), d.limit.to_string()),
        ("x-ratelimit-remaining".into(), d.remaining.to_string()),
        ("x-ratelimit-reset".into(), reset_s.to_string()),
    ]
}

fn too_many(ctx: &Context, name: &str, window_ms: u64, d: &LimitDecision) -> Action {
    let mut r = Response::error(429, "rate_limited", &ctx.request_id()).header(
        "retry-after",
        d.retry_after_ms.div_ceil(1000).max(1).to_string(),
    );
    for (k, v) in headers_for(name, window_ms, d) {
        r = r.header(&k, v);
    }
    r.into()
}

fn encode(name: &str, window_ms: u64, d: &LimitDecision) -> String {
    let headers: Vec<[String; 2]> = headers_for(name, window_ms, d)
        .into_iter()
        .map(|(k, v)| [k, v])
        .collect();
    serde_json::to_string(&headers).unwrap_or_default()
}

fn decode(s: &str) -> Option<Vec<(String, String)>> {
    let v: Vec<[String; 2]> = serde_json::from_str(s).ok()?;
    Some(v.into_iter().map(|[k, v]| (k, v)).collect())
}

export_plugin!(RateLimit);
