//! Protocols through the gateway: h2c to upstreams, gRPC end to end (a real
//! tonic server and client), and WebSocket (a real tokio-tungstenite pair).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::ws::WsEcho;
use crate::support::{Behavior, TestGateway, Upstream, get, plugin_path};

fn h2c_service(url: &str) -> String {
    format!(
        "services:\n  - name: s\n    protocol: h2c\n    instances: [{{ url: \"{url}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upstreams_get_http2_with_prior_knowledge() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&h2c_service(&up.url())).await;
    let r = get(&gw.url("/h2c")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/2.0");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_streaming_and_errors_pass_through() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let gw = TestGateway::start(&h2c_service(&format!("http://{addr}"))).await;
    let channel = tonic::transport::Endpoint::from_shared(gw.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    // Unary: the answer arrives with grpc-status 0 in the trailers (tonic
    // refuses a response without it).
    let reply = client
        .check(HealthCheckRequest {
            service: "orders".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().status, ServingStatus::Serving as i32);
    // A gRPC error status passes through with its message.
    let err = client
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // Server streaming: updates arrive one by one over the same call.
    let mut updates = client
        .watch(HealthCheckRequest {
            service: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let next = async |s: &mut tonic::Streaming<_>| {
        tokio::time::timeout(Duration::from_secs(5), s.message())
            .await
            .expect("an update in time")
            .unwrap()
            .map(|m: tonic_health::pb::HealthCheckResponse| m.status)
    };
    assert_eq!(
        next(&mut updates).await,
        Some(ServingStatus::Serving as i32)
    );
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::NotServing)
        .await;
    assert_eq!(
        next(&mut updates).await,
        Some(ServingStatus::NotServing as i32)
    );
    drop(updates);
    server.abort();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_flow_both_ways_after_request_plugins_ran() {
    let ws = WsEcho::start().await;
    let yaml = format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /ws }}\n    upstream: s\n    plugins:\n      - name: testkit\n        config: {{ mode: add-header, name: x-checked, value: yes }}\n",
        ws.url()
    );
    let gw = TestGateway::start_with_plugins(&yaml, &[("testkit", &plugin_path("testkit"))]).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut socket, resp) = tokio_tungstenite::client_async(format!("ws://{}/ws", gw.addr), tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    {
        let seen = ws.handshakes.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].1.get("x-checked").unwrap(),
            "yes",
            "the plugin saw the handshake"
        );
    }
    for i in 0..3 {
        socket
            .send(Message::text(format!("hello {i}")))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply, Message::text(format!("echo: hello {i}")));
    }
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::binary(vec![0u8, 1, 2, 255]));
    socket.close(None).await.unwrap();
    // The server answers the close frame and the stream ends, through the tunnel.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                None => return Ok(()),
                Some(Ok(Message::Close(_))) => {}
                Some(Ok(other)) => return Err(format!("unexpected {other:?}")),
                Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    })
    .await;
    assert_eq!(ended.expect("closed in time"), Ok(()), "a clean close");
    gw.stop().await;
}
