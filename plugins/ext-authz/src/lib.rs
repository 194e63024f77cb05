//! `ext-authz`: asks an authorization service whether a request may pass, in
//! the HTTP mode of Envoy's ext_authz (also Traefik's forwardAuth and nginx's
//! `auth_request`). The check goes to a service of the config through a
//! callout, with the request's method and path (under `path_prefix`) and the
//! headers listed in `allowed_request_headers`.
//!
//! - 2xx: the request continues; the headers in `allowed_upstream_headers` are
//!   copied from the answer onto the upstream request, and `attributes` maps
//!   answer headers to attributes for later plugins (`consumer`, ...).
//! - any other status: the client gets the service's status, body and the
//!   headers in `allowed_client_headers`.
//! - no answer (timeout, unreachable, not granted): `status_on_error` (403),
//!   unless `failure_mode_allow` lets the request through.

use std::collections::BTreeMap;

use gatehouse_plugin_sdk::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The authorization service (it must be in the attachment's `callouts`).
    service: String,
    /// Put before the request's path in the check (`/authz` + `/orders/7`).
    #[serde(default)]
    path_prefix: String,
    /// Request headers sent with the check (besides `x-forwarded-*`).
    #[serde(default = "default_request_headers")]
    allowed_request_headers: Vec<String>,
    /// Answer headers of an allowed check copied onto the upstream request.
    #[serde(default)]
    allowed_upstream_headers: Vec<String>,
    /// Answer headers of a denial passed to the client; empty: all but the
    /// ones that frame the message.
    #[serde(default)]
    allowed_client_headers: Vec<String>,
    /// Attribute name → answer header of an allowed check.
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    /// Also send the request body (buffered up to the attachment's
    /// `body_limit_bytes`); the check then runs on the body hook.
    #[serde(default)]
    include_body: bool,
    /// Let requests through when the service gives no answer.
    #[serde(default)]
    failure_mode_allow: bool,
    /// Status when the service gives no answer (and failure_mode_allow is off).
    #[serde(default = "default_status_on_error")]
    status_on_error: u16,
    /// A bound shorter than the attachment's `callout_timeout`.
    timeout_ms: Option<u32>,
}

fn default_request_headers() -> Vec<String> {
    vec!["authorization".into(), "cookie".into()]
}

fn default_status_on_error() -> u16 {
    403
}

/// What the service said.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
    NoAnswer,
}

fn verdict(answer: &Result<callout::Response, callout::Error>) -> Verdict {
    match answer {
        Ok(r) if (200..300).contains(&r.status) => Verdict::Allow,
        Ok(_) => Verdict::Deny,
        Err(_) => Verdict::NoAnswer,
    }
}

/// Headers that belong to the message's framing, never copied across.
fn framing(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-connection"
    )
}

struct ExtAuthz(Config);

impl ExtAuthz {
    fn check(&self, ctx: &Context, req: &Request, body: Vec<u8>) -> Result<(), Response> {
        let c = &self.0;
        let mut path = format!("{}{}", c.path_prefix, req.path());
        if let Some(q) = req.query() {
            path.push('?');
            path.push_str(&q);
        }
        let mut check = callout::Request::new(&c.service, &req.method(), &path)
            .header("x-forwarded-method", req.method())
            .header("x-forwarded-uri", &path[c.path_prefix.len()..])
            .header("x-forwarded-proto", req.scheme())
            .header("x-forwarded-for", ctx.client_ip())
            .header("x-request-id", ctx.request_id())
            .body(body);
        if let Some(host) = req.authority() {
            check = check.header("x-forwarded-host", host);
        }
        for name in &c.allowed_request_headers {
            for value in req.header_all(name) {
                check = check.header(name, value);
            }
        }
        if let Some(ms) = c.timeout_ms {
            check = check.timeout_ms(ms);
        }
        let answer = callout::send(&check);
        match (verdict(&answer), answer) {
            (Verdict::Allow, Ok(r)) => {
                for name in &c.allowed_upstream_headers {
                    match r.header(name) {
                        Some(v) => req.set_header(name, v),
                        None => req.remove_header(name),
                    }
                }
                for (attr, header) in &c.attributes {
                    if let Some(v) = r.header(header) {
                        ctx.set_attribute(attr, &String::from_utf8_lossy(v));
                    }
                }
                Ok(())
            }
            (Verdict::Deny, Ok(r)) => {
                let mut out = Response::new(r.status).body(r.body.clone());
                for h in &r.headers {
                    let listed = c.allowed_client_headers.is_empty()
                        || c.allowed_client_headers
                            .iter()
                            .any(|a| a.eq_ignore_ascii_case(&h.name));
                    if listed && !framing(&h.name) {
                        out = out.header(&h.name, &h.value);
                    }
                }
                Err(out)
            }
            (_, Err(e)) => {
                host::log(
                    Level::Warn,
                    &format!(
                        "authorization service `{}` gave no answer: {e:?}",
                        c.service
                    ),
                );
                if c.failure_mode_allow {
                    Ok(())
                } else {
                    Err(Response::error(
                        c.status_on_error,
                        "authorization_unavailable",
                        &ctx.request_id(),
                    ))
                }
            }
            (_, Ok(_)) => Ok(()),
        }
    }
}

impl Plugin for ExtAuthz {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.service.is_empty() {
            return Err("`service` is required".into());
        }
        if !config.path_prefix.is_empty() && !config.path_prefix.starts_with('/') {
            return Err("`path_prefix` must start with `/`".into());
        }
        if !(100..=599).contains(&config.status_on_error) {
            return Err(format!(
                "status_on_error {} is not an HTTP status",
                config.status_on_error
            ));
        }
        // Headers the service vouches for: a client must not send them itself.
        let vouched = config
            .allowed_upstream_headers
            .iter()
            .chain(config.attributes.values());
        for name in vouched {
            host::identity_header(name);
        }
        Ok(Self(config))
    }

    fn features(&self) -> Features {
        if self.0.include_body {
            Features::REQUEST_BODY
        } else {
            Features::empty()
        }
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        if self.0.include_body {
            return Action::Continue;
        }
        match self.check(ctx, req, Vec::new()) {
            Ok(()) => Action::Continue,
            Err(r) => r.into(),
        }
    }

    fn on_request_body(&self, ctx: &Context, req: &Request, body: Vec<u8>) -> BodyAction {
        match self.check(ctx, req, body) {
            Ok(()) => BodyAction::Continue,
            Err(r) => r.into(),
        }
    }
}

export_plugin!(ExtAuthz);

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Result<callout::Response, callout::Error> {
        Ok(callout::Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        })
    }

    #[test]
    fn only_2xx_allows_and_no_answer_is_its_own_case() {
        assert_eq!(verdict(&answer(200)), Verdict::Allow);
        assert_eq!(verdict(&answer(204)), Verdict::Allow);
        assert_eq!(verdict(&answer(302)), Verdict::Deny);
        assert_eq!(verdict(&answer(401)), Verdict::Deny);
        assert_eq!(verdict(&answer(500)), Verdict::Deny);
        assert_eq!(verdict(&Err(callout::Error::Timeout)), Verdict::NoAnswer);
    }

    #[test]
    fn framing_headers_never_cross() {
        assert!(framing("Content-Length"));
        assert!(framing("transfer-encoding"));
        assert!(!framing("www-authenticate"));
    }
}
