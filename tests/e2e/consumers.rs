//! Consumers and API keys at scale: the admin API's consumer store (a
//! journal beside the config), keys found by hash through
//! `host.find-credential`, `last_used_at` written in batches, and the
//! config's own `consumers:` beside them.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::observability::{ADMIN, TOKEN};
use crate::support::*;

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        "{ADMIN}consumer_store: {{ flush_interval: 200ms }}\n{extra}services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: s\n    plugins:\n      - {{ name: api-key, config: {{ keys_from_consumers: true }} }}\n",
        up.url()
    )
}

fn sha(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

async fn admin(gw: &TestGateway, method: Method, path: &str, body: &str) -> (u16, Value) {
    let r = request(
        method,
        &gw.admin_url(path),
        &[("authorization", TOKEN)],
        body.to_string(),
    )
    .await;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status.as_u16(), v)
}

async fn with_key(gw: &TestGateway, key: &str) -> crate::support::client::Reply {
    request(Method::GET, &gw.url("/api"), &[("x-api-key", key)], "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_imported_keys_are_found_revoked_stamped_and_kept_across_a_restart() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let mut gw = start_with(&config(&up, ""), &["api-key"]).await;
    let n = 100_000;
    let mut body = String::with_capacity(n * 120);
    for i in 0..n {
        body.push_str(&format!(
            "{{\"consumer\":\"c{i}\",\"hash\":\"sha256:{}\",\"scopes\":[\"read\"]}}\n",
            sha(&format!("key-{i}"))
        ));
    }
    let started = Instant::now();
    let (s, v) = admin(&gw, Method::POST, "/consumers/import", &body).await;
    let imported = started.elapsed();
    assert_eq!((s, &v["imported"]), (200, &Value::from(n)), "{v}");

    for i in [0, 54_321, n - 1] {
        let r = with_key(&gw, &format!("key-{i}")).await;
        assert_eq!(r.status, 200, "key-{i}");
        assert_eq!(up.last().headers["x-consumer-id"], format!("c{i}"));
        assert!(up.last().headers.get("x-api-key").is_none());
    }
    let r = with_key(&gw, &format!("key-{n}")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "invalid API key");

    // Reported, not asserted: the cost of a request among 100,000 keys.
    let started = Instant::now();
    for i in 0..200 {
        assert_eq!(with_key(&gw, &format!("key-{}", i * 499)).await.status, 200);
    }
    eprintln!(
        "consumers: import of {n} keys ({} bytes) took {imported:?}; 200 sequential requests took {:?} each",
        body.len(),
        started.elapsed() / 200
    );

    // Revoking one key touches only that key.
    let id7 = &sha("key-7")[..12];
    let (s, v) = admin(
        &gw,
        Method::POST,
        &format!("/consumers/c7/keys/{id7}/disable"),
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["keys"][0]["enabled"], false);
    let r = with_key(&gw, "key-7").await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error_description"].clone()),
        (401, "API key disabled".into())
    );
    assert_eq!(with_key(&gw, "key-8").await.status, 200);

    // `last_used_at` comes with the next flush (200 ms here), not per request.
    let stamped = eventually(Duration::from_secs(5), async || {
        let (_, v) = admin(&gw, Method::GET, "/consumers/c0", "").await;
        v["keys"][0]["last_used_at"].is_string()
    });
    assert!(stamped.await, "c0's key gets a last_used_at");
    let (_, never) = admin(&gw, Method::GET, "/consumers/c1", "").await;
    assert_eq!(never["keys"][0]["last_used_at"], Value::Null);
    let journal = gw.config_path().with_file_name("gatehouse.consumers.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("\"op\":\"used\""));
    assert!(!text.contains("key-0"), "only hashes are stored");

    let (s, page) = admin(&gw, Method::GET, "/consumers?limit=2&after=c1", "").await;
    assert_eq!(s, 200);
    let names: Vec<_> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, ["c10", "c100"]);
    assert_eq!(
        admin(&gw, Method::GET, "/consumers?limit=0", "").await.0,
        400
    );

    // A repeated hash refuses the whole batch.
    let dup = format!(
        "{{\"consumer\":\"new\",\"hash\":\"sha256:{}\"}}\n{{\"consumer\":\"other\",\"hash\":\"sha256:{}\"}}\n",
        sha("fresh"),
        sha("key-3")
    );
    let (s, v) = admin(&gw, Method::POST, "/consumers/import", &dup).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().starts_with("record 2:"),
        "{v}"
    );
    assert_eq!(admin(&gw, Method::GET, "/consumers/new", "").await.0, 404);

    let started = Instant::now();
    gw.restart().await;
    eprintln!(
        "consumers: restart with {n} keys took {:?}",
        started.elapsed()
    );
    assert_eq!(with_key(&gw, &format!("key-{}", n - 1)).await.status, 200);
    assert_eq!(with_key(&gw, "key-7").await.status, 401, "still revoked");
    let (_, c0) = admin(&gw, Method::GET, "/consumers/c0", "").await;
    assert!(c0["keys"][0]["last_used_at"].is_string(), "{c0}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_consumers_authenticate_and_the_api_leaves_them_to_the_file() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let consumers = format!(
        "consumers:\n  - name: carol\n    keys: [{{ id: k1, hash: \"sha256:{}\", tier: gold }}]\n",
        sha("carol-key")
    );
    let gw = start_with(&config(&up, &consumers), &["api-key"]).await;
    assert_eq!(with_key(&gw, "carol-key").await.status, 200);
    assert_eq!(up.last().headers["x-consumer-id"], "carol");
    let (s, v) = admin(&gw, Method::GET, "/consumers/carol", "").await;
    assert_eq!((s, &v["source"]), (200, &Value::from("config")));
    assert_eq!(v["keys"][0]["tier"], "gold");
    for (method, path) in [
        (Method::POST, "/consumers/carol/keys"),
        (Method::DELETE, "/consumers/carol"),
        (Method::POST, "/consumers/carol/keys/k1/disable"),
    ] {
        let (s, v) = admin(&gw, method, path, "").await;
        assert_eq!(
            (s, &v["error"]),
            (409, &Value::from("defined_in_config")),
            "{path}"
        );
    }
    // An API consumer and a file consumer side by side.
    let (s, v) = admin(&gw, Method::POST, "/consumers/dave/keys", "").await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(with_key(&gw, v["key"].as_str().unwrap()).await.status, 200);
    let (_, list) = admin(&gw, Method::GET, "/consumers", "").await;
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].clone(), c["source"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("carol".into(), "config".into()),
            ("dave".into(), "store".into())
        ]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_consumer_store_stops_the_start_and_names_its_line() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let (dir, path) = crate::support::gateway::prepare_dir(
        &config(&up, ""),
        &[("api-key", &plugin_path("api-key"))],
    );
    let journal = dir.path().join("gatehouse.consumers.jsonl");
    std::fs::write(
        &journal,
        "{\"op\":\"consumer\",\"name\":\"a\"}\n{\"op\":\"rename\"}\n",
    )
    .unwrap();
    let err = match gatehouse::Gateway::start(&path).await {
        Ok(_) => panic!("started on a corrupt consumer store"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with("consumer store: "), "{err}");
    assert!(
        err.contains("gatehouse.consumers.jsonl:2: unknown variant `rename`"),
        "{err}"
    );
}
