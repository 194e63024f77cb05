//! Hostile clients over raw sockets: request smuggling attempts, oversized and
//! malformed heads, and a slowloris. Each is refused and nothing reaches the
//! upstream.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::raw::{exchange, status_of};
use crate::support::*;

async fn gateway(up: &Upstream) -> TestGateway {
    TestGateway::start(&format!(
        "limits: {{ header_read_timeout: 1s }}\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s }}\n",
        up.url()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_are_refused() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = gateway(&up).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "two content-lengths",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde".to_vec(),
            &[400],
        ),
        (
            "invalid chunk size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
            &[400, 502, 0],
        ),
        ("space in header name", b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n".to_vec(), &[400]),
        ("64 KiB header", big.into_bytes(), &[431, 400]),
    ];
    for (name, raw, allowed) in cases {
        let resp = exchange(gw.addr, &raw).await;
        let status = status_of(&resp);
        assert!(
            allowed.contains(&status),
            "{name}: got {status}: {resp:.200}"
        );
    }
    assert_eq!(
        up.hits(),
        0,
        "nothing hostile reached the upstream: {:?}",
        up.received()
    );
    gw.stop().await;
}

/// With both `Content-Length` and `Transfer-Encoding`, hyper follows RFC 9112
/// §6.3: chunked framing wins, `Content-Length` is dropped, and the connection
/// is closed after the response, so bytes hidden behind the chunked body are
/// never read as a second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_te_smuggling_never_reaches_the_upstream_as_a_request() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = gateway(&up).await;
    let raw = b"POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let started = Instant::now();
    let resp = exchange(gw.addr, raw).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "connection was closed, not left open"
    );
    assert_eq!(
        resp.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response: {resp}"
    );
    let smuggled = up.received().iter().any(|r| r.uri.contains("smuggled"));
    assert!(!smuggled, "the smuggled request reached the upstream");
    for r in up.received() {
        assert!(
            r.headers.get("content-length").is_none_or(|v| v == "0"),
            "no conflicting length forwarded"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_at_the_header_timeout() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = gateway(&up).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in head {
        if s.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                // A 408 before closing is fine too; keep reading until EOF.
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut rest)).await;
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(
        closed,
        "connection still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off after {:?}",
        started.elapsed()
    );
    assert_eq!(up.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = gateway(&up).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle after a complete exchange: the header timeout (1s here) closes it.
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle connection still open after 4s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too early: {:?}",
        started.elapsed()
    );
    gw.stop().await;
}
