//! The admin API as a read-only caller or a racing writer would use it.

use http::Method;
use serde_json::{Value, json};

use crate::observability::{ADMIN, TOKEN};
use crate::support::*;

const READ: &str = "Bearer test-read-token-0123456789";

async fn call(gw: &TestGateway, auth: &str, method: Method, path: &str) -> (u16, Value) {
    let r = request(method, &gw.admin_url(path), &[("authorization", auth)], "").await;
    (
        r.status.as_u16(),
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn config(up: &Upstream) -> String {
    format!(
        "{ADMIN}redis: {{ url: \"redis://app:hunter2-redis@127.0.0.1:1\" }}\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: s\n    plugins:\n      - {{ name: api-key, config: {{ keys_from_consumers: true }} }}\n      - {{ name: jwt-auth, optional: true, config: {{ algorithms: [HS256], secret: \"jwt-secret-that-is-32-bytes-long!!\" }} }}\n",
        up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_sees_no_secrets() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start_with(&config(&up), &["api-key"]).await;
    let (s, _) = call(&gw, TOKEN, Method::POST, "/consumers/alice/keys").await;
    assert_eq!(s, 201);
    for path in [
        "/config",
        "/config/versions/1",
        "/routes/api",
        "/consumers",
        "/consumers/alice",
    ] {
        let (s, v) = call(&gw, READ, Method::GET, path).await;
        assert_eq!(s, 200, "{path}");
        let text = v.to_string();
        for secret in [
            "jwt-secret-that-is-32",
            "hunter2-redis",
            "test-admin-token",
            "sha256:",
        ] {
            assert!(!text.contains(secret), "{path} shows {secret}: {text}");
        }
    }
    let (_, v) = call(&gw, READ, Method::GET, "/config").await;
    assert_eq!(
        v["routes"][0]["plugins"][1]["config"]["secret"],
        "[redacted]"
    );
    // The full token still reads the document as it is (edits round-trip).
    let (_, v) = call(&gw, TOKEN, Method::GET, "/config").await;
    assert!(v.to_string().contains("jwt-secret-that-is-32"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_does_not_bring_back_a_revoked_key() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = start_with(&config(&up), &["api-key"]).await;
    let r = request(
        Method::POST,
        &gw.admin_url("/consumers/alice/keys"),
        &[("authorization", TOKEN)],
        "{}",
    )
    .await;
    let key = r.json()["key"].as_str().unwrap().to_string();
    let id = r.json()["id"].as_str().unwrap().to_string();
    let with_key = async || {
        request(Method::GET, &gw.url("/api"), &[("x-api-key", &key)], "")
            .await
            .status
    };
    assert_eq!(with_key().await, 200);
    // A route edit makes version 2; the key is revoked after it. Rolling
    // back to version 1 (from before the revocation) keeps it revoked.
    let patch = request(
        Method::PATCH,
        &gw.admin_url("/routes/api"),
        &[("authorization", TOKEN)],
        r#"{"match":{"path":"/api"}}"#,
    )
    .await;
    assert_eq!(patch.status, 200);
    let (s, _) = call(
        &gw,
        TOKEN,
        Method::POST,
        &format!("/consumers/alice/keys/{id}/disable"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(with_key().await, 401);
    let (s, v) = call(&gw, TOKEN, Method::POST, "/config/rollback/1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(with_key().await, 401, "the revoked key stays revoked");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attachment_deletes_never_break_the_handler() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let tag = json!({ "name": "testkit", "config": { "mode": "add-header", "name": "x-a", "value": "1" } });
    let yaml = format!(
        "{ADMIN}services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n    plugins: [{tag}, {tag}, {tag}]\n",
        up.url()
    );
    let gw = start_with(&yaml, &["testkit"]).await;
    let url = gw.admin_url("/routes/r/plugins/2");
    let deletes: Vec<_> = (0..8)
        .map(|_| {
            let u = url.clone();
            tokio::spawn(async move {
                request(Method::DELETE, &u, &[("authorization", TOKEN)], "")
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for d in deletes {
        statuses.push(d.await.expect("the handler did not panic"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 404),
        "{statuses:?}"
    );
    let (s, v) = call(&gw, TOKEN, Method::GET, "/routes/r/plugins").await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(2)));
    gw.stop().await;
}
