// Shared body of the tag-a / tag-b plugins: tags each response with the plugin
// version that handled it, so a hot-swap test can see when the switch happened.

use gatehouse_plugin_sdk::*;

struct Tag;

impl Plugin for Tag {
    type Config = serde_json::Value;

    fn new(_: serde_json::Value) -> Result<Self, String> {
        Ok(Tag)
    }

    fn on_request(&self, _ctx: &Context, req: &Request) -> Action {
        req.set_header("x-tag", TAG.as_bytes());
        Action::Continue
    }
}

export_plugin!(Tag);
