//! The admin API on its own listener (loopback by default): health and
//! readiness, Prometheus metrics, and config changes that are validated like
//! the file, applied atomically, persisted and versioned. Every endpoint but
//! `/health` and `/ready` needs a bearer token; read-only tokens cannot write.

mod cache;
mod collections;
mod consumers;
mod exposition;
mod fleet;
mod handlers;
mod metrics;
mod policies;
mod redact;
mod trace;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AdminConfig, AdminToken};
use crate::control::ControlPlane;

/// Largest request body the admin API reads.
const MAX_BODY: usize = 1 << 20;

/// Serves the admin API on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    cfg: AdminConfig,
    shared: Arc<ControlPlane>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = Arc::new(cfg);
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let (cfg, shared) = (cfg.clone(), shared.clone());
        let svc = service_fn(move |req| {
            let (cfg, shared) = (cfg.clone(), shared.clone());
            async move { Ok::<_, Infallible>(serve(&cfg, &shared, req).await) }
        });
        tokio::spawn(async move {
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = conn.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// An admin API answer: status and JSON (or text) body.
pub struct Reply {
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: StatusCode, v: &Value) -> Self {
        Self {
            status,
            body: Bytes::from(v.to_string()),
            content_type: "application/json",
        }
    }

    /// 200 with a JSON body.
    pub fn ok(v: &Value) -> Self {
        Self::json(StatusCode::OK, v)
    }

    /// An error: `{"error": code, "message": ...}`.
    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::json(status, &json!({ "error": code, "message": message.into() }))
    }

    /// Plain text (metrics).
    pub fn text(body: String, content_type: &'static str) -> Self {
        Self {
            status: StatusCode::OK,
            body: Bytes::from(body),
            content_type,
        }
    }
}

/// Who is calling.
pub struct Caller<'a> {
    /// The token used (`None` on unauthenticated endpoints).
    pub token: Option<&'a AdminToken>,
    /// The request's query string.
    pub query: Option<&'a str>,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authenticate<'a>(cfg: &'a AdminConfig, req: &Request<Incoming>) -> Option<&'a AdminToken> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    // Every token is compared, so timing does not tell which one was close.
    cfg.tokens.iter().fold(None, |found, t| {
        let ok = constant_time_eq(t.token.as_bytes(), presented.as_bytes());
        found.or(ok.then_some(t))
    })
}

async fn serve(
    cfg: &AdminConfig,
    shared: &Arc<ControlPlane>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method().clone();
    let public = matches!(segments.as_slice(), ["health"] | ["ready"]) && method == Method::GET;
    let token = authenticate(cfg, &req);
    let reply = if !public && token.is_none() {
        let mut r = finish(Reply::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        ));
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    } else if method != Method::GET && token.is_some_and(|t| t.read_only) {
        Reply::error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token is read-only",
        )
    } else {
        let limit = match (&method, segments.as_slice()) {
            (&Method::PUT, ["plugins", _]) | (&Method::POST, ["consumers", "import"]) => {
                fleet::MAX_PLUGIN
            }
            _ => MAX_BODY,
        };
        let body = match Limited::new(req.into_body(), limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return finish(Reply::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("body over {} MiB", limit >> 20),
                ));
            }
        };
        let caller = Caller {
            token,
            query: query.as_deref(),
        };
        let reply = handlers::dispatch(shared, &caller, &method, &segments, &body).await;
        if token.is_some_and(|t| t.read_only) {
            redact::reply(reply)
        } else {
            reply
        }
    };
    finish(reply)
}

fn finish(r: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(r.body));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    resp
}
