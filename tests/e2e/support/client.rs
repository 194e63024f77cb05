//! A minimal HTTP/1.1 client for tests (hyper, keep-alive pooled).

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    // Pooled connections are bound to the runtime that opened them and tests run
    // on many runtimes: a fresh, non-pooling client per call keeps them apart.
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// Sends a request and reads the whole response.
pub async fn send(req: Request<Full<Bytes>>) -> Result<Reply, String> {
    let resp = client().request(req).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `GET url`.
pub async fn get(url: &str) -> Reply {
    request(Method::GET, url, &[], Bytes::new()).await
}

/// A request with headers and a body; panics on transport errors.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(body.into())).expect("valid request");
    send(req)
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e}"))
}

/// A request body of `left` bytes produced on the fly, never held whole.
pub struct Repeat {
    pub left: u64,
    pub chunk: Bytes,
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(
            self.chunk.slice(..n as usize),
        ))))
    }
}

/// Streams `upload` bytes to `url` (POST) and counts the response body's bytes
/// without keeping them. Returns (status, response bytes).
pub async fn stream_through(url: &str, upload: u64) -> (StatusCode, u64) {
    let client: Client<HttpConnector, Repeat> = Client::builder(TokioExecutor::new()).build_http();
    let body = Repeat {
        left: upload,
        chunk: Bytes::from(vec![b'u'; 64 * 1024]),
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .body(body)
        .expect("request");
    let resp = client.request(req).await.expect("stream request");
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        n += frame
            .expect("response frame")
            .data_ref()
            .map_or(0, |d| d.len() as u64);
    }
    (status, n)
}
