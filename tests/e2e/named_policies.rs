//! Named policies (`policies:`, `{ policy: name }`, `/policies`) and one
//! plugin attached to many routes at once (`POST /plugins`), end to end.

use http::Method;
use serde_json::{Value, json};

use crate::admin::call as admin;
use crate::observability::ADMIN;
use crate::support::*;

fn config(up: &Upstream) -> String {
    format!(
        "{ADMIN}policies:\n  standard-user:\n    name: rate-limit\n    config: {{ limits: [{{ name: per-ip, scope: ip, limit: 2, window: 1m }}] }}\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - {{ id: a, match: {{ path: /a }}, upstream: s, plugins: [{{ policy: standard-user }}] }}\n  - {{ id: b, match: {{ path: /b }}, upstream: s, plugins: [{{ policy: standard-user }}] }}\n  - {{ id: c, match: {{ path: /c }}, upstream: s }}\n",
        up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_policy_limits_each_route_that_names_it_and_an_edit_reaches_them_all() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start_with(&config(&up), &["rate-limit", "testkit"]).await;
    // Each route counts on its own: the policy is a copy per attachment.
    for path in ["/a", "/b"] {
        for i in 0..2 {
            let r = get(&gw.url(path)).await;
            assert_eq!(r.status, 200, "{path} #{i}");
            assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
        }
        assert_eq!(
            get(&gw.url(path)).await.status,
            429,
            "{path} over its limit"
        );
    }
    let (s, v) = admin(&gw, Method::GET, "/policies/standard-user", Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(v["policy"]["name"], "rate-limit");
    assert_eq!(
        v["used_by"],
        json!([{ "route": "a", "index": 0 }, { "route": "b", "index": 0 }])
    );

    // One edit of the policy is one version, in force on both routes.
    let edited = json!({ "name": "rate-limit", "config": { "limits": [{ "name": "per-ip", "scope": "ip", "limit": 50, "window": "1m" }] } });
    let (s, v) = admin(&gw, Method::PUT, "/policies/standard-user", edited).await;
    assert_eq!(s, 200, "{v}");
    for path in ["/a", "/b"] {
        assert_eq!(
            get(&gw.url(path)).await.header("x-ratelimit-limit"),
            Some("50"),
            "{path}"
        );
    }
    // A bad policy is refused whole, and the good one keeps serving.
    let bad = json!({ "name": "rate-limit", "on_error": "sometimes" });
    let (s, v) = admin(&gw, Method::PUT, "/policies/standard-user", bad).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["errors"][0]["path"], "policies.standard-user.on_error");
    assert_eq!(
        get(&gw.url("/a")).await.header("x-ratelimit-limit"),
        Some("50")
    );
    // A policy still named cannot go.
    let (s, v) = admin(&gw, Method::DELETE, "/policies/standard-user", Value::Null).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["errors"][0]["path"], "routes[0].plugins[0].policy");
    let (_, all) = admin(&gw, Method::GET, "/policies", Value::Null).await;
    assert!(all.get("standard-user").is_some());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_plugins_attaches_one_plugin_or_policy_to_many_routes_in_one_version() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start_with(&config(&up), &["rate-limit", "testkit"]).await;
    let (_, before) = admin(&gw, Method::GET, "/config/versions", Value::Null).await;
    let tag = json!({ "routes": ["a", "c"], "name": "testkit", "config": { "mode": "add-header", "name": "x-tagged", "value": "yes" } });
    let (s, v) = admin(&gw, Method::POST, "/plugins", tag).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["attached"], 2);
    let (_, after) = admin(&gw, Method::GET, "/config/versions", Value::Null).await;
    assert_eq!(
        after.as_array().unwrap().len(),
        before.as_array().unwrap().len() + 1
    );
    for path in ["/a", "/c"] {
        assert_eq!(get(&gw.url(path)).await.status, 200);
        assert_eq!(up.last().headers["x-tagged"], "yes", "{path}");
    }
    get(&gw.url("/b")).await;
    assert!(
        up.last().headers.get("x-tagged").is_none(),
        "b was not listed"
    );

    // A policy by name, to a route that had none.
    let (s, v) = admin(
        &gw,
        Method::POST,
        "/plugins",
        json!({ "routes": ["c"], "policy": "standard-user" }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        get(&gw.url("/c")).await.header("x-ratelimit-limit"),
        Some("2")
    );

    // An unknown route or policy changes nothing.
    let (s, _) = admin(
        &gw,
        Method::POST,
        "/plugins",
        json!({ "routes": ["a", "nope"], "name": "testkit" }),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = admin(
        &gw,
        Method::POST,
        "/plugins",
        json!({ "routes": ["b"], "policy": "gold" }),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["errors"][0]["path"], "routes[1].plugins[1].policy");
    let (s, _) = admin(&gw, Method::POST, "/plugins", json!({ "name": "testkit" })).await;
    assert_eq!(s, 400);
    let (_, routes) = admin(&gw, Method::GET, "/routes/b/plugins", Value::Null).await;
    assert_eq!(routes.as_array().unwrap().len(), 1);
    gw.stop().await;
}
