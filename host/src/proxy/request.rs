//! Stage four: the request hooks, and the request body hooks when a plugin
//! asked for the body.

use crate::body::{CollectError, collect};
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
