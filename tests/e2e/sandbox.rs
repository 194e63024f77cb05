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

fn kit_attachment(max_instances: usize, config: &str) -> gatehouse::config::AttachmentConfig {
    gatehouse::config::AttachmentConfig {
        config: config.into(),
        timeout: std::time::Duration::from_millis(100),
        memory_limit: 16 << 20,
        max_instances,
        ..gatehouse::config::AttachmentConfig::named("testkit")
    }
}

fn exchange() -> gatehouse::exchange::PluginView {
    let mut view = gatehouse::exchange::PluginView::blank();
    view.request_id = http::HeaderValue::from_static("r1");
    view.route_id = "r".into();
    view.client_ip = "127.0.0.1".parse().unwrap();
    view.req = gatehouse::exchange::RequestHead {
        method: http::Method::GET,
        uri: "/x".parse().unwrap(),
        headers: http::HeaderMap::new(),
        scheme: "http",
        host: "localhost".into(),
    };
    view.counters = vec!["r#0".into()].into();
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_instance_is_kept_once_calls_overlap() {
    use gatehouse::plugin::pool::Call;
    let rt = gatehouse::plugin::PluginRuntime::new().unwrap();
    let compiled = rt.compile("testkit", &plugin_path("testkit")).unwrap();
    // 5 ms per call: the guest yields at each 1 ms epoch tick, so two calls
    // started together overlap.
    let slow = r#"{"mode":"sleep","ms":5}"#;
    let call = async |pool: &std::sync::Arc<gatehouse::plugin::pool::Pool>| {
        let r = pool.invoke(&mut exchange(), Call::Request).await;
        r.unwrap();
    };
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(100));

    // One request at a time: the one instance is enough, no spare is kept.
    let pool = rt
        .start_pool(&compiled, &kit_attachment(4, slow))
        .await
        .unwrap();
    assert_eq!(pool.idle_count(), 1);
    for _ in 0..3 {
        call(&pool).await;
    }
    settle().await;
    assert_eq!(pool.idle_count(), 1, "no spare for a pool without overlap");

    // Two overlapping calls: the second starts an instance on its own path...
    tokio::join!(call(&pool), call(&pool));
    settle().await;
    assert_eq!(pool.idle_count(), 2);
    // ...and from then on, taking the last idle instance starts a spare in
    // the background, so the next concurrent request does not pay for it.
    tokio::join!(call(&pool), call(&pool));
    let spare = eventually(std::time::Duration::from_secs(5), async || {
        pool.idle_count() == 3
    })
    .await;
    assert!(spare, "idle instances: {}", pool.idle_count());

    // With one instance allowed, the one in use is all there may be.
    let single = rt
        .start_pool(&compiled, &kit_attachment(1, slow))
        .await
        .unwrap();
    tokio::join!(call(&single), call(&single));
    settle().await;
    assert_eq!(single.idle_count(), 1);
}
