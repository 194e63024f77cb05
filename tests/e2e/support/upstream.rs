//! Real upstream HTTP servers on loopback that record what they received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// What the upstream does with each request.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with a JSON description of the request; the body is kept.
    Echo,
    /// Like `Echo`, after a delay.
    Delay(Duration),
    /// Answers this status with an empty body.
    Status(u16),
    /// Streams `bytes` of response body in 64 KiB chunks.
    Stream(u64),
    /// Reads the body without keeping it and answers its length.
    Drain,
    /// Echo, plus hop-by-hop headers in the response.
    HopByHop,
    /// Sends a response head promising 1 MiB, 1 KiB of it, then resets the connection.
    ResetMidResponse,
    /// An authorization service: `Bearer good` → 200 vouching `x-user-id:
    /// alice` (and an `x-internal` header); `Bearer slow` → the same after
    /// 2 s; another token → 403 with `www-authenticate`, `x-internal` and a
    /// JSON body; no `authorization` → 401.
    Authz,
    /// An OpenID Connect provider (see [`super::idp`]).
    Idp(Arc<super::idp::Idp>),
    /// 200 with this `Content-Type`, `Content-Encoding` (when not empty) and body.
    Fixed {
        content_type: &'static str,
        encoding: &'static str,
        body: &'static [u8],
    },
}

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub version: http::Version,
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A running upstream server.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub received: Arc<Mutex<Vec<Recorded>>>,
    pub hits: Arc<AtomicUsize>,
    pub active: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    killed: tokio::sync::watch::Sender<bool>,
    tls: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Upstream {
    /// Starts a server named `name` on a free loopback port.
    pub async fn start(name: &str, behavior: Behavior) -> Self {
        Self::serve(name, behavior, None).await
    }

    /// Starts an HTTPS server (HTTP/1.1 and h2 by ALPN) with `acceptor`.
    pub async fn start_tls(
        name: &str,
        behavior: Behavior,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> Self {
        Self::serve(name, behavior, Some(acceptor)).await
    }

    async fn serve(name: &str, behavior: Behavior, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(0));
        let (killed, kill_rx) = tokio::sync::watch::channel(false);
        let ctx = Arc::new(Ctx {
            name: name.to_string(),
            behavior,
            received: received.clone(),
            hits: hits.clone(),
            active: active.clone(),
            status: status.clone(),
        });
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let ctx = ctx.clone();
                let tls = tls.clone();
                let mut kill_rx = kill_rx.clone();
                tokio::spawn(async move {
                    if matches!(ctx.behavior, Behavior::ResetMidResponse) {
                        reset_mid_response(stream, &ctx).await;
                        return;
                    }
                    let svc = service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, Infallible>(ctx.handle(req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    // A killed upstream drops its open connections too.
                    match tls {
                        None => {
                            tokio::select! {
                                _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc) => {}
                                _ = kill_rx.wait_for(|k| *k) => {}
                            }
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            tokio::select! {
                                _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc) => {}
                                _ = kill_rx.wait_for(|k| *k) => {}
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            name: name.to_string(),
            received,
            hits,
            active,
            status,
            killed,
            tls: is_tls,
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops listening and closes every open connection.
    pub fn kill(&self) {
        self.task.abort();
        let _ = self.killed.send(true);
    }

    /// Answers every request with `status` (after recording it); `None` restores the behaviour.
    pub fn set_status(&self, status: Option<u16>) {
        self.status.store(status.unwrap_or(0), Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Recorded {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream received nothing")
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.received.lock().unwrap().clone()
    }
}

struct Ctx {
    name: String,
    behavior: Behavior,
    received: Arc<Mutex<Vec<Recorded>>>,
    hits: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
}

/// Reads a request head, answers with a head and part of the body, then resets.
async fn reset_mid_response(mut stream: tokio::net::TcpStream, ctx: &Ctx) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    ctx.hits.fetch_add(1, Ordering::SeqCst);
    let head = "HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\ncontent-type: text/plain\r\n\r\n";
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&[b'x'; 1024]).await;
    let _ = stream.flush().await;
    // SO_LINGER 0: close sends RST instead of FIN (the point of this upstream).
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What [`Behavior::Authz`] answers.
async fn authorize(rec: &Recorded) -> Response<Body> {
    let token = rec.headers.get("authorization").map(|v| v.as_bytes());
    let allow = || {
        Response::builder()
            .header("x-user-id", "alice")
            .header("x-internal", "secret")
            .body(full(""))
            .unwrap()
    };
    match token {
        Some(b"Bearer good") => allow(),
        Some(b"Bearer slow") => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            allow()
        }
        Some(_) => Response::builder()
            .status(403)
            .header("www-authenticate", "Bearer realm=\"test\"")
            .header("x-internal", "secret")
            .header("content-type", "application/json")
            .body(full("{\"error\":\"denied by authz\"}"))
            .unwrap(),
        None => Response::builder().status(401).body(full("")).unwrap(),
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

impl Ctx {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        self.active.fetch_add(1, Ordering::SeqCst);
        let resp = self.respond(req).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        resp
    }

    async fn respond(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if let Behavior::Drain = self.behavior {
            let mut body = body;
            let mut n = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => return Response::builder().status(400).body(full("")).unwrap(),
                }
            }
            self.hits.fetch_add(1, Ordering::SeqCst);
            let body = Bytes::from(n.to_string());
            let rec = Recorded {
                version: parts.version,
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts.headers,
                body: body.clone(),
            };
            self.received.lock().unwrap().push(rec);
            return Response::new(full(body));
        }
        // A body that fails mid-way means the request never completed: not recorded.
        let Ok(collected) = body.collect().await else {
            return Response::builder().status(400).body(full("")).unwrap();
        };
        let body = collected.to_bytes();
        self.hits.fetch_add(1, Ordering::SeqCst);
        let rec = Recorded {
            version: parts.version,
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers,
            body,
        };
        self.received.lock().unwrap().push(rec.clone());
        let forced = self.status.load(Ordering::SeqCst);
        if forced != 0 {
            return Response::builder().status(forced).body(full("")).unwrap();
        }
        match &self.behavior {
            Behavior::Status(s) => Response::builder().status(*s).body(full("")).unwrap(),
            Behavior::Fixed {
                content_type,
                encoding,
                body,
            } => {
                let mut b = Response::builder().header("content-type", *content_type);
                if !encoding.is_empty() {
                    b = b.header("content-encoding", *encoding);
                }
                b.body(full(Bytes::from_static(body))).unwrap()
            }
            Behavior::Stream(total) => {
                let total = *total;
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                Response::new(ChunkBody { left: total, chunk }.boxed())
            }
            Behavior::Delay(d) => {
                tokio::time::sleep(*d).await;
                self.echo(&rec)
            }
            Behavior::HopByHop => {
                let mut r = self.echo(&rec);
                let h = r.headers_mut();
                h.insert("connection", "x-hop-secret".parse().unwrap());
                h.insert("x-hop-secret", "1".parse().unwrap());
                h.insert("keep-alive", "timeout=5".parse().unwrap());
                h.insert("proxy-authenticate", "Basic".parse().unwrap());
                r
            }
            Behavior::Authz => authorize(&rec).await,
            Behavior::Idp(idp) => {
                let (status, headers, body) = idp.answer(&rec);
                let mut b = Response::builder().status(status);
                for (name, value) in headers {
                    b = b.header(name, value);
                }
                b.body(full(body)).unwrap()
            }
            Behavior::Echo | Behavior::Drain | Behavior::ResetMidResponse => self.echo(&rec),
        }
    }

    fn echo(&self, rec: &Recorded) -> Response<Body> {
        let headers: serde_json::Map<String, serde_json::Value> = rec
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
                )
            })
            .collect();
        let json = serde_json::json!({
            "upstream": self.name,
            "version": format!("{:?}", rec.version),
            "method": rec.method,
            "uri": rec.uri,
            "headers": headers,
            "body": String::from_utf8_lossy(&rec.body),
        });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("x-upstream", &self.name)
            .body(full(json.to_string()))
            .unwrap()
    }
}

/// A response body of `left` bytes sent in `chunk`-sized frames, never held whole.
struct ChunkBody {
    left: u64,
    chunk: Bytes,
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }
}
