//! The admin API end to end: tokens, CRUD with file validation, versions and
//! rollback, concurrent writes, consumers and API keys reaching the api-key
//! plugin, and the read endpoints.

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use crate::observability::{ADMIN, TOKEN};
use crate::support::{Behavior, TestGateway, Upstream, eventually, get, plugin_path, request};

const READ: &str = "Bearer test-read-token-0123456789";

/// An admin API call with the full token: the status and the JSON answer
/// (`Null` when it is not JSON); a `Null` body sends none.
pub(crate) async fn call(
    gw: &TestGateway,
    method: Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = request(
        method,
        &gw.admin_url(path),
        &[("authorization", TOKEN)],
        body,
    )
    .await;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status.as_u16(), v)
}

fn base(up: &Upstream) -> String {
    format!(
        "{ADMIN}services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: first\n    match: {{ path: /first }}\n    upstream: s\n",
        up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_everything_but_health() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&base(&up)).await;
    assert_eq!(get(&gw.admin_url("/health")).await.status, 200);
    let r = get(&gw.admin_url("/ready")).await;
    assert_eq!(
        (r.status.as_u16(), r.json()["ready"].clone()),
        (200, json!(true))
    );
    let r = get(&gw.admin_url("/routes")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let wrong = request(
        Method::GET,
        &gw.admin_url("/routes"),
        &[("authorization", "Bearer nope-nope-nope-nope")],
        "",
    )
    .await;
    assert_eq!(wrong.status, 401);
    let read = request(
        Method::GET,
        &gw.admin_url("/routes"),
        &[("authorization", READ)],
        "",
    )
    .await;
    assert_eq!(read.status, 200);
    let write = request(
        Method::DELETE,
        &gw.admin_url("/routes/first"),
        &[("authorization", READ)],
        "",
    )
    .await;
    assert_eq!(write.status, 403);
    assert_eq!(
        get(&gw.url("/first")).await.status,
        200,
        "the read-only token changed nothing"
    );
    let spec = request(
        Method::GET,
        &gw.admin_url("/openapi.json"),
        &[("authorization", READ)],
        "",
    )
    .await;
    assert_eq!(spec.json()["openapi"], "3.1.0");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_validated_applied_persisted_and_versioned() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let other = Upstream::start("other", Behavior::Echo).await;
    let gw = TestGateway::start(&base(&up)).await;
    let (s, v) = call(
        &gw,
        Method::POST,
        "/services",
        json!({ "name": "o", "instances": [{ "url": other.url() }] }),
    )
    .await;
    assert_eq!((s, v["version"].clone()), (200, json!(2)));
    let (s, _) = call(
        &gw,
        Method::POST,
        "/routes",
        json!({ "id": "second", "match": { "path": "/second" }, "upstream": "o" }),
    )
    .await;
    assert_eq!(s, 200);
    let r = get(&gw.url("/second")).await;
    assert_eq!(r.header("x-upstream"), Some("other"));
    // The file on disk holds the change (a restart would keep it).
    let on_disk = std::fs::read_to_string(gw.config_path()).unwrap();
    assert!(
        on_disk.contains("second") && on_disk.contains("/second"),
        "{on_disk}"
    );
    // A bad write: 400 naming the field, and nothing changes.
    let (s, v) = call(
        &gw,
        Method::POST,
        "/routes",
        json!({ "id": "bad", "match": { "path": "/bad" }, "upstream": "missing" }),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_config");
    assert_eq!(v["errors"][0]["path"], "routes[2].upstream", "{v}");
    let (s, v) = call(
        &gw,
        Method::PATCH,
        "/services/o",
        json!({ "load_balancer": "fastest" }),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("fastest")
    );
    let (s, v) = call(&gw, Method::DELETE, "/services/o", Value::Null).await;
    assert_eq!(s, 400, "a service still in use: {v}");
    assert_eq!(
        call(&gw, Method::GET, "/config/versions", Value::Null)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(get(&gw.url("/bad")).await.status, 404);
    assert_eq!(std::fs::read_to_string(gw.config_path()).unwrap(), on_disk);
    // PATCH and DELETE.
    let (s, _) = call(
        &gw,
        Method::PATCH,
        "/routes/second",
        json!({ "match": { "path": "/second-v2" } }),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(get(&gw.url("/second")).await.status, 404);
    assert_eq!(get(&gw.url("/second-v2")).await.status, 200);
    assert_eq!(
        call(&gw, Method::GET, "/routes/second", Value::Null)
            .await
            .1["match"]["path"],
        "/second-v2"
    );
    let (s, _) = call(&gw, Method::DELETE, "/routes/second", Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(
        call(&gw, Method::DELETE, "/routes/second", Value::Null)
            .await
            .0,
        404
    );
    // Plugin attachments of a route.
    let (s, _) = call(&gw, Method::POST, "/routes/first/plugins", json!({ "name": "testkit", "config": { "mode": "add-header", "name": "x-added", "value": "1" } })).await;
    assert_eq!(s, 400, "the plugin file is not in plugin_dir yet");
    gw.install_plugin("testkit", &plugin_path("testkit"));
    let (s, v) = call(&gw, Method::POST, "/routes/first/plugins", json!({ "name": "testkit", "config": { "mode": "add-header", "name": "x-added", "value": "1" } })).await;
    assert_eq!(s, 200, "{v}");
    get(&gw.url("/first")).await;
    assert_eq!(up.last().headers["x-added"], "1");
    assert_eq!(
        call(&gw, Method::GET, "/plugins", Value::Null).await.1[0]["routes"],
        json!(["first"])
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_roll_back_and_file_edits_become_versions() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&base(&up)).await;
    call(
        &gw,
        Method::POST,
        "/routes",
        json!({ "id": "new", "match": { "path": "/new" }, "upstream": "s" }),
    )
    .await;
    call(&gw, Method::DELETE, "/routes/first", Value::Null).await;
    assert_eq!(get(&gw.url("/first")).await.status, 404);
    assert_eq!(get(&gw.url("/new")).await.status, 200);
    let (_, list) = call(&gw, Method::GET, "/config/versions", Value::Null).await;
    let summaries: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["summary"].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries,
        ["initial config", "routes: +new", "routes: -first"]
    );
    assert_eq!(list[1]["author"], "admin");
    let (s, v) = call(&gw, Method::POST, "/config/rollback/1", Value::Null).await;
    assert_eq!((s, v["version"].clone()), (200, json!(4)));
    assert_eq!(get(&gw.url("/first")).await.status, 200);
    assert_eq!(get(&gw.url("/new")).await.status, 404);
    let (_, v1) = call(&gw, Method::GET, "/config/versions/1", Value::Null).await;
    let (_, now) = call(&gw, Method::GET, "/config", Value::Null).await;
    assert_eq!(v1["document"], now, "the exact previous config");
    // A hand edit of the file is a version too, by `file`.
    gw.write_config(&base(&up).replace("/first", "/edited"));
    assert!(
        eventually(Duration::from_secs(5), async || get(&gw.url("/edited"))
            .await
            .status
            == 200)
        .await
    );
    let (_, list) = call(&gw, Method::GET, "/config/versions", Value::Null).await;
    let last = list.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["version"].clone(), last["author"].clone()),
        (json!(5), json!("file"))
    );
    assert_eq!(last["summary"], "routes: ~first");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_do_not_lose_one_another() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = std::sync::Arc::new(TestGateway::start(&base(&up)).await);
    let writes: Vec<_> = (0..8)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                call(&gw, Method::POST, "/routes", json!({ "id": format!("r{i}"), "match": { "path": format!("/r{i}") }, "upstream": "s" })).await.0
            })
        })
        .collect();
    for w in writes {
        assert_eq!(w.await.unwrap(), 200);
    }
    let (_, routes) = call(&gw, Method::GET, "/routes", Value::Null).await;
    assert_eq!(routes.as_array().unwrap().len(), 9);
    for i in 0..8 {
        assert_eq!(get(&gw.url(&format!("/r{i}"))).await.status, 200);
    }
    let (_, list) = call(&gw, Method::GET, "/config/versions", Value::Null).await;
    assert_eq!(list.as_array().unwrap().len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_made_by_the_admin_api_reach_the_plugin_without_restart() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let yaml = format!(
        "{ADMIN}services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: s\n    plugins:\n      - {{ name: api-key, config: {{ keys_from_consumers: true }} }}\n",
        up.url()
    );
    let gw = TestGateway::start_with_plugins(&yaml, &[("api-key", &plugin_path("api-key"))]).await;
    assert_eq!(get(&gw.url("/api")).await.status, 401);
    let (s, v) = call(
        &gw,
        Method::POST,
        "/consumers/alice/keys",
        json!({ "scopes": ["read"] }),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let key = v["key"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    let r = request(Method::GET, &gw.url("/api"), &[("x-api-key", &key)], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().headers["x-consumer-id"], "alice");
    // Only the hash is stored, in the consumer store beside the config (the
    // config itself is not rewritten for a key).
    let store = gw.config_path().with_file_name("gatehouse.consumers.jsonl");
    let on_disk = std::fs::read_to_string(&store).unwrap();
    assert!(!on_disk.contains(&key) && on_disk.contains("sha256:"));
    assert!(
        !std::fs::read_to_string(gw.config_path())
            .unwrap()
            .contains("alice")
    );
    let (_, list) = call(&gw, Method::GET, "/consumers", Value::Null).await;
    assert_eq!(list[0]["keys"][0]["id"], id.as_str());
    assert_eq!(list[0]["source"], "store");
    assert!(list[0]["keys"][0].get("hash").is_none());
    let (s, _) = call(
        &gw,
        Method::POST,
        &format!("/consumers/alice/keys/{id}/disable"),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        request(Method::GET, &gw.url("/api"), &[("x-api-key", &key)], "")
            .await
            .status,
        401
    );
    let (s, _) = call(&gw, Method::DELETE, "/consumers/alice", Value::Null).await;
    assert_eq!(s, 200);
    let (_, list) = call(&gw, Method::GET, "/consumers", Value::Null).await;
    assert_eq!(list, json!([]));
    let (s, stats) = call(&gw, Method::GET, "/routes/api/stats", Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(stats["requests"]["2xx"], 1);
    assert_eq!(stats["requests"]["4xx"], 2);
    gw.stop().await;
}
