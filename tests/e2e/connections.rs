//! Keep-alive client connections across their idle periods: an idle HTTP/1
//! connection is parked (its HTTP state dropped, `gatehouse_connections_parked`
//! counts it) and served again on the client's next bytes, whatever those
//! bytes are: a new request, the rest of a head that arrived before the park,
//! or pipelined requests. Raw bytes over TCP and TLS, so that the client
//! keeps exactly one connection.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::raw::{closed_within, read_responses, round_trip, status_of};
use crate::support::tls::{TestCa, connect};
use crate::support::*;

const TOKEN: &str = "metrics-token-0123456789";
const PARKED: &str = "gatehouse_connections_parked";

fn config(up: &Upstream, listeners: &str) -> String {
    format!(
        "{listeners}limits: {{ header_read_timeout: 6s }}\nadmin: {{ addr: 127.0.0.1:0, token: {TOKEN} }}\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s }}\n",
        up.url()
    )
}

fn request_for(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
}

/// Waits until the gateway counts `n` parked connections.
async fn parked(gw: &TestGateway, n: u64) -> bool {
    eventually(Duration::from_secs(5), async || {
        gw.metric(TOKEN, PARKED).await == n
    })
    .await
}

/// Sends `GET path` on an open connection and asserts its 200.
async fn get_ok<S>(s: &mut S, path: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let resp = round_trip(s, &request_for(path)).await;
    assert_eq!(status_of(&resp), 200, "{path}: {resp:.300}");
}

/// A new cleartext connection to `gw` that has been served `GET path`.
async fn served(gw: &TestGateway, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    get_ok(&mut s, path).await;
    s
}

/// A gateway in front of an echo upstream, and a connection to it that has
/// been served `GET /one`.
async fn served_once() -> (Upstream, TestGateway, TcpStream) {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let s = served(&gw, "/one").await;
    (up, gw, s)
}

fn uris(up: &Upstream) -> Vec<String> {
    up.received().into_iter().map(|r| r.uri).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_parked_and_served_again() {
    let (up, gw, mut s) = served_once().await;
    assert!(parked(&gw, 1).await, "the idle connection was not parked");
    let second = round_trip(&mut s, &request_for("/two")).await;
    assert_eq!(status_of(&second), 200, "{second:.300}");
    assert!(
        !second.to_ascii_lowercase().contains("connection: close"),
        "{second:.300}"
    );
    assert_eq!(gw.metric(TOKEN, PARKED).await, 0, "served, so not parked");
    assert_eq!(uris(&up), ["/one", "/two"]);
    // Parked again after the second request; a client that goes away is
    // no longer counted.
    assert!(parked(&gw, 1).await);
    drop(s);
    assert!(parked(&gw, 0).await, "a closed connection is still counted");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_split_across_the_park_is_served() {
    let (up, gw, mut s) = served_once().await;
    // Half a head, then a pause past the park: hyper has read those bytes
    // when the connection is parked, and they must not be lost.
    s.write_all(b"GET /second HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let resp = round_trip(&mut s, b"st: a\r\nX-Part: tail\r\n\r\n").await;
    assert_eq!(status_of(&resp), 200, "{resp:.300}");
    assert_eq!(uris(&up), ["/one", "/second"]);
    assert_eq!(up.last().headers["x-part"], "tail");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_wake_a_parked_connection() {
    let (up, gw, mut s) = served_once().await;
    assert!(parked(&gw, 1).await);
    // Three requests in one write, longer than the parked connection's first
    // read: the rest is read by the new hyper connection.
    let long = format!("/two?pad={}", "p".repeat(200));
    let mut burst = request_for(&long);
    burst.extend(request_for("/three"));
    burst.extend(request_for("/four"));
    s.write_all(&burst).await.unwrap();
    let answers = read_responses(&mut s, 3).await;
    assert_eq!(answers.len(), 3, "{answers:?}");
    for resp in &answers {
        assert_eq!(status_of(resp), 200, "{resp:.300}");
    }
    assert_eq!(uris(&up), ["/one", long.as_str(), "/three", "/four"]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_closes_at_the_header_timeout_and_on_shutdown() {
    // Idle keep-alive ends header_read_timeout (6s) after the last response,
    // parked (at 2s) or not.
    let (_up, gw, mut s) = served_once().await;
    let answered = Instant::now();
    assert!(parked(&gw, 1).await);
    assert!(closed_within(&mut s, Duration::from_secs(9)).await);
    let open_for = answered.elapsed();
    assert!(
        open_for >= Duration::from_millis(5500),
        "closed after {open_for:?}"
    );
    assert!(parked(&gw, 0).await);
    // Shutdown does not wait for a parked connection (drain_timeout is 30s).
    let mut s = served(&gw, "/two").await;
    assert!(parked(&gw, 1).await);
    let stopping = Instant::now();
    gw.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?}",
        stopping.elapsed()
    );
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_is_parked_and_served_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "edge");
    let cert = ca.server("gw", "gw", &["127.0.0.1"]);
    let up = Upstream::start("up", Behavior::Echo).await;
    let listener = format!(
        "listeners:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}]\n",
        cert.cert_file.display(),
        cert.key_file.display()
    );
    let gw = TestGateway::start(&config(&up, &listener)).await;
    let connector = ca.connector(&["http/1.1"], None);
    let mut s = connect(&connector, gw.addr, "127.0.0.1").await.unwrap();
    get_ok(&mut s, "/one").await;
    assert!(parked(&gw, 1).await, "the idle connection was not parked");
    get_ok(&mut s, "/two").await;
    assert_eq!(uris(&up), ["/one", "/two"]);
    gw.stop().await;
}
