//! An origin server for the cache tests: answers each path as the test set
//! it (status, headers, delay), counts the requests per path, and answers
//! its own validators with `304`. Bodies name the path, the fetch number
//! and the consumer, so a test sees which fetch served a response.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// How the origin answers one path.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Status (default 200).
    pub status: Option<u16>,
    /// Response headers.
    pub headers: Vec<(&'static str, String)>,
    /// Waited before answering.
    pub delay: Option<Duration>,
    /// Body bytes instead of the description (for size tests).
    pub size: Option<usize>,
}

impl Spec {
    /// A 200 with these headers.
    pub fn with(headers: &[(&'static str, &str)]) -> Self {
        Self {
            headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            ..Self::default()
        }
    }
}

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
}

#[derive(Default)]
struct State {
    specs: HashMap<String, Spec>,
    seen: Vec<Seen>,
    down: bool,
}

/// A running origin.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        let task = tokio::spawn(async move {
            // Connections live in the accept task's set, so aborting the
            // task closes them too: a killed origin keeps no pooled
            // connection answering.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                while conns.try_join_next().is_some() {}
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(answer(&st, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// Stops listening and closes every open connection; returns once the
    /// port refuses connections (dropping only asks the runtime to).
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How `path` is answered from now on.
    pub fn set(&self, path: &str, spec: Spec) {
        self.state
            .lock()
            .unwrap()
            .specs
            .insert(path.to_string(), spec);
    }

    /// Requests received for `path` (any query).
    pub fn hits(&self, path: &str) -> usize {
        self.seen(path).len()
    }

    /// The requests received for `path` (any query), in order.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        let st = self.state.lock().unwrap();
        st.seen
            .iter()
            .filter(|s| s.uri.split('?').next() == Some(path))
            .cloned()
            .collect()
    }

    /// While down, every request gets a 503 (after being counted).
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
}

async fn answer(st: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let _ = body.collect().await;
    let path = parts.uri.path().to_string();
    let (spec, n, down) = {
        let mut s = st.lock().unwrap();
        s.seen.push(Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
        });
        let n = s
            .seen
            .iter()
            .filter(|x| x.uri.split('?').next() == Some(&path))
            .count();
        (s.specs.get(&path).cloned().unwrap_or_default(), n, s.down)
    };
    if let Some(d) = spec.delay {
        tokio::time::sleep(d).await;
    }
    if down {
        return Response::builder()
            .status(503)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let mut b = Response::builder().status(spec.status.unwrap_or(200));
    let mut etag = None;
    for (k, v) in &spec.headers {
        if k.eq_ignore_ascii_case("etag") {
            etag = Some(v.clone());
        }
        b = b.header(*k, v);
    }
    let inm = parts
        .headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    if let (Some(e), Some(inm)) = (&etag, inm)
        && inm.split(',').any(|t| t.trim() == e)
    {
        return b.status(304).body(Full::new(Bytes::new())).unwrap();
    }
    let body = match spec.size {
        Some(n) => Bytes::from(vec![b'x'; n]),
        None => {
            let consumer = parts
                .headers
                .get("x-consumer-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let q = parts.uri.query().unwrap_or("");
            Bytes::from(format!("{path}?{q} #{n} consumer={consumer}"))
        }
    };
    if parts.method == http::Method::HEAD {
        return b.body(Full::new(Bytes::new())).unwrap();
    }
    b.header("content-type", "text/plain")
        .body(Full::new(body))
        .unwrap()
}
