//! A plugin rolled out by weighted versions (`versions:`, `version_key`):
//! sticky per client, named in the access log, promoted by a config change,
//! and hot-swapped file by file.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;

use crate::support::*;

fn config(up: &Upstream, versions: &str) -> String {
    format!(
        "{}access_log: {{ path: access.log }}\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /r }}\n    upstream: s\n    plugins:\n      - {{ name: tag, version_key: \"header:x-user\", versions: {versions} }}\n",
        crate::observability::ADMIN,
        up.url()
    )
}

/// The admin API's `/metrics` text.
async fn metrics(gw: &TestGateway) -> String {
    let auth = [("authorization", crate::observability::TOKEN)];
    request(Method::GET, &gw.admin_url("/metrics"), &auth, "")
        .await
        .text()
}

async fn tag_for(gw: &TestGateway, up: &Upstream, user: &str) -> String {
    let r = request(Method::GET, &gw.url("/r"), &[("x-user", user)], "").await;
    assert_eq!(r.status, 200);
    up.last().headers["x-tag"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_split_clients_stickily_log_the_version_and_follow_config_and_files() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let both = "[{ file: tag-a.wasm, weight: 1 }, { file: tag-b.wasm, weight: 1 }]";
    let gw = start_with(&config(&up, both), &["tag-a", "tag-b"]).await;
    let mut seen: HashMap<String, String> = HashMap::new();
    for i in 0..40 {
        let user = format!("u{i}");
        seen.insert(user.clone(), tag_for(&gw, &up, &user).await);
    }
    let a = seen.values().filter(|t| *t == "a").count();
    assert!(
        a > 5 && a < 35,
        "both versions take clients: {a} of 40 on a"
    );
    // Each client stays on its version.
    for i in [3, 17, 29] {
        let user = format!("u{i}");
        for _ in 0..4 {
            assert_eq!(tag_for(&gw, &up, &user).await, seen[&user], "{user}");
        }
    }
    // The access log names the version that ran.
    let lines = gw.access_log_lines(52).await;
    for l in &lines {
        let v = l["plugin_versions"]["tag"].as_str().unwrap();
        assert!(v == "tag-a" || v == "tag-b", "{l}");
    }
    assert_eq!(
        lines[0]["plugin_versions"]["tag"],
        format!("tag-{}", seen["u0"])
    );
    // And the metrics count each version's requests.
    let metrics = metrics(&gw).await;
    let on = |v: &str| {
        let prefix =
            format!("gatehouse_plugin_version_requests_total{{plugin=\"tag\",version=\"{v}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    };
    assert_eq!(on("tag-a") + on("tag-b"), 52, "{metrics}");
    let logged_a = lines
        .iter()
        .filter(|l| l["plugin_versions"]["tag"] == "tag-a")
        .count();
    assert_eq!(on("tag-a"), logged_a);

    // Promotion is a config change: every client on tag-b.
    gw.write_config(&config(&up, "[{ file: tag-b.wasm, weight: 1 }]"));
    let on_a = seen
        .iter()
        .find(|(_, t)| *t == "a")
        .map(|(u, _)| u.clone())
        .unwrap();
    let promoted = eventually(Duration::from_secs(5), async || {
        tag_for(&gw, &up, &on_a).await == "b"
    });
    assert!(promoted.await, "a client of tag-a moves to tag-b");
    for i in 0..10 {
        assert_eq!(tag_for(&gw, &up, &format!("u{i}")).await, "b");
    }
    // A version's file swaps like any plugin's: tag-b.wasm now holds tag-a.
    gw.install_plugin("tag-b", &plugin_path("tag-a"));
    let swapped = eventually(Duration::from_secs(10), async || {
        tag_for(&gw, &up, "u1").await == "a"
    });
    assert!(swapped.await, "the new file of version tag-b serves");
    gw.stop().await;
}

/// Why a gateway with only tag-a.wasm and these `versions` does not start.
async fn start_error(up: &Upstream, versions: &str) -> String {
    let plugins = [("tag-a", plugin_path("tag-a"))];
    let plugins: Vec<_> = plugins.iter().map(|(n, p)| (*n, p.as_path())).collect();
    match TestGateway::try_start_with_plugins(&config(up, versions), &plugins).await {
        Ok(_) => panic!("started with versions {versions}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_versions_are_named_config_errors() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let err = start_error(
        &up,
        "[{ file: tag-a.wasm, weight: 0 }, { file: ../tag-b.wasm, weight: 1 }]",
    )
    .await;
    assert!(
        err.contains("routes[0].plugins[0].versions[0].weight: must be at least 1"),
        "{err}"
    );
    assert!(
        err.contains("routes[0].plugins[0].versions[1].file: `../tag-b.wasm`"),
        "{err}"
    );
    let err = start_error(
        &up,
        "[{ file: tag-a.wasm, weight: 1 }, { file: tag-c.wasm, weight: 1 }]",
    )
    .await;
    assert!(
        err.contains("tag-c.wasm"),
        "a missing version file is named: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_version_runs_beside_the_live_one_changes_nothing_and_counts_differences() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let yaml = format!(
        "{}services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: r, match: {{ path: /r }}, upstream: s, plugins: [{{ name: tag, shadow: tag-b.wasm }}] }}\n  - {{ id: same, match: {{ path: /same }}, upstream: s, plugins: [{{ name: twin, shadow: twin-copy.wasm }}] }}\n",
        crate::observability::ADMIN,
        up.url()
    );
    let (a, b) = (plugin_path("tag-a"), plugin_path("tag-b"));
    let gw = TestGateway::start_with_plugins(
        &yaml,
        &[("tag", &a), ("tag-b", &b), ("twin", &a), ("twin-copy", &a)],
    )
    .await;
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/r")).await.status, 200);
        assert_eq!(
            up.last().headers["x-tag"],
            "a",
            "the upstream sees the live version only"
        );
        assert_eq!(get(&gw.url("/same")).await.status, 200);
    }
    let admin = |path: &str| {
        let url = gw.admin_url(path);
        async move {
            request(
                Method::GET,
                &url,
                &[("authorization", crate::observability::TOKEN)],
                "",
            )
            .await
            .json()
        }
    };
    let counted = eventually(Duration::from_secs(5), async || {
        let v = admin("/plugins/tag/shadow").await;
        v["differ"] == 20 && admin("/plugins/twin/shadow").await["same"] == 20
    });
    assert!(
        counted.await,
        "{} {}",
        admin("/plugins/tag/shadow").await,
        admin("/plugins/twin/shadow").await
    );
    let v = admin("/plugins/tag/shadow").await;
    assert_eq!(v["shadow"], "tag-b");
    let d = &v["differences"][0];
    assert_eq!(d["route"], "r");
    assert_eq!(d["request"], "GET /r");
    let tag_of = |side: &str| {
        d[side]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "x-tag")
            .map(|h| h[1].clone())
    };
    assert_eq!(
        (tag_of("live"), tag_of("shadow")),
        (Some("a".into()), Some("b".into()))
    );
    assert_eq!(v["differences"].as_array().unwrap().len(), 20);
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("gatehouse_plugin_shadow_total{plugin=\"tag\",result=\"differ\"} 20"),
        "{metrics}"
    );
    assert!(metrics.contains("gatehouse_plugin_shadow_total{plugin=\"twin\",result=\"same\"} 20"));
    gw.stop().await;
}
