//! Hello, plugin: greets the upstream with a header, tags the response, and
//! answers 403 itself when the client sends `x-hello-deny`.

use gatehouse_plugin_sdk::*;

#[derive(serde::Deserialize)]
struct Config {
    greeting: String,
}

struct Hello(Config);

impl Plugin for Hello {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.greeting.is_empty() {
            return Err("greeting must not be empty".into());
        }
        Ok(Hello(config))
    }

    fn features(&self) -> Features {
        Features::RESPONSE_HEADERS
    }

    fn on_request(&self, ctx: &Context, req: &Request) -> Action {
        if req.header("x-hello-deny").is_some() {
            return Response::error(403, "denied_by_hello", &ctx.request_id()).into();
        }
        req.set_header("x-hello", self.0.greeting.as_bytes());
        Action::Continue
    }

    fn on_response(
        &self,
        _ctx: &Context,
        _req: &Request,
        resp: &ResponseHeadRef,
    ) -> ResponseAction {
        resp.set_header("x-plugin", b"hello");
        ResponseAction::Continue
    }
}

export_plugin!(Hello);
