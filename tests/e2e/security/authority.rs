//! One authority per request, and the gateway's own HTTP version on responses.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::raw::{exchange, h2_client, status_of};
use crate::support::*;

/// Two open routes by host: `public.example` → `public`, `admin.example` → `admin`.
async fn by_host() -> (TestGateway, Upstream, Upstream) {
    let public = Upstream::start("public", Behavior::Echo).await;
    let admin = Upstream::start("admin", Behavior::Echo).await;
    let yaml = format!(
        "services:\n  - name: public\n    instances: [{{ url: \"{}\" }}]\n  - name: admin\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: p, match: {{ hosts: [public.example], path: /* }}, upstream: public }}\n  - {{ id: a, match: {{ hosts: [admin.example], path: /* }}, upstream: admin }}\n",
        public.url(),
        admin.url()
    );
    (TestGateway::start(&yaml).await, public, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_refused() {
    let (gw, public, admin) = by_host().await;
    let raw = b"GET /x HTTP/1.1\r\nHost: public.example\r\nHost: admin.example\r\nConnection: close\r\n\r\n";
    let resp = exchange(gw.addr, raw).await;
    assert_eq!(status_of(&resp), 400, "{resp:.300}");
    assert!(resp.contains("invalid_host"), "{resp:.300}");
    assert_eq!(public.hits() + admin.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_without_host_is_refused() {
    let (gw, public, admin) = by_host().await;
    let resp = exchange(gw.addr, b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 400, "{resp:.300}");
    assert_eq!(public.hits() + admin.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_authority_wins_over_host() {
    let (gw, public, admin) = by_host().await;
    let raw =
        b"GET http://admin.example/x HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n";
    let resp = exchange(gw.addr, raw).await;
    assert_eq!(status_of(&resp), 200, "{resp:.300}");
    assert_eq!(
        public.hits(),
        0,
        "routed by the target's authority, not Host"
    );
    let got = admin.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uri, "/x", "origin form upstream");
    assert_eq!(
        got[0].headers["host"], "admin.example",
        "the upstream agrees on the host"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_in_the_target_is_refused() {
    let (gw, public, admin) = by_host().await;
    let raw = b"GET http://public.example@admin.example/x HTTP/1.1\r\nHost: admin.example\r\nConnection: close\r\n\r\n";
    let resp = exchange(gw.addr, raw).await;
    assert_eq!(status_of(&resp), 400, "{resp:.300}");
    assert_eq!(public.hits() + admin.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_host_that_disagrees_with_authority_is_refused() {
    let (gw, public, admin) = by_host().await;
    let (mut send, _driver) = h2_client(gw.addr).await;
    let req = |host: &'static str| {
        http::Request::builder()
            .uri("http://admin.example/x")
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let resp = send.send_request(req("public.example")).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(public.hits() + admin.hits(), 0);
    // The same authority in both is fine.
    let resp = send.send_request(req("admin.example")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!((public.hits(), admin.hits()), (0, 1));
    gw.stop().await;
}

/// An upstream that answers every request with an HTTP/1.0 status line.
async fn http10_upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\nnop")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_the_gateways_http_version() {
    let up = http10_upstream().await;
    let yaml = format!(
        "services:\n  - name: s\n    instances: [{{ url: \"http://{up}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s }}\n"
    );
    let gw = TestGateway::start(&yaml).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // HTTP/1.1 semantics: the connection stays open for the next request.
    s.write_all(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("second response")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 404"));
    gw.stop().await;
}
