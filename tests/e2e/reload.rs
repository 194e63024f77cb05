//! Config reload and plugin hot swap under continuous load: zero failed
//! requests, new behaviour within a second, bad inputs rejected.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;

fn config(up: &Upstream, version: usize) -> String {
    format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /* }}, upstream: s, rewrite: {{ path: /v{version} }} }}\n",
        up.url()
    )
}

async fn wait_reloads(gw: &TestGateway, n: u64) -> bool {
    eventually(Duration::from_secs(5), async || {
        gw.shared().stats.reloads_ok.load(Ordering::Relaxed) >= n
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_nothing_and_bad_configs_are_rejected() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&config(&up, 0)).await;
    let load = Load::start(gw.url("/x"), 4);
    let mut applied = 0;
    let started = Instant::now();
    while (applied < 20 || load.ok() < 5_000) && started.elapsed() < Duration::from_secs(60) {
        applied += 1;
        gw.write_config(&config(&up, applied));
        assert!(
            wait_reloads(&gw, applied as u64).await,
            "reload {applied} not applied"
        );
        let seen = eventually(Duration::from_secs(2), async || {
            up.last().uri == format!("/v{applied}")
        })
        .await;
        assert!(seen, "reload {applied} not visible upstream");
    }
    // An invalid config (unknown service) keeps the last good one serving.
    gw.write_config(&config(&up, 999).replace("upstream: s", "upstream: nope"));
    let rejected = eventually(Duration::from_secs(5), async || {
        gw.shared().stats.reloads_failed.load(Ordering::Relaxed) >= 1
    })
    .await;
    assert!(rejected);
    let error = gw
        .shared()
        .last_error()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("routes[0].upstream: unknown service \"nope\""),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ok, failed, first) = load.finish().await;
    assert_eq!(failed, 0, "first failure: {first:?}");
    assert!(ok >= 5_000 && applied >= 20, "ok={ok} reloads={applied}");
    assert_eq!(
        up.last().uri,
        format!("/v{applied}"),
        "the last good config still serves"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_hot_swap_fifty_times_under_load() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let (a, b) = (plugin_path("tag-a"), plugin_path("tag-b"));
    let gw = GatewayProcess::spawn(&tagged_route(&up), &[("tag", &a)]);
    let tag_of = async || {
        let r = get(&gw.url("/probe")).await;
        r.json()["headers"]["x-tag"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(tag_of().await, "a");
    let load = Load::start(gw.url("/load"), 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = gw.rss_kib();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let mut swaps = 0;
    while (swaps < 50 || load.ok() < 10_000) && started.elapsed() < Duration::from_secs(90) {
        swaps += 1;
        let (src, want) = if swaps % 2 == 1 { (&b, "b") } else { (&a, "a") };
        let t = Instant::now();
        gateway_replace(&gw, "tag", src);
        // Correctness, not speed: the switch must happen; how fast is the benchmark's job.
        let switched = eventually(Duration::from_secs(10), async || tag_of().await == want).await;
        assert!(switched, "swap {swaps} to {want} never served");
        slowest = slowest.max(t.elapsed());
    }
    // A corrupt file is rejected; the running version keeps serving.
    let current = tag_of().await;
    std::fs::write(gw.plugin_dir().join("tag.wasm.tmp"), b"\0asm garbage").unwrap();
    std::fs::rename(
        gw.plugin_dir().join("tag.wasm.tmp"),
        gw.plugin_dir().join("tag.wasm"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        tag_of().await,
        current,
        "corrupt file must not replace the running version"
    );
    let rss_after = gw.rss_kib();
    let (ok, failed, first) = load.finish().await;
    eprintln!(
        "hot swap: {swaps} swaps, {ok} requests, slowest switch {slowest:?}, RSS {rss_before} -> {rss_after} KiB"
    );
    assert_eq!(failed, 0, "first failure: {first:?}");
    assert!(swaps >= 50 && ok >= 10_000, "swaps={swaps} ok={ok}");
    assert!(
        rss_after * 100 <= rss_before * 120,
        "RSS {rss_before} -> {rss_after} KiB"
    );
}

fn gateway_replace(gw: &GatewayProcess, name: &str, src: &std::path::Path) {
    let bytes = std::fs::read(src).unwrap();
    crate::support::gateway::replace_file(&gw.plugin_dir().join(format!("{name}.wasm")), &bytes);
}

/// A hot swap builds a new snapshot: the one requests in flight hold is never
/// edited, and plugins other than the swapped one are carried over as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_swap_leaves_the_running_snapshot_untouched() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let (a, b) = (plugin_path("tag-a"), plugin_path("tag-b"));
    let yaml = format!(
        "{}  - id: other\n    match: {{ path: /other }}\n    upstream: s\n    plugins: [{{ name: other }}]\n",
        tagged_route(&up)
    );
    let gw = TestGateway::start_with_plugins(&yaml, &[("tag", &a), ("other", &a)]).await;
    let before = gw.shared().snapshot();
    let version = |s: &gatehouse::snapshot::Snapshot, name: &str| {
        let all = s.attachments();
        let found = all.iter().find(|x| &*x.config().name == name).unwrap();
        (found.version(), std::sync::Arc::as_ptr(found))
    };
    let (old_tag, _) = version(&before, "tag");
    let (_, old_other) = version(&before, "other");
    gw.install_plugin("tag", &b);
    let swapped = eventually(Duration::from_secs(10), async || {
        get(&gw.url("/")).await.json()["headers"]["x-tag"] == "b"
    })
    .await;
    assert!(swapped, "the new version never served");
    let after = gw.shared().snapshot();
    assert!(
        !std::sync::Arc::ptr_eq(&before, &after),
        "a new snapshot went live"
    );
    assert_eq!(
        version(&before, "tag").0,
        old_tag,
        "the old snapshot was not edited"
    );
    assert_ne!(version(&after, "tag").0, old_tag);
    assert_eq!(
        version(&after, "other").1,
        old_other,
        "other plugins carried over"
    );
    gw.stop().await;
}

/// Removing a plugin's file is not a swap: the running version keeps serving,
/// an optional plugin included (its policy must not vanish with the file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_plugin_file_leaves_the_running_version_serving() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let yaml = format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n    plugins: [{{ name: tag, optional: true }}]\n",
        up.url()
    );
    let gw = TestGateway::start_with_plugins(&yaml, &[("tag", &plugin_path("tag-a"))]).await;
    let tag = async || get(&gw.url("/")).await.json()["headers"]["x-tag"].clone();
    assert_eq!(tag().await, "a");
    std::fs::remove_file(gw.plugin_dir().join("tag.wasm")).unwrap();
    // Give the watcher time to see the removal and act on it.
    let swaps = || gw.shared().stats.swaps_ok.load(Ordering::Relaxed);
    let before = swaps();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tag().await, "a", "still served by the loaded version");
    assert_eq!(swaps(), before, "nothing was swapped");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_plugin_refuses_any_other_file_and_takes_the_admin_upload_it_pins() {
    use sha2::Digest;
    let up = Upstream::start("up", Behavior::Echo).await;
    let (a, b) = (plugin_path("tag-a"), plugin_path("tag-b"));
    let sha = |p: &std::path::Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()));
    let yaml = format!(
        "admin:\n  addr: 127.0.0.1:0\n  tokens: [{{ name: ops, token: pinned-admin-token-0123 }}]\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n    plugins: [{{ name: tag, sha256: \"sha256:{}\" }}]\n",
        up.url(),
        sha(&a)
    );
    let gw = TestGateway::start_with_plugins(&yaml, &[("tag", &a)]).await;
    let tag = async || get(&gw.url("/")).await.json()["headers"]["x-tag"].clone();
    assert_eq!(tag().await, "a");

    // Another file, uploaded through the admin API: written, refused, a keeps serving.
    let auth = ("authorization", "Bearer pinned-admin-token-0123");
    let upload = request(
        http::Method::PUT,
        &gw.admin_url("/plugins/tag"),
        &[auth],
        std::fs::read(&b).unwrap(),
    )
    .await;
    assert_eq!(upload.status, 422, "{}", upload.text());
    assert!(
        upload.text().contains("the config pins"),
        "{}",
        upload.text()
    );
    assert_eq!(tag().await, "a");
    let plugins = request(http::Method::GET, &gw.admin_url("/plugins"), &[auth], "")
        .await
        .json();
    assert!(
        plugins[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&sha(&b))),
        "{plugins}"
    );

    // The pinned file uploaded again: taken (no error left).
    let upload = request(
        http::Method::PUT,
        &gw.admin_url("/plugins/tag"),
        &[auth],
        std::fs::read(&a).unwrap(),
    )
    .await;
    assert_eq!(upload.status, 200, "{}", upload.text());
    assert_eq!(upload.json()["sha256"], sha(&a));
    assert_eq!(tag().await, "a");
    let plugins = request(http::Method::GET, &gw.admin_url("/plugins"), &[auth], "")
        .await
        .json();
    assert!(plugins[0]["last_error"].is_null(), "{plugins}");
    gw.stop().await;
}
