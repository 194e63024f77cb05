//! One request from arrival to response. The spine in `crate::proxy` owns
//! an [`Exchange`] and lends it, by `&mut`, to each stage: the plugin chain
//! edits its [`PluginView`], the forward stage takes its body, and every stage
//! notes what it did in its [`Trail`]. Nothing is moved down and handed back.

mod trail;

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use crate::body::Body;
pub use trail::{Done, Trail, Upstreamed};

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
    /// The host the client asked for, lower-cased, without port (empty on
    /// routes without plugins: only plugins read it).
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

    /// An empty head (GET, no URI, no headers).
    pub(crate) fn blank() -> Self {
        Self {
            method: Method::GET,
            uri: Uri::default(),
            headers: HeaderMap::new(),
            scheme: "http",
            host: empty_str(),
        }
    }
}

/// A response head: status and headers.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
}

/// Which hooks are running: the response head is only there in the second phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `on-request` and `on-request-body`.
    Request,
    /// `on-response` and `on-response-body`: [`PluginView::resp`] holds the
    /// head the client will get.
    Response,
}

/// What plugins see and edit of one request. The pool swaps it into an
/// instance's store for a call and back out after it (two moves, no copy of
/// what it points to).
#[derive(Debug)]
pub struct PluginView {
    /// Request id, echoed to the client as `x-request-id`.
    pub request_id: HeaderValue,
    /// Matched route id.
    pub route_id: Arc<str>,
    /// The client address (after `trusted_proxies`).
    pub client_ip: IpAddr,
    /// Path parameters by name (filled only on routes with plugins).
    pub params: Vec<(Arc<str>, String)>,
    /// Attributes set by plugins (`consumer`, `tenant`) and the listener (`tls.*`).
    pub attributes: Vec<(String, String)>,
    /// The request head.
    pub req: RequestHead,
    /// The response head, meaningful in [`Phase::Response`] only.
    pub resp: ResponseHead,
    /// Which hooks are running.
    pub phase: Phase,
    /// Headers plugins asked for on the client's response at request time.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Each chain attachment's rate-limit namespace, by position: its own
    /// (`<route>#<position>`) or the `counter` it shares on purpose. The host
    /// puts it in front of every key, so no attachment spends another's budget.
    pub counters: Arc<[Arc<str>]>,
    /// The chain position of the attachment being called.
    pub attachment: usize,
}

impl PluginView {
    /// A view of no request: what an instance's store holds between calls.
    pub fn blank() -> Self {
        static NO_COUNTERS: LazyLock<Arc<[Arc<str>]>> = LazyLock::new(|| Arc::new([]));
        Self {
            request_id: HeaderValue::from_static(""),
            route_id: empty_str(),
            client_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            params: Vec::new(),
            attributes: Vec::new(),
            req: RequestHead::blank(),
            resp: ResponseHead {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
            },
            phase: Phase::Request,
            response_headers: Vec::new(),
            counters: NO_COUNTERS.clone(),
            attachment: 0,
        }
    }

    /// An attribute's value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or replaces) an attribute.
    pub fn set_attribute(&mut self, name: String, value: String) {
        match self.attributes.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((name, value)),
        }
    }

    /// Applies the headers plugins asked for at request time to the
    /// response the client gets (once: they are moved out).
    pub fn apply_response_headers(&mut self, headers: &mut HeaderMap) {
        for (name, value) in self.response_headers.drain(..) {
            headers.insert(name, value);
        }
    }
}

/// One request: what plugins see, the body still to send upstream, and the
/// trail read at the end for metrics, the access log and spans.
#[derive(Debug)]
pub struct Exchange {
    /// What plugins see and edit.
    pub view: PluginView,
    /// The request body, until the forward stage takes it.
    pub body: Body,
    /// What the stages did.
    pub trail: Trail,
}

impl Exchange {
    /// An exchange for a request that just arrived from `peer` (the client
    /// address until the accept stage has read `X-Forwarded-For`).
    pub fn new(request_id: HeaderValue, peer: IpAddr, trail: Trail) -> Self {
        Self {
            view: PluginView {
                request_id,
                client_ip: peer,
                ..PluginView::blank()
            },
            body: Body::empty(),
            trail,
        }
    }

    /// Moves the request body out (for the upstream), leaving an empty one.
    pub fn take_body(&mut self) -> Body {
        std::mem::replace(&mut self.body, Body::empty())
    }
}

fn empty_str() -> Arc<str> {
    static EMPTY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}
