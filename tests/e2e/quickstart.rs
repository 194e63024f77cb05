//! The quickstart config (examples/quickstart/gatehouse.yaml) as shipped, with
//! its listener and demo upstreams swapped for test ones: it must load and do
//! what the quickstart script tells people to try.

use http::Method;
use sha2::Digest;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_config_serves_what_the_script_promises() {
    let (blue, green) = (
        Upstream::start("blue", Behavior::Echo).await,
        Upstream::start("green", Behavior::Echo).await,
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/quickstart/gatehouse.yaml");
    let shipped = std::fs::read_to_string(path).unwrap();
    let yaml = shipped
        .replace("listeners:\n  - addr: 127.0.0.1:8080\n", "")
        .replace("plugin_dir: ./plugins\n", "")
        .replace("http://127.0.0.1:9001", &blue.url())
        .replace("http://127.0.0.1:9002", &green.url());
    assert!(
        !yaml.contains("8080") && !yaml.contains("plugin_dir"),
        "quickstart layout changed"
    );
    let names = [
        "rate-limit",
        "jwt-auth",
        "api-key",
        "acl",
        "cors",
        "response-transform",
    ];
    let mut plugins: Vec<(String, std::path::PathBuf)> = names
        .iter()
        .map(|n| (n.to_string(), plugin_path(n)))
        .collect();
    plugins.push(("hello".into(), plugin_path("hello-plugin")));
    let refs: Vec<(&str, &std::path::Path)> = plugins
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_path()))
        .collect();
    let gw = TestGateway::start_with_plugins(&yaml, &refs).await;

    let r = get(&gw.url("/api/orders/42")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["uri"], "/v1/orders/42");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
    let seen = r.json();
    assert_eq!(seen["headers"]["x-hello"], "hello from wasm");

    let r = request(
        Method::OPTIONS,
        &gw.url("/api/orders/42"),
        &[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "GET"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );

    assert_eq!(get(&gw.url("/api/admin/users")).await.status, 401);
    let key = "demo-key-123";
    assert!(yaml.contains(&hex::encode(sha2::Sha256::digest(key))));
    let r = request(
        Method::GET,
        &gw.url("/api/reports/q1"),
        &[("x-api-key", key)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-consumer-id"], "demo");
    assert_eq!(get(&gw.url("/nope")).await.status, 404);
    gw.stop().await;
}
