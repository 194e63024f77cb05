//! The Rust SDK for Gatehouse plugins.
//!
//! A plugin is a type implementing [`Plugin`] plus one [`export_plugin!`] line.
//! Build it with `cargo build --target wasm32-wasip2 --release` and drop the
//! `.wasm` into the gateway's `plugin_dir`.
//!
//! ```ignore
//! use gatehouse_plugin_sdk::*;
//!
//! #[derive(serde::Deserialize)]
//! struct Config { header: String, value: String }
//!
//! struct AddHeader(Config);
//!
//! impl Plugin for AddHeader {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, String> { Ok(Self(config)) }
//!     fn on_request(&self, _ctx: &Context, req: &Request) -> Action {
//!         req.set_header(&self.0.header, self.0.value.as_bytes());
//!         Action::Continue
//!     }
//! }
//!
//! export_plugin!(AddHeader);
//! ```
//!
//! Instances are pooled: `new` runs once per instance, the hooks run for many
//! requests. Keep per-request state in [`Context`] attributes and lasting state
//! in the host ([`host::kv_get`], [`host::rate_limit`]). Services the
//! attachment is granted are reachable with [`callout::send`].

pub mod params;
mod response;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "gatehouse_plugin_sdk::bindings",
    });
}

pub use bindings::gatehouse::plugin::types::{
    BodyAction, Context, Features, Header, Level, RequestAction as Action, RequestHead as Request,
    ResponseAction, ResponseHead as ResponseHeadRef,
};
pub use response::Response;

/// Host services: logging, clocks, metrics, key-value store, rate limiting,
/// native signature verification, consumers' API keys.
pub mod host {
    pub use crate::bindings::gatehouse::plugin::host::{
        Algorithm, Backend, Credential, LimitDecision, LimitRequest, PublicKey, SignatureAlgorithm,
        counter_add, find_credential, histogram_record, identity_header, kv_delete, kv_get, kv_set,
        log, monotonic_ns, now_ms, rate_limit, verify_signature,
    };
}

/// The attribute → upstream header map of an authentication plugin
/// (`upstream_headers` in its config; default `consumer` →
/// `x-consumer-id`), with every header declared as an identity header, so
/// that the gateway strips it from every client request on every route.
/// Call from `new` (`init`).
pub fn identity_headers(
    configured: Option<&std::collections::BTreeMap<String, String>>,
) -> std::collections::BTreeMap<String, String> {
    let map = configured.cloned().unwrap_or_else(|| {
        std::collections::BTreeMap::from([("consumer".into(), "x-consumer-id".into())])
    });
    for header in map.values() {
        host::identity_header(header);
    }
    map
}

/// HTTP calls to the services the attachment is granted (`callouts:` in the
/// config). A call is an ordinary function call: the plugin waits for the
/// answer while the gateway, not a thread, waits for the network.
///
/// ```ignore
/// let answer = callout::send(callout::Request::get("idp", "/userinfo")
///     .header("authorization", token))?;
/// if answer.status != 200 { /* ... */ }
/// ```
pub mod callout {
    use crate::Header;
    pub use crate::bindings::gatehouse::plugin::callout::{
        Error, Request, Response, send, send_all,
    };

    impl Request {
        /// A request with `method` to `path` (path and query) on `service`.
        pub fn new(service: &str, method: &str, path: &str) -> Self {
            Request {
                service: service.into(),
                method: method.into(),
                path: path.into(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
            }
        }

        /// A `GET` to `path` on `service`.
        pub fn get(service: &str, path: &str) -> Self {
            Self::new(service, "GET", path)
        }

        /// A `POST` of `body` to `path` on `service`.
        pub fn post(service: &str, path: &str, body: impl Into<Vec<u8>>) -> Self {
            Self::new(service, "POST", path).body(body)
        }

        /// Adds a header.
        pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
            self.headers.push(Header {
                name: name.into(),
                value: value.as_ref().to_vec(),
            });
            self
        }

        /// Sets the body.
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = body.into();
            self
        }

        /// A timeout shorter than the attachment's `callout_timeout`.
        pub fn timeout_ms(mut self, ms: u32) -> Self {
            self.timeout_ms = Some(ms);
            self
        }

        /// Asks the service itself, not the gateway's callout cache (which
        /// keeps `GET` answers as their `Cache-Control` allows); the fresh
        /// answer replaces the cached one.
        pub fn no_cache(self) -> Self {
            self.header("cache-control", "no-cache")
        }
    }

    impl Response {
        /// The first value of header `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&[u8]> {
            self.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.as_slice())
        }

        /// The body as UTF-8 text (lossy).
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// Seconds the answer stays fresh: its `Cache-Control` `s-maxage` or
        /// `max-age` less its `Age` (set by the gateway on cached answers).
        /// `None` without one, or with `no-store`/`no-cache`.
        pub fn fresh_for(&self) -> Option<u64> {
            let cc = std::str::from_utf8(self.header("cache-control")?).ok()?;
            let mut max_age = None;
            let mut s_maxage = None;
            for part in cc.split(',') {
                let (name, arg) = part.split_once('=').unwrap_or((part, ""));
                let secs = arg.trim().trim_matches('"').parse::<u64>().ok();
                match name.trim().to_ascii_lowercase().as_str() {
                    "no-store" | "no-cache" => return None,
                    "max-age" => max_age = secs,
                    "s-maxage" => s_maxage = secs,
                    _ => {}
                }
            }
            let age = self
                .header("age")
                .and_then(|a| std::str::from_utf8(a).ok()?.trim().parse::<u64>().ok())
                .unwrap_or(0);
            Some(s_maxage.or(max_age)?.saturating_sub(age))
        }
    }
}

