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

/// A balancer polling `/ready` must see 503 before the listener closes:
/// during `drain_delay` readiness fails while requests are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_fails_at_once_and_listeners_accept_through_drain_delay() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let yaml = format!(
        "{}limits: {{ drain_delay: 1500ms }}\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s }}\n",
        crate::observability::ADMIN,
        up.url()
    );
    let mut gw = TestGateway::start(&yaml).await;
    let ready = gw.admin_url("/ready");
    assert_eq!(get(&ready).await.status, 200);
    let gateway = gw.gateway.take().expect("running");
    let started = Instant::now();
    let stopping = tokio::spawn(gateway.shutdown());
    let r = get(&ready).await;
    assert_eq!(r.status, 503, "readiness fails as soon as draining starts");
    assert_eq!(r.json()["draining"], true);
    let served = get(&gw.url("/during-delay")).await;
    assert_eq!(
        served.status, 200,
        "the listener still serves during drain_delay"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "checked inside the delay"
    );
    stopping.await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the listener stayed open for the whole delay"
    );
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
    assert_eq!(up.last().uri, "/during-delay");
}

/// `GATEHOUSE_LOG_FORMAT=json`: every operational log line is one JSON
/// object a log shipper can read; an unknown format is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_logs_can_be_json() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let (_dir, path) = crate::support::gateway::prepare_dir("routes: []\nservices: []\n", &[]);
    let bin = env!("CARGO_BIN_EXE_gatehouse");
    let mut child = Command::new(bin)
        .args(["run", "-c"])
        .arg(&path)
        .env("GATEHOUSE_LOG", "info")
        .env("GATEHOUSE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gatehouse");
    let stderr = child.stderr.take().expect("stderr");
    let (addr, _) = crate::support::process::started(&mut child, false);
    let line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("listening"))
        .expect("a log line about the listener");
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&line).expect("the line is JSON");
    assert_eq!(v["level"], "INFO", "{line}");
    assert_eq!(v["message"], "listening", "{line}");
    assert_eq!(v["addr"], addr.to_string(), "{line}");
    assert!(v["timestamp"].is_string(), "{line}");

    let out = Command::new(bin)
        .args(["run", "-c"])
        .arg(&path)
        .env("GATEHOUSE_LOG_FORMAT", "xml")
        .output()
        .expect("run gatehouse");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("GATEHOUSE_LOG_FORMAT=`xml`: expected `text` or `json`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
