//! Host-side bindings generated from `wit/plugin.wit`.
//!
//! The three resources are never stored in a table: a call hands the guest a
//! borrowed handle with a dummy rep, and the host methods act on the one
//! [`PluginView`](crate::exchange::PluginView) that the store holds during that call.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        "gatehouse:plugin/host.rate-limit": async,
        "gatehouse:plugin/callout.send": async,
        "gatehouse:plugin/callout.send-all": async,
    },
    exports: { default: async },
    with: {
        "gatehouse:plugin/types.context": ContextRes,
        "gatehouse:plugin/types.request-head": RequestHeadRes,
        "gatehouse:plugin/types.response-head": ResponseHeadRes,
    },
});

/// Marker for the `context` resource (state lives in the store's view).
pub struct ContextRes;
/// Marker for the `request-head` resource.
pub struct RequestHeadRes;
/// Marker for the `response-head` resource.
pub struct ResponseHeadRes;

pub use gatehouse::plugin::callout;
pub use gatehouse::plugin::host;
pub use gatehouse::plugin::types;
