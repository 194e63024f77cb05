//! Live plugin traces (`/plugins/{name}/trace`): bounded, redacted, and
//! turned into a `gatehouse plugin test` case file that passes.

use http::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::admin::call;
use crate::observability::ADMIN;
use crate::support::*;

const READ: &str = "Bearer test-read-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_records_the_next_calls_redacted_and_becomes_passing_cases() {
    let up = Upstream::start("up", Behavior::Echo).await;
    let hash = hex::encode(Sha256::digest(b"s3cret"));
    let yaml = format!(
        "{ADMIN}services:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: s\n    plugins:\n      - {{ name: api-key, config: {{ keys_from_consumers: true, keys: [{{ hash: \"sha256:{hash}\", consumer: alice, id: laptop }}] }} }}\n",
        up.url()
    );
    let gw = start_with(&yaml, &["api-key"]).await;
    let send = async |key: &str| {
        request(
            Method::GET,
            &gw.url("/api?token=t0p&x=1"),
            &[("x-api-key", key), ("authorization", "Bearer private")],
            "",
        )
        .await
        .status
        .as_u16()
    };
    // Not tracing: nothing is kept.
    assert_eq!(send("s3cret").await, 200);
    assert_eq!(
        call(&gw, Method::GET, "/plugins/api-key/trace", Value::Null)
            .await
            .0,
        404
    );
    assert_eq!(
        call(&gw, Method::POST, "/plugins/nope/trace", Value::Null)
            .await
            .0,
        404
    );
    let (s, v) = call(
        &gw,
        Method::POST,
        "/plugins/api-key/trace",
        json!({ "count": 200 }),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    let (s, v) = call(
        &gw,
        Method::POST,
        "/plugins/api-key/trace",
        json!({ "count": 3, "seconds": 60 }),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (
            send("s3cret").await,
            send("s3cret").await,
            send("wrong").await
        ),
        (200, 200, 401)
    );
    assert_eq!(
        send("s3cret").await,
        200,
        "past the count: served, not recorded"
    );

    let (s, t) = call(&gw, Method::GET, "/plugins/api-key/trace", Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(
        (t["recorded"].clone(), t["active"].clone()),
        (json!(3), json!(false))
    );
    let first = &t["records"][0];
    assert_eq!(first["hook"], "on-request");
    assert_eq!(first["route"], "api");
    assert_eq!(first["outcome"], "continue");
    assert_eq!(
        first["request"]["headers"]["x-api-key"],
        json!(["[redacted]"])
    );
    assert_eq!(
        first["request"]["headers"]["authorization"],
        json!(["[redacted]"])
    );
    assert_eq!(first["request"]["query"], "token=%5Bredacted%5D&x=1");
    assert_eq!(
        first["edits"]["headers_set"]["x-consumer-id"],
        json!(["alice"])
    );
    assert!(
        first["edits"]["headers_removed"]
            .as_array()
            .unwrap()
            .contains(&json!("x-api-key"))
    );
    assert_eq!(first["edits"]["attributes"]["consumer"], "alice");
    assert!(first["memory_bytes"].as_u64().unwrap() > 0);
    let denied = &t["records"][2];
    assert_eq!(denied["outcome"], "respond");
    assert_eq!(denied["answer"]["status"], 401);
    let calls = denied["host_calls"].as_array().unwrap();
    assert!(
        calls[0]
            .as_str()
            .unwrap()
            .starts_with("find-credential sha256="),
        "{calls:?}"
    );
    assert!(!t.to_string().contains("s3cret") && !t.to_string().contains("private"));

    // A read-only token sees no trace.
    let r = request(
        Method::GET,
        &gw.admin_url("/plugins/api-key/trace"),
        &[("authorization", READ)],
        "",
    )
    .await;
    assert_eq!(r.status, 403);

    // The recording as a case file: with the redacted key filled in, it passes.
    let r = request(
        Method::GET,
        &gw.admin_url("/plugins/api-key/trace?format=cases"),
        &[("authorization", crate::observability::TOKEN)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let recorded = r.text();
    assert_eq!(recorded.matches("name: recorded").count(), 3, "{recorded}");
    let mut filled = String::new();
    for (i, part) in recorded.split("x-api-key: '[redacted]'").enumerate() {
        if i > 0 {
            filled.push_str(if i == 3 {
                "x-api-key: wrong"
            } else {
                "x-api-key: s3cret"
            });
        }
        filled.push_str(part);
    }
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("recorded.yaml");
    std::fs::write(&cases, &filled).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["plugin", "test"])
        .arg(plugin_path("api-key"))
        .arg("--cases")
        .arg(&cases)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{filled}");
    assert!(report.ends_with("3 passed, 0 failed\n"), "{report}");

    let (s, _) = call(&gw, Method::DELETE, "/plugins/api-key/trace", Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(
        call(&gw, Method::GET, "/plugins/api-key/trace", Value::Null)
            .await
            .0,
        404
    );
    gw.stop().await;
}
