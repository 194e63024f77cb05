//! The process around the request path: graceful drain on SIGTERM, the compile
//! cache, and precompiled `.cwasm` plugins.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let slow = Upstream::start("slow", Behavior::Delay(Duration::from_millis(800))).await;
    let mut gw = GatewayProcess::spawn(
        &format!(
            "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s }}\n",
            slow.url()
        ),
        &[],
    );
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url).await });
    // Let the request reach the upstream before the signal.
    assert!(
        eventually(Duration::from_secs(5), async || slow
            .active
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );
    gw.terminate();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight request finished");
    let started = Instant::now();
    let exited = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(10) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        exited.is_some_and(|s| s.success()),
        "gatehouse exits cleanly after draining: {exited:?}"
    );
    // New connections are refused once it is gone.
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_components_are_cached_and_cwasm_swaps_in() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let (a, b) = (plugin_path("tag-a"), plugin_path("tag-b"));
    let yaml = format!("allow_precompiled: true\n{}", tagged_route(&up));
    let gw = GatewayProcess::spawn(&yaml, &[("tag", &a)]);
    let cache: Vec<_> = std::fs::read_dir(gw.plugin_dir().join(".gatehouse-cache"))
        .expect("cache dir")
        .collect();
    assert_eq!(cache.len(), 1, "one compiled artifact cached");
    let tag = async || {
        get(&gw.url("/")).await.json()["headers"]["x-tag"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(tag().await, "a");

    precompile(&b, &gw.plugin_dir().join("tag.cwasm"));
    assert!(
        eventually(Duration::from_secs(10), async || tag().await == "b").await,
        "the .cwasm was swapped in"
    );
}
