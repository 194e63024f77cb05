//! Plugin chains end to end: edits, short-circuits, bodies, cooperating
//! attributes, context, and load-time config errors.

use http::Method;

use crate::support::*;

fn chain_config(up: &str, plugins: &str) -> String {
    format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{up}\" }}]\nroutes:\n  - id: r\n    match: {{ path: \"/items/{{id}}\" }}\n    upstream: s\n    plugins:\n{plugins}"
    )
}

async fn start(up: &Upstream, plugins: &str) -> TestGateway {
    let kit = plugin_path("testkit");
    TestGateway::start_with_plugins(&chain_config(&up.url(), plugins), &[("testkit", &kit)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_edits_and_response_hooks_in_reverse_order() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(
        &up,
        "      - { name: testkit, config: { mode: add-header, name: x-first, value: one } }\n      - { name: testkit, config: { mode: add-header, name: x-second, value: two } }\n",
    )
    .await;
    let r = get(&gw.url("/items/1")).await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-first"], "one");
    assert_eq!(seen.headers["x-second"], "two");
    // on-response runs in reverse: the second plugin appends first.
    let seen_by: Vec<&str> = r
        .headers
        .get_all("x-seen-by")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(seen_by, vec!["two", "one"]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_circuit_skips_upstream_but_earlier_response_hooks_run() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(
        &up,
        "      - { name: testkit, config: { mode: add-header, name: x-first, value: one } }\n      - { name: testkit, config: { mode: deny, status: 403 } }\n      - { name: testkit, config: { mode: add-header, name: x-third, value: three } }\n",
    )
    .await;
    let r = get(&gw.url("/items/1")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "denied");
    assert_eq!(r.json()["request_id"], r.header("x-request-id").unwrap());
    assert_eq!(r.header("x-denied-by"), Some("testkit"));
    assert_eq!(
        r.header("x-seen-by"),
        Some("one"),
        "only plugins that ran see the response"
    );
    assert_eq!(up.hits(), 0, "the upstream was never called");
    let r = request(Method::GET, &gw.url("/items/1"), &[("x-allow", "yes")], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_hooks_rewrite_both_bodies() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(
        &up,
        "      - { name: testkit, config: { mode: rewrite-body, suffix: \"<!--gw-->\" } }\n",
    )
    .await;
    let r = request(
        Method::POST,
        &gw.url("/items/1"),
        &[("content-type", "text/plain")],
        "hello",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(&up.last().body[..], b"HELLO");
    assert_eq!(up.last().headers["content-length"], "5");
    assert!(r.text().ends_with("<!--gw-->"), "{}", r.text());
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_flow_between_plugins_and_context_is_visible() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start(
        &up,
        "      - { name: testkit, config: { mode: read-attr, name: consumer, header: x-before } }\n      - { name: testkit, config: { mode: set-attr, name: consumer, value: alice } }\n      - { name: testkit, config: { mode: read-attr, name: consumer, header: x-consumer } }\n      - { name: testkit, config: { mode: echo } }\n",
    )
    .await;
    let r = request(
        Method::GET,
        &gw.url("/items/77"),
        &[("x-request-id", "rid-5")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-before"], "missing");
    assert_eq!(seen.headers["x-consumer"], "alice");
    assert_eq!(seen.headers["x-param-id"], "77");
    assert_eq!(seen.headers["x-ctx-request-id"], "rid-5");
    assert_eq!(seen.headers["x-ctx-route-id"], "r");
    assert_eq!(seen.headers["x-ctx-client-ip"], "127.0.0.1");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugin_config_is_a_load_error() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let kit = plugin_path("testkit");
    let start_err = async |plugin: &str| {
        let yaml = chain_config(&up.url(), plugin);
        let err = TestGateway::try_start_with_plugins(&yaml, &[("testkit", &kit)]).await;
        err.err().expect("must not start")
    };
    let msg = start_err("      - { name: testkit, config: { mode: deny, status: 999 } }\n").await;
    assert!(msg.contains("routes[0].plugins[0]"), "{msg}");
    assert!(msg.contains("status 999 is not an HTTP status"), "{msg}");
    // An unknown mode fails in serde, with serde's message.
    let msg = start_err("      - { name: testkit, config: { mode: nope } }\n").await;
    assert!(
        msg.contains("invalid config") && msg.contains("nope"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_plugin_is_an_error_unless_optional() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let err = TestGateway::try_start(&chain_config(&up.url(), "      - { name: ghost }\n"))
        .await
        .err()
        .unwrap();
    assert!(err.contains("no ghost.wasm or ghost.cwasm"), "{err}");
    let gw = TestGateway::start(&chain_config(
        &up.url(),
        "      - { name: ghost, optional: true }\n",
    ))
    .await;
    assert_eq!(
        get(&gw.url("/items/1")).await.status,
        200,
        "serves without the optional plugin"
    );
    // When the file appears, the plugin starts to apply.
    let tag = plugin_path("tag-a");
    gw.install_plugin("ghost", &tag);
    let ok = eventually(std::time::Duration::from_secs(5), async || {
        get(&gw.url("/items/1")).await;
        up.last().headers.get("x-tag").is_some_and(|v| v == "a")
    })
    .await;
    assert!(ok, "optional plugin picked up once its file appeared");
    gw.stop().await;
}
