//! The built-in `aggregate` plugin: a route answered from three real data
//! services called at once; full, partial (an optional part down) and failed
//! (a required part down or late) answers.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;

use crate::support::*;

/// Route `/bff/{id}` answered by aggregate from `users`, `orders` and the
/// optional `recs`; `app` is the route's upstream, never called.
async fn start(users: Behavior, recs: Behavior, user_part: &str) -> (Vec<Upstream>, TestGateway) {
    let app = Upstream::start("app", Behavior::Echo).await;
    let users = Upstream::start("users", users).await;
    let orders = Upstream::start("orders", Behavior::Delay(Duration::from_millis(300))).await;
    let recs = Upstream::start("recs", recs).await;
    let mut yaml = services_yaml(&[&app, &users, &orders, &recs]);
    yaml.push_str(&format!(
        "routes:\n  - id: bff\n    match: {{ path: \"/bff/{{id}}\" }}\n    upstream: app\n    plugins:\n      - {{ name: aggregate, callouts: [users, orders, recs], config: {{ forward_headers: [authorization], parts: [{{ key: user, service: users, path: \"/users/{{id}}\"{user_part} }}, {{ key: orders, service: orders, path: \"/orders?user={{id}}\" }}, {{ key: recs, service: recs, path: \"/recs/{{id}}\", required: false }}] }} }}\n"
    ));
    let p = plugin_path("aggregate");
    let gw = TestGateway::start_with_plugins(&yaml, &[("aggregate", &p)]).await;
    (vec![app, users, orders, recs], gw)
}

async fn call(gw: &TestGateway) -> (u16, Option<String>, Value) {
    let r = request(
        Method::GET,
        &gw.url("/bff/7"),
        &[("authorization", "Bearer t")],
        "",
    )
    .await;
    let partial = r.header("x-aggregate-partial").map(str::to_string);
    (
        r.status.as_u16(),
        partial,
        serde_json::from_str(&r.text()).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_part_answers_and_the_wait_is_the_slowest_not_the_sum() {
    let delay = Behavior::Delay(Duration::from_millis(300));
    let (ups, gw) = start(Behavior::Echo, delay, "").await;
    let started = Instant::now();
    let (status, partial, body) = call(&gw).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(partial, None);
    assert_eq!(body["user"]["uri"], "/users/7");
    assert_eq!(body["orders"]["uri"], "/orders?user=7");
    assert_eq!(body["recs"]["uri"], "/recs/7");
    assert_eq!(body["user"]["headers"]["authorization"], "Bearer t");
    assert_eq!(ups[0].hits(), 0, "the route's upstream is not called");
    eprintln!("aggregate: parts of 0, 300 and 300 ms answered in {took:?} (sum 600 ms)");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_part_down_degrades_to_null() {
    let (_ups, gw) = start(Behavior::Echo, Behavior::Status(500), "").await;
    let (status, partial, body) = call(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(partial.as_deref(), Some("recs"));
    assert_eq!(body["recs"], Value::Null);
    assert_eq!(body["user"]["uri"], "/users/7");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_part_down_is_502_naming_it() {
    let (ups, gw) = start(Behavior::Status(503), Behavior::Echo, "").await;
    let (status, _, body) = call(&gw).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "bad_gateway");
    assert_eq!(body["part"], "user");
    assert_eq!(body["detail"], "status 503");
    assert_eq!(ups[0].hits(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_part_past_its_timeout_is_504() {
    let slow = Behavior::Delay(Duration::from_secs(2));
    let (_ups, gw) = start(slow, Behavior::Echo, ", timeout_ms: 200").await;
    let (status, _, body) = call(&gw).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "gateway_timeout");
    assert_eq!(body["part"], "user");
    gw.stop().await;
}
