//! Test plugin with one behaviour per `mode`, used by the end-to-end tests to
//! exercise the runtime: edits, short-circuits, bodies, attributes, and every
//! way a guest can misbehave.

use gatehouse_plugin_sdk::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
enum Config {
    /// Sets a request header (and, on the response, `x-seen-by`).
    AddHeader { name: String, value: String },
    /// Answers `status` itself unless the request carries `x-allow: yes`.
    Deny { status: u16 },
    /// Upper-cases the request body and appends to the response body.
    RewriteBody { suffix: String },
    /// Sets a context attribute (and counts it in the plugin's own metrics).
    SetAttr { name: String, value: String },
    /// Copies a context attribute into a request header (`missing` if unset).
    ReadAttr { name: String, header: String },
    /// Panics on requests whose path contains `/boom`.
    Panic,
    /// Loops forever on requests whose path contains `/spin`.
    Loop,
    /// Allocates `mb` MiB on requests whose path contains `/hog`.
    Hog { mb: usize },
    /// Busy-waits `ms` milliseconds on every request.
    Sleep { ms: u64 },
    /// Echoes path params and the request id into headers.
    Echo,
    /// Calls `service` at each of `paths` (all at once when there are
    /// several) and reports the answers upstream: `x-callout-status` is the
    /// statuses in order (`error` for none), `x-callout-error` the first
    /// error, `x-callout-body` the first answer's body.
    Callout { service: String, paths: Vec<String> },
}

struct Kit(Config);

impl Plugin for Kit {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if let Config::Deny { status } = &config
            && !(100..=599).contains(status)
        {
            return Err(format!("status {status} is not an HTTP status"));
        }
        Ok(Kit(config))
    }

    fn features(&self) -> Features {
        match self.0 {
            Config::AddHeader { .. } => Features::RESPONSE_HEADERS,
            Config::RewriteBody { .. } => Features::REQUEST_BODY | Features::RESPONSE_BODY,
            _ => Features::empty(),
        }
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        let path = req.path();
        match &self.0 {
            Config::AddHeader { name, value } => req.set_header(name, value.as_bytes()),
            Config::Deny { status } if req.header_str("x-allow").as_deref() != Some("yes") => {
                return Response::error(*status, "denied", &ctx.request_id())
                    .header("x-denied-by", "testkit")
                    .into();
            }
            Config::SetAttr { name, value } => {
                ctx.set_attribute(name, value);
                host::counter_add("attributes set", 1);
                host::histogram_record("attribute_seconds", 0.002);
            }
            Config::ReadAttr { name, header } => {
                let v = ctx.attribute(name).unwrap_or_else(|| "missing".into());
                req.set_header(header, v.as_bytes());
            }
            Config::Panic if path.contains("/boom") => panic!("testkit panics on purpose"),
            Config::Loop if path.contains("/spin") => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Config::Hog { mb } if path.contains("/hog") => {
                let v = vec![7u8; mb << 20];
                std::hint::black_box(&v);
            }
            Config::Sleep { ms } => {
                let end = host::monotonic_ns() + ms * 1_000_000;
                while host::monotonic_ns() < end {
                    std::hint::spin_loop();
                }
            }
            Config::Callout { service, paths } => {
                let requests: Vec<callout::Request> = paths
                    .iter()
                    .map(|p| callout::Request::get(service, p).header("x-from", "testkit"))
                    .collect();
                let answers = if requests.len() == 1 {
                    vec![callout::send(&requests[0])]
                } else {
                    callout::send_all(&requests)
                };
                let statuses: Vec<String> = answers
                    .iter()
                    .map(|a| a.as_ref().map_or("error".into(), |r| r.status.to_string()))
                    .collect();
                req.set_header("x-callout-status", statuses.join(",").as_bytes());
                if let Some(Err(e)) = answers.iter().find(|a| a.is_err()) {
                    let text: String = format!("{e:?}")
                        .chars()
                        .map(|c| {
                            if c.is_ascii_graphic() || c == ' ' {
                                c
                            } else {
                                ' '
                            }
                        })
                        .collect();
                    req.set_header("x-callout-error", text.as_bytes());
                }
                if let Some(Ok(r)) = answers.first() {
                    let body: String = r
                        .text()
                        .chars()
                        .filter(|c| c.is_ascii_graphic() || *c == ' ')
                        .take(512)
                        .collect();
                    req.set_header("x-callout-body", body.as_bytes());
                }
            }
            Config::Echo => {
                if let Some(id) = ctx.path_param("id") {
                    req.set_header("x-param-id", id.as_bytes());
                }
                req.set_header("x-ctx-request-id", ctx.request_id().as_bytes());
                req.set_header("x-ctx-route-id", ctx.route_id().as_bytes());
                req.set_header("x-ctx-client-ip", ctx.client_ip().as_bytes());
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_request_body(&self, _ctx: &Context, _req: &Request, body: Vec<u8>) -> BodyAction {
        BodyAction::Replace(body.to_ascii_uppercase())
    }

    fn on_response(
        &self,
        _ctx: &Context,
        _req: &Request,
        resp: &ResponseHeadRef,
    ) -> ResponseAction {
        if let Config::AddHeader { value, .. } = &self.0 {
            resp.append_header("x-seen-by", value.as_bytes());
        }
        ResponseAction::Continue
    }

    fn on_response_body(
        &self,
        _ctx: &Context,
        _resp: &ResponseHeadRef,
        mut body: Vec<u8>,
    ) -> BodyAction {
        if let Config::RewriteBody { suffix } = &self.0 {
            body.extend_from_slice(suffix.as_bytes());
        }
        BodyAction::Replace(body)
    }
}

export_plugin!(Kit);