/// A gateway plugin. Every hook has a default that lets the request through,
/// so a plugin implements only what it needs.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The attachment's `config`, parsed from JSON with serde.
    type Config: serde::de::DeserializeOwned;

    /// Builds the plugin from its config. An `Err` is reported to the operator at
    /// load time and the plugin is not attached.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Which optional hooks to call. Default: none (only `on_request`).
    fn features(&self) -> Features {
        Features::empty()
    }

    /// Called for each request, in chain order.
    fn on_request(&self, _ctx: &Context, _req: &Request) -> Action {
        Action::Continue
    }

    /// Called with the buffered request body (needs [`Features::REQUEST_BODY`]).
    fn on_request_body(&self, _ctx: &Context, _req: &Request, _body: Vec<u8>) -> BodyAction {
        BodyAction::Continue
    }

    /// Called with the response head (needs [`Features::RESPONSE_HEADERS`]).
    fn on_response(
        &self,
        _ctx: &Context,
        _req: &Request,
        _resp: &ResponseHeadRef,
    ) -> ResponseAction {
        ResponseAction::Continue
    }

    /// Called with the buffered response body (needs [`Features::RESPONSE_BODY`]).
    fn on_response_body(
        &self,
        _ctx: &Context,
        _resp: &ResponseHeadRef,
        _body: Vec<u8>,
    ) -> BodyAction {
        BodyAction::Continue
    }
}

/// Glue used by [`export_plugin!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::sync::OnceLock;

    /// A hook on an instance whose `init` never succeeded: trap, so that the
    /// attachment's `on_error` decides (fail closed by default), instead of
    /// letting the request through unchecked.
    pub fn uninitialized() -> ! {
        panic!("gatehouse plugin: hook called on an instance without a usable config")
    }

    pub fn init<P: Plugin>(cell: &OnceLock<P>, config: String) -> Result<Features, String> {
        // The path (`limits[0].window`) tells the operator which key is wrong.
        let de = &mut serde_json::Deserializer::from_str(&config);
        let cfg: P::Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("invalid config: {}", e.inner())
            } else {
                format!("invalid config at `{path}`: {}", e.inner())
            }
        })?;
        let plugin = P::new(cfg)?;
        let features = plugin.features();
        // A second init on the same instance keeps the first plugin: instances
        // are initialized exactly once by the host.
        let _ = cell.set(plugin);
        Ok(features)
    }
}

/// Exports a [`Plugin`] type as the component's implementation of the
/// `gatehouse:plugin/plugin` world.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        static __GATEHOUSE_PLUGIN: ::std::sync::OnceLock<$ty> = ::std::sync::OnceLock::new();
        struct __GatehouseExport;
        impl $crate::bindings::Guest for __GatehouseExport {
            fn init(config: ::std::string::String) -> ::std::result::Result<$crate::Features, ::std::string::String> {
                $crate::__private::init::<$ty>(&__GATEHOUSE_PLUGIN, config)
            }
            fn on_request(ctx: &$crate::Context, req: &$crate::Request) -> $crate::Action {
                match __GATEHOUSE_PLUGIN.get() {
                    Some(p) => $crate::Plugin::on_request(p, ctx, req),
                    None => $crate::__private::uninitialized(),
                }
            }
            fn on_request_body(ctx: &$crate::Context, req: &$crate::Request, body: ::std::vec::Vec<u8>) -> $crate::BodyAction {
                match __GATEHOUSE_PLUGIN.get() {
                    Some(p) => $crate::Plugin::on_request_body(p, ctx, req, body),
                    None => $crate::__private::uninitialized(),
                }
            }
            fn on_response(ctx: &$crate::Context, req: &$crate::Request, resp: &$crate::ResponseHeadRef) -> $crate::ResponseAction {
                match __GATEHOUSE_PLUGIN.get() {
                    Some(p) => $crate::Plugin::on_response(p, ctx, req, resp),
                    None => $crate::__private::uninitialized(),
                }
            }
            fn on_response_body(ctx: &$crate::Context, resp: &$crate::ResponseHeadRef, body: ::std::vec::Vec<u8>) -> $crate::BodyAction {
                match __GATEHOUSE_PLUGIN.get() {
                    Some(p) => $crate::Plugin::on_response_body(p, ctx, resp, body),
                    None => $crate::__private::uninitialized(),
                }
            }
        }
        $crate::bindings::export!(__GatehouseExport with_types_in $crate::bindings);
    };
}

impl Request {
    /// A header's first value as text (`None` when absent or not UTF-8).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).and_then(|v| String::from_utf8(v).ok())
    }
}

impl ResponseHeadRef {
    /// A header's first value as text (`None` when absent or not UTF-8).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).and_then(|v| String::from_utf8(v).ok())
    }
}
