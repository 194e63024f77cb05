//! Raw bytes over TCP, for requests an HTTP client would normalise itself
//! (encoded paths, duplicate headers, absolute-form targets, slow senders).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `raw` and returns everything the server answered before closing
/// (or before 3 s passed).
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET <target>` with `Host: a` and `Connection: close`, as raw bytes.
pub async fn get_raw(addr: SocketAddr, target: &str) -> String {
    let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes()).await
}

/// The status code of a raw response (0 when there was none).
pub fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Whether the server closed `s` within `within` (EOF or reset).
pub async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// An HTTP/2 (prior knowledge) client connection to `addr`, and the task
/// driving it (ends when the server closes the connection).
pub async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    (send, tokio::spawn(conn))
}

/// Writes `raw` on an open connection and reads one response: its head and a
/// `Content-Length` body (the connection stays open for the next request).
pub async fn round_trip<S>(s: &mut S, raw: &[u8]) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(raw).await.expect("write");
    read_response(s).await
}

/// Reads one response with a `Content-Length` body from `s` (at most 5 s);
/// the client must not expect another one yet (its bytes would be lost).
pub async fn read_response<S>(s: &mut S) -> String
where
    S: tokio::io::AsyncRead + Unpin,
{
    read_responses(s, 1).await.pop().unwrap_or_default()
}

/// Reads `n` responses with `Content-Length` bodies from `s` (pipelined
/// answers may arrive in one read), within 5 s; fewer if the time ran out.
pub async fn read_responses<S>(s: &mut S, n: usize) -> Vec<String>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut got = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while out.len() < n {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    let one: Vec<u8> = got.drain(..end + 4 + len).collect();
                    out.push(String::from_utf8_lossy(&one).into_owned());
                    continue;
                }
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    out
}
