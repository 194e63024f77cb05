//! Protocol upgrades (WebSocket): the `Upgrade` request goes upstream with its
//! hop-by-hop headers kept, and after a `101 Switching Protocols` both
//! connections are joined into one bidirectional byte stream.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::Body;

/// The protocol a request asks to switch to (`Connection: upgrade` plus `Upgrade: x`).
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_says_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    connection_says_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Whether the upstream agreed to switch protocols.
pub fn switched(resp: &Response<Body>) -> bool {
    resp.status() == StatusCode::SWITCHING_PROTOCOLS
}

/// Answers the client's 101 and joins the two upgraded connections in the
/// background until either side closes.
pub fn tunnel(mut resp: Response<Body>, client: OnUpgrade) -> Response<Body> {
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Body::empty())
}
