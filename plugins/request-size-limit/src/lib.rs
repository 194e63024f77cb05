//! `request-size-limit`: 413 for request bodies over `max_bytes`, decided on
//! `Content-Length` before any byte of the body is read, and by counting
//! bodies sent without a length (chunked).
//!
//! The counted case uses the body hook: the host buffers at most the
//! attachment's `body_limit_bytes` and answers 413 itself beyond that, so set
//! `body_limit_bytes` to at least `max_bytes` (the default 1 MiB covers
//! limits up to 1 MiB).

use gatehouse_plugin_sdk::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Largest body accepted, in bytes.
    max_bytes: u64,
}

struct SizeLimit(u64);

fn too_large(ctx: &Context, limit: u64) -> Response {
    let body = serde_json::json!({
        "error": "payload_too_large",
        "error_description": format!("request body over {limit} bytes"),
        "request_id": ctx.request_id(),
    });
    Response::json(413, &body).header("connection", "close")
}

impl Plugin for SizeLimit {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        Ok(SizeLimit(c.max_bytes))
    }

    fn features(&self) -> Features {
        Features::REQUEST_BODY
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        let declared = req
            .header_str("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(n) if n > self.0 => too_large(ctx, self.0).into(),
            _ => Action::Continue,
        }
    }

    fn on_request_body(&self, ctx: &Context, _req: &Request, body: Vec<u8>) -> BodyAction {
        if body.len() as u64 > self.0 {
            return too_large(ctx, self.0).into();
        }
        BodyAction::Continue
    }
}

export_plugin!(SizeLimit);
