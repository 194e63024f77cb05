//! Misbehaving plugins: panics, infinite loops, memory hogs and slow calls are
//! contained, follow `on_error`, and never break later requests.

use crate::support::*;

async fn start(up: &Upstream, plugin: &str, on_error: &str) -> TestGateway {
    let kit = plugin_path("testkit");
    let yaml = format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n    plugins:\n      - {{ name: testkit, on_error: {on_error}, timeout: 50ms, memory_limit_mb: 16, config: {plugin} }}\n",
        up.url()
    );
    TestGateway::start_with_plugins(&yaml, &[("testkit", &kit)]).await
}

async fn assert_contained(gw: &TestGateway, bad_path: &str, code: &str) {
    for _ in 0..3 {
        let r = get(&gw.url(bad_path)).await;
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.json()["error"], code);
        // The instance that failed was discarded: the next request is served.
        let ok = get(&gw.url("/fine")).await;
        assert_eq!(ok.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_is_denied_then_recovers() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(&up, "{ mode: panic }", "deny").await;
    assert_contained(&gw, "/boom", "plugin_error").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_hits_the_deadline() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(&up, "{ mode: loop }", "deny").await;
    let t = std::time::Instant::now();
    assert_contained(&gw, "/spin", "plugin_timeout").await;
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_hits_the_cap() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(&up, "{ mode: hog, mb: 64 }", "deny").await;
    assert_contained(&gw, "/hog", "plugin_error").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_plugin_times_out() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(&up, "{ mode: sleep, ms: 200 }", "deny").await;
    let r = get(&gw.url("/any")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"], "plugin_timeout");
    assert_eq!(up.hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_allow_skips_the_failed_plugin() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(&up, "{ mode: panic }", "allow").await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/boom")).await.status, 200);
    }
    assert_eq!(up.hits(), 3);
    gw.stop().await;
}
