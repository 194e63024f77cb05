//! Stage six: an answer, from the upstream or from a plugin, becomes the
//! client's response after the response hooks; or, after a `101`, a tunnel.

use http::Response;
use hyper::upgrade::OnUpgrade;

use super::headers::strip_hop_by_hop;
use super::upgrade;
use crate::body::{Body, collect};
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::plugin::{ChainRun, Flow, PluginResponse};

/// What answers the request before the response hooks run.
pub enum Answer {
    /// The upstream's response, its body still streaming.
    Upstream(Response<Body>),
    /// A plugin's answer from a request hook: the upstream was not called.
    Plugin(PluginResponse),
}

/// The response the client gets: the answer with hop-by-hop headers removed
/// and the headers plugins asked for, then edited, or replaced, by the
/// response hooks of the plugins that ran.
pub async fn respond(
    run: &mut ChainRun,
    ex: &mut Exchange,
    answer: Answer,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response<Body>, GatewayError> {
    let mut resp = match answer {
        Answer::Upstream(resp) => match client_upgrade {
            // The connection now belongs to another protocol: response hooks
            // have nothing to edit.
            Some(up) if upgrade::switched(&resp) => return Ok(upgrade::tunnel(resp, up)),
            _ => {
                let mut resp = resp;
                strip_hop_by_hop(resp.headers_mut());
                resp
            }
        },
        Answer::Plugin(r) => {
            ex.trail.answered_by = Some(r.plugin.clone());
            r.into_response()
        }
    };
    ex.view.apply_response_headers(resp.headers_mut());
    if let Flow::Respond(r) = run.on_response(ex, &mut resp).await? {
        resp = r.into_response();
    }
    let Some(limit) = run.response_body_limit() else {
        return Ok(resp);
    };
    let body = std::mem::replace(resp.body_mut(), Body::empty());
    let bytes = collect(body, limit)
        .await
        .map_err(|_| GatewayError::ResponseTooLarge)?;
    if let Flow::Respond(r) = run.on_response_body(ex, &mut resp, bytes).await? {
        resp = r.into_response();
    }
    Ok(resp)
}
