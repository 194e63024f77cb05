//! Slow and greedy clients: silent HTTP/2 connections, bodies sent a byte at
//! a time, more connections than the caps allow.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::raw::{closed_within, h2_client, status_of};
use crate::support::*;

async fn gateway(limits: &str) -> (TestGateway, Upstream) {
    let up = Upstream::start("up", Behavior::Echo).await;
    let yaml = json_routes(
        &up,
        &format!(
            "limits: {{ {limits} }}\nadmin: {{ addr: 127.0.0.1:0, token: metrics-token-0123456789 }}\n"
        ),
        &[("r", "/*", vec![])],
    );
    (TestGateway::start(&yaml).await, up)
}

/// Asserts that the gateway closes `s` no sooner than `at_least` from now
/// and within `within`.
async fn closed_between(s: &mut TcpStream, at_least: Duration, within: Duration) {
    let started = Instant::now();
    assert!(
        closed_within(s, within).await,
        "still open after {within:?}"
    );
    assert!(
        started.elapsed() >= at_least,
        "closed after {:?}",
        started.elapsed()
    );
}

/// The client connection preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_sends_only_the_preface_is_closed() {
    let (gw, up) = gateway("header_read_timeout: 1s").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    closed_between(&mut s, Duration::from_millis(900), Duration::from_secs(4)).await;
    assert_eq!(up.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_never_answers_pings_is_closed() {
    // Long header and idle limits: only the unanswered PING can close it.
    let limits = "header_read_timeout: 20s, idle_timeout: 20s, h2_keepalive_interval: 500ms, h2_keepalive_timeout: 500ms";
    let (gw, _up) = gateway(limits).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(6)).await,
        "still open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_is_closed_after_idle_timeout() {
    let (gw, up) = gateway("idle_timeout: 1s, header_read_timeout: 5s").await;
    let (mut send, driver) = h2_client(gw.addr).await;
    let req = http::Request::builder()
        .uri(gw.url("/x"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(4), driver).await;
    assert!(ended.is_ok(), "the idle connection was not closed");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408() {
    let (gw, up) = gateway("body_read_timeout: 500ms").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut out)).await;
    let resp = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&resp), 408, "{resp:.300}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        up.received().iter().all(|r| r.body.len() < 10),
        "no complete body reached the upstream"
    );
    gw.stop().await;
}

/// Whether a new connection gets an answer.
async fn served(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
    matches!(read, Ok(Ok(n)) if n > 0)
}

async fn rejected(gw: &TestGateway, reason: &str) -> u64 {
    metric(
        gw,
        &format!("gatehouse_connections_rejected_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// The value of one series on the gateway's /metrics (0 when absent).
async fn metric(gw: &TestGateway, series: &str) -> u64 {
    gw.metric("metrics-token-0123456789", series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_are_closed_at_accept() {
    let (gw, _up) = gateway("max_connections: 2").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        held.push(s);
    }
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let _ = third.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "third connection served"
    );
    assert_eq!(rejected(&gw, "max_connections").await, 1);
    drop(held);
    assert!(
        eventually(Duration::from_secs(3), async || served(gw.addr).await).await,
        "slots came back once the held connections closed"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_per_ip_are_closed_at_accept() {
    let (gw, _up) = gateway("max_connections_per_ip: 1").await;
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(first.read(&mut buf).await.unwrap() > 0);
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    let _ = second
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert!(closed_within(&mut second, Duration::from_secs(2)).await);
    assert_eq!(rejected(&gw, "max_connections_per_ip").await, 1);
    gw.stop().await;
}

// A cleartext connection holds no HTTP state until its client speaks
// (`listener::first_bytes`): these pin down that the wait keeps today's
// limits and hands the first bytes on intact.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_is_closed_at_the_header_timeout() {
    let (gw, up) = gateway("header_read_timeout: 1s").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    closed_between(&mut s, Duration::from_millis(900), Duration::from_secs(4)).await;
    assert_eq!(up.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_late_but_within_the_header_timeout_is_served() {
    let (gw, up) = gateway("header_read_timeout: 2s").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The head in two writes: the first wakes the connection, the second
    // must reach the parser behind it.
    s.write_all(b"GET /late HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"st: a\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status_of(&resp), 200, "{resp:.300}");
    assert_eq!(up.received().len(), 1);
    assert_eq!(up.received()[0].uri, "/late");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_holds_its_slot_and_does_not_delay_shutdown() {
    let (gw, _up) = gateway("header_read_timeout: 30s, max_connections: 1").await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !served(gw.addr).await,
        "a second connection was served past max_connections: 1"
    );
    assert_eq!(rejected(&gw, "max_connections").await, 1);
    assert_eq!(
        metric(&gw, "gatehouse_connections_active").await,
        1,
        "the silent connection is counted as open"
    );
    let started = Instant::now();
    gw.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for a silent connection",
        started.elapsed()
    );
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
}
