//! The request as plugins see it: the head (editable), the context and the
//! attributes plugins share. Moved into an instance's store for each call.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

/// The request head that will be sent upstream.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// Path and query (origin form), as the upstream will see them.
    pub uri: Uri,
    /// Headers (hop-by-hop already removed).
    pub headers: HeaderMap,
    /// `http` or `https` as seen by the client.
    pub scheme: &'static str,
    /// The host the client asked for, lower-cased, without port.
    pub host: Arc<str>,
}

impl RequestHead {
    /// Moves the head out, leaving an empty one (no allocation).
    pub fn take(&mut self) -> RequestHead {
        let empty = RequestHead {
            method: Method::GET,
            uri: Uri::default(),
            headers: HeaderMap::new(),
            scheme: self.scheme,
            host: self.host.clone(),
        };
        std::mem::replace(self, empty)
    }
}

/// The response head that will be sent to the client.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
}

/// Everything a plugin call can see about one request.
#[derive(Debug)]
pub struct Exchange {
    /// Request id, echoed to the client as `x-request-id`.
    pub request_id: Arc<str>,
    /// Matched route id.
    pub route_id: Arc<str>,
    /// The client address.
    pub client_ip: IpAddr,
    /// Path parameters by name.
    pub params: Vec<(Arc<str>, String)>,
    /// Attributes set by plugins (`consumer`, `tenant`, ...).
    pub attributes: Vec<(String, String)>,
    /// The request head.
    pub req: RequestHead,
    /// The response head, once there is one.
    pub resp: Option<ResponseHead>,
    /// Headers plugins asked for on the client's response at request time.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Each chain attachment's rate-limit namespace, by position: its own
    /// (`<route>#<position>`) or the `counter` it shares on purpose. The host
    /// puts it in front of every key, so no attachment spends another's budget.
    pub counters: Arc<[Arc<str>]>,
    /// The chain position of the attachment being called.
    pub attachment: usize,
}

impl Exchange {
    /// An attribute's value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets the response head and applies the headers plugins asked for at
    /// request time.
    pub fn respond_with(&mut self, status: StatusCode, mut headers: HeaderMap) {
        for (name, value) in self.response_headers.drain(..) {
            headers.insert(name, value);
        }
        self.resp = Some(ResponseHead { status, headers });
    }

    /// Sets (or replaces) an attribute.
    pub fn set_attribute(&mut self, name: String, value: String) {
        match self.attributes.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((name, value)),
        }
    }
}
