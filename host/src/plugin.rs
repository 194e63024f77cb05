//! The plugin runtime: Wasm components that implement `wit/plugin.wit`, run as a
//! chain per route. Stage three (requests) and six (responses) of the flow.
//!
//! - [`runtime`]: one engine, one linker, compiled components cached by hash.
//! - [`pool`]: initialized instances per attachment, reused across requests.
//! - [`chain`]: runs attachments in order and applies each one's `on_error`.
//! - `host_api`: what plugins may call (log, clock, metrics, kv, rate limit).
//! - `stderr`: a guest's standard error, forwarded to the log.

mod bindings;
pub mod callout;
pub mod chain;
mod host_api;
pub mod kv;
pub mod limiter;
mod names;
pub mod offline;
pub mod pool;
pub mod runtime;
pub mod script;
pub mod shadow;
mod signature;
mod state;
mod stderr;
pub mod trace;

/// What hooks answer (as in [`pool::Outcome`]).
pub use bindings::types::{BodyAction, RequestAction, ResponseAction};
pub use callout::Grants;
pub use chain::{Attachment, Chain, ChainRun, Flow, PluginResponse};
pub use runtime::{LoadError, PluginRuntime, RuntimeError};

/// Why a plugin call failed; the attachment's `on_error` decides what follows.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The guest trapped (panic, unreachable, out of bounds, memory cap).
    #[error("plugin `{plugin}` trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: std::sync::Arc<str>,
        /// The trap as wasmtime reports it.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin `{plugin}` exceeded its {timeout:?} deadline")]
    Timeout {
        /// Plugin name.
        plugin: std::sync::Arc<str>,
        /// The configured deadline.
        timeout: std::time::Duration,
    },
    /// Every instance stayed busy past the wait bound.
    #[error("plugin `{plugin}` has no free instance")]
    Busy {
        /// Plugin name.
        plugin: std::sync::Arc<str>,
    },
    /// A fresh instance failed to instantiate or `init`.
    #[error("plugin `{plugin}` failed to start an instance: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: std::sync::Arc<str>,
        /// What went wrong.
        message: String,
    },
    /// A body hook's input exceeded the attachment's body limit.
    #[error("body exceeds the plugin body limit of {0} bytes")]
    BodyTooLarge(usize),
    /// A buffered body failed while being read.
    #[error("body stream failed: {0}")]
    Body(String),
}
