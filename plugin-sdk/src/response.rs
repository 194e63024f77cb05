//! Building responses that short-circuit the chain.

use crate::bindings::gatehouse::plugin::types::{self, Header};
use crate::{Action, BodyAction, ResponseAction};

/// A response a plugin sends instead of the upstream's.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response: `Response::json(401, &serde_json::json!({"error": "unauthorized"}))`.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(value.to_string())
    }

    /// A JSON error body `{"error": code, "request_id": id}`, the gateway's own shape.
    pub fn error(status: u16, code: &str, request_id: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({ "error": code, "request_id": request_id }),
        )
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn into_wit(self) -> types::Response {
        types::Response {
            status: self.status,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            body: self.body,
        }
    }
}

impl From<Response> for Action {
    fn from(r: Response) -> Self {
        Action::Respond(r.into_wit())
    }
}

impl From<Response> for ResponseAction {
    fn from(r: Response) -> Self {
        ResponseAction::Replace(r.into_wit())
    }
}

impl From<Response> for BodyAction {
    fn from(r: Response) -> Self {
        BodyAction::Respond(r.into_wit())
    }
}
