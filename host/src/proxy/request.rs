//! Stage four: the request hooks, and the request body hooks when a plugin
//! asked for the body.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use crate::body::Body;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::plugin::{ChainRun, Flow, PluginError};

/// Runs `on-request`, then, unless a plugin answered, `on-request-body` on
/// the buffered body.
pub async fn hooks(run: &mut ChainRun, ex: &mut Exchange) -> Result<Flow, GatewayError> {
    if let Flow::Respond(r) = run.on_request(ex).await? {
        return Ok(Flow::Respond(r));
    }
    let Some(limit) = run.request_body_limit() else {
        return Ok(Flow::Continue);
    };
    let bytes = collect(ex.take_body(), limit).await.map_err(|e| match e {
        CollectError::TooLarge => GatewayError::Plugin(PluginError::BodyTooLarge(limit)),
        CollectError::TimedOut => GatewayError::BodyTimeout,
        CollectError::Stream(m) => GatewayError::Plugin(PluginError::Body(m)),
    })?;
    Ok(run.on_request_body(ex, bytes).await?)
}

/// Why a body could not be buffered.
pub enum CollectError {
    /// Over the limit.
    TooLarge,
    /// The client stopped sending (`limits.body_read_timeout`).
    TimedOut,
    /// The stream failed.
    Stream(String),
}

/// Buffers `body`, up to `limit` bytes.
pub async fn collect(body: Body, limit: usize) -> Result<Bytes, CollectError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(CollectError::TooLarge)
        }
        Err(e) if crate::body::is_too_large(&*e) => Err(CollectError::TooLarge),
        Err(e) if crate::body::is_timed_out(&*e) => Err(CollectError::TimedOut),
        Err(e) => Err(CollectError::Stream(e.to_string())),
    }
}
