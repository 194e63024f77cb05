//! {{name}}: a Gatehouse plugin. It sets `x-greeting` on every request it sees.

use gatehouse_plugin_sdk::*;

/// The attachment's `config`, as written in the gateway config.
#[derive(serde::Deserialize)]
struct Config {
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "hello from {{name}}".into()
}

struct Greeter(Config);

impl Plugin for Greeter {
    type Config = Config;

    /// Runs once per instance; an `Err` is shown to the operator at load time.
    fn new(config: Config) -> Result<Self, String> {
        if config.greeting.is_empty() {
            return Err("greeting must be a non-empty string".into());
        }
        Ok(Greeter(config))
    }

    fn on_request(&self, _ctx: &Context, req: &Request) -> Action {
        req.set_header("x-greeting", self.0.greeting.as_bytes());
        Action::Continue
    }
}

export_plugin!(Greeter);
