//! TLS end to end with certificates generated per test: SNI selection,
//! renewal without restart, mTLS (required / optional, identity forwarded to
//! plugins and upstream), HTTP/2 by ALPN, HTTPS upstreams (verification,
//! upstream mTLS, h2), and bad TLS config.

use std::time::Duration;

use http::Version;

use crate::support::tls::{TestCa, acceptor, connect, get_over, get_with, served_cn};
use crate::support::{Behavior, TestGateway, Upstream, eventually, plugin_path};

fn tls_listener(certs: &[&crate::support::tls::Issued], extra: &str) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "{{ cert_file: \"{}\", key_file: \"{}\" }}",
                c.cert_file.display(),
                c.key_file.display()
            )
        })
        .collect();
    format!(
        "listeners:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates: [{}]\n{extra}",
        list.join(", ")
    )
}

fn routes_to(url: &str, plugins: &str) -> String {
    format!(
        "services:\n  - name: s\n    instances: [{{ url: \"{url}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: s\n{plugins}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_alpn_picks_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "edge");
    let default = ca.server("default", "default-cert", &["default.test", "127.0.0.1"]);
    let api = ca.server("api", "api-cert", &["api.example.com"]);
    let wild = ca.server("wild", "wildcard-cert", &["*.apps.test"]);
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        tls_listener(&[&default, &api, &wild], ""),
        routes_to(&up.url(), "")
    ))
    .await;
    let h1 = ca.connector(&["http/1.1"], None);
    for (sni, cn) in [
        ("api.example.com", "api-cert"),
        ("shop.apps.test", "wildcard-cert"),
        // An IP address sends no SNI at all: the default certificate.
        ("127.0.0.1", "default-cert"),
    ] {
        let s = connect(&h1, gw.addr, sni)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(served_cn(&s), cn, "SNI {sni}");
    }
    // Names no certificate covers get the default one, which the client then
    // refuses for the name (as a browser would); its error names what was served.
    for sni in ["unknown.test", "deep.shop.apps.test"] {
        let e = connect(&h1, gw.addr, sni).await.expect_err(sni);
        assert!(e.to_string().contains("default.test"), "{sni}: {e}");
    }
    let s = connect(&h1, gw.addr, "api.example.com").await.unwrap();
    let (version, status, body) = get_over(s, "api.example.com", "/h1").await.unwrap();
    assert_eq!((version, status), (Version::HTTP_11, 200));
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    let h2 = ca.connector(&["h2", "http/1.1"], None);
    let s = connect(&h2, gw.addr, "api.example.com").await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, status, _) = get_over(s, "api.example.com", "/h2").await.unwrap();
    assert_eq!((version, status), (Version::HTTP_2, 200));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_restart_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "edge");
    let api = ca.server("api", "api-v1", &["api.example.com"]);
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        tls_listener(&[&api], "      watch_interval: 100ms\n"),
        routes_to(&up.url(), "")
    ))
    .await;
    let client = ca.connector(&["http/1.1"], None);
    let cn = async || served_cn(&connect(&client, gw.addr, "api.example.com").await.unwrap());
    assert_eq!(cn().await, "api-v1");
    // An open connection keeps working across the renewal.
    let open = connect(&client, gw.addr, "api.example.com").await.unwrap();
    ca.server("api", "api-v2", &["api.example.com"]);
    assert!(
        eventually(Duration::from_secs(5), async || cn().await == "api-v2").await,
        "the renewed certificate was not picked up"
    );
    let (_, status, _) = get_over(open, "api.example.com", "/old-conn")
        .await
        .unwrap();
    assert_eq!(status, 200);
    // A broken renewal is refused: the last good certificate keeps serving.
    std::fs::write(&api.cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cn().await, "api-v2");
    let s = connect(&client, gw.addr, "api.example.com").await.unwrap();
    assert_eq!(get_over(s, "api.example.com", "/x").await.unwrap().1, 200);
    gw.stop().await;
}

fn mtls_config(
    ca: &TestCa,
    server: &crate::support::tls::Issued,
    mode: &str,
    up: &Upstream,
) -> String {
    // The first plugin tries to forge the identity; the host ignores it.
    let plugins = "    plugins:\n      - name: testkit\n        config: { mode: set-attr, name: tls.client.subject, value: CN=forged }\n      - name: testkit\n        config: { mode: read-attr, name: tls.client.subject, header: x-seen-subject }\n";
    format!(
        "{}{}",
        tls_listener(
            &[server],
            &format!(
                "      client_auth: {mode}\n      client_ca_file: \"{}\"\n      client_cert_header: x-client-cert\n",
                ca.ca_file.display()
            )
        ),
        routes_to(&up.url(), plugins)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_required_refuses_clients_without_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "edge");
    let other = TestCa::new(dir.path(), "other");
    let server = ca.server("srv", "srv", &["api.example.com"]);
    let alice = ca.client("alice", "alice", "spiffe://test/alice");
    let mallory = other.client("mallory", "mallory", "spiffe://test/mallory");
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start_with_plugins(
        &mtls_config(&ca, &server, "required", &up),
        &[("testkit", &plugin_path("testkit"))],
    )
    .await;
    // With a trusted certificate: served, identity forwarded to the upstream and plugins.
    let s = connect(
        &ca.connector(&["http/1.1"], Some(&alice)),
        gw.addr,
        "api.example.com",
    )
    .await
    .unwrap();
    let (_, status, body) = get_with(
        s,
        "api.example.com",
        "/who",
        &[("x-client-cert", "Subject=\"CN=forged\"")],
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echoed["headers"]["x-client-cert"],
        "Subject=\"CN=alice\";URI=\"spiffe://test/alice\""
    );
    assert_eq!(echoed["headers"]["x-seen-subject"], "CN=alice");
    // Without one, or with one from another CA: no request gets through.
    let before = up.hits();
    for client in [None, Some(&mallory)] {
        let refused = match connect(
            &ca.connector(&["http/1.1"], client),
            gw.addr,
            "api.example.com",
        )
        .await
        {
            Err(_) => true,
            // TLS 1.3 reports the refusal on the first read.
            Ok(s) => get_over(s, "api.example.com", "/x").await.is_err(),
        };
        assert!(
            refused,
            "client {:?} was let in",
            client.map(|c| &c.cert_file)
        );
    }
    assert_eq!(up.hits(), before);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_optional_serves_anonymous_clients_without_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "edge");
    let server = ca.server("srv", "srv", &["api.example.com"]);
    let bob = ca.client("bob", "bob", "spiffe://test/bob");
    let up = Upstream::start("up", Behavior::Echo).await;
    let gw = TestGateway::start_with_plugins(
        &mtls_config(&ca, &server, "optional", &up),
        &[("testkit", &plugin_path("testkit"))],
    )
    .await;
    let s = connect(&ca.connector(&["h2"], None), gw.addr, "api.example.com")
        .await
        .unwrap();
    let (version, status, body) = get_with(
        s,
        "api.example.com",
        "/anon",
        &[("x-client-cert", "Subject=\"CN=forged\"")],
    )
    .await
    .unwrap();
    assert_eq!((version, status), (Version::HTTP_2, 200));
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        echoed["headers"].get("x-client-cert").is_none(),
        "a forged identity was forwarded: {body}"
    );
    assert_eq!(echoed["headers"]["x-seen-subject"], "missing");
    let s = connect(
        &ca.connector(&["h2"], Some(&bob)),
        gw.addr,
        "api.example.com",
    )
    .await
    .unwrap();
    let (_, _, body) = get_over(s, "api.example.com", "/bob").await.unwrap();
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["headers"]["x-seen-subject"], "CN=bob");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_and_may_require_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "upstream");
    let server = ca.server("up", "upstream", &["localhost", "127.0.0.1"]);
    let gw_client = ca.client("gateway", "gateway", "spiffe://test/gateway");
    let plain = Upstream::start_tls("tls-up", Behavior::Echo, acceptor(&server, None)).await;
    let strict = Upstream::start_tls(
        "mtls-up",
        Behavior::Echo,
        acceptor(&server, Some(&ca.ca_file)),
    )
    .await;
    let svc = |name: &str, url: &str, extra: &str| {
        format!("  - name: {name}\n    instances: [{{ url: \"{url}\" }}]\n{extra}")
    };
    let ca_only = format!("    tls: {{ ca_file: \"{}\" }}\n", ca.ca_file.display());
    let with_cert = format!(
        "    tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}\n",
        ca.ca_file.display(),
        gw_client.cert_file.display(),
        gw_client.key_file.display()
    );
    let yaml = format!(
        "services:\n{}{}{}{}{}routes:\n{}",
        svc("verified", &plain.url(), &ca_only),
        svc("system-roots", &plain.url(), ""),
        svc("mtls", &strict.url(), &with_cert),
        svc("mtls-no-cert", &strict.url(), &ca_only),
        svc("h2", &plain.url(), &format!("{ca_only}    protocol: h2\n")),
        ["verified", "system-roots", "mtls", "mtls-no-cert", "h2"]
            .iter()
            .map(|s| format!("  - id: {s}\n    match: {{ path: /{s} }}\n    upstream: {s}\n"))
            .collect::<String>()
    );
    let gw = TestGateway::start(&yaml).await;
    let r = crate::support::get(&gw.url("/verified")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "HTTP/1.1");
    // A certificate from an unknown CA fails verification: 502, nothing sent.
    let r = crate::support::get(&gw.url("/system-roots")).await;
    assert_eq!(r.status, 502);
    assert_eq!(crate::support::get(&gw.url("/mtls")).await.status, 200);
    assert_eq!(
        crate::support::get(&gw.url("/mtls-no-cert")).await.status,
        502
    );
    let r = crate::support::get(&gw.url("/h2")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/2.0");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_are_named_errors_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "edge");
    let a = ca.server("a", "a", &["a.test"]);
    let b = ca.server("b", "b", &["b.test"]);
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let up = Upstream::start("up", Behavior::Echo).await;
    let cert = |c: &std::path::Path, k: &std::path::Path| {
        format!(
            "listeners:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}]\n",
            c.display(),
            k.display()
        )
    };
    let missing = dir.path().join("missing.pem");
    let cases = [
        (cert(&missing, &a.key_file), "missing.pem"),
        (cert(&a.cert_file, &b.key_file), "is not the private key of"),
        (
            cert(&junk, &a.key_file),
            "junk.pem` holds no PEM certificate",
        ),
        (cert(&a.cert_file, &junk), "unusable private key"),
        (
            format!(
                "{}      client_auth: required\n",
                cert(&a.cert_file, &a.key_file)
            ),
            "client_ca_file: required for client certificates",
        ),
        (
            format!(
                "{}      client_auth: sometimes\n      client_ca_file: \"{}\"\n",
                cert(&a.cert_file, &a.key_file),
                ca.ca_file.display()
            ),
            "`sometimes`: expected none, optional or required",
        ),
        (
            format!(
                "{}      client_consumer: {{ from: cn }}\n",
                cert(&a.cert_file, &a.key_file)
            ),
            "client_consumer: needs client_auth optional or required",
        ),
        (
            format!(
                "{}      client_auth: optional\n      client_ca_file: \"{}\"\n      client_consumer: {{ from: serial }}\n",
                cert(&a.cert_file, &a.key_file),
                ca.ca_file.display()
            ),
            "client_consumer.from: `serial`: expected cn, san_uri, san_dns or san_email",
        ),
    ];
    for (listener, expected) in cases {
        let err = TestGateway::try_start(&format!("{listener}{}", routes_to(&up.url(), "")))
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted: {listener}"));
        assert!(err.contains("listeners[0].tls"), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_clients_are_consumers_for_acl_rate_limits_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "edge");
    let server = ca.server("srv", "srv", &["api.example.com"]);
    let alice = ca.client("alice", "alice-cn", "spiffe://test/alice");
    let bob = ca.client("bob", "bob-cn", "spiffe://test/bob");
    let outsider = ca.client("eve", "eve-cn", "spiffe://elsewhere/eve");
    let up = Upstream::start("up", Behavior::Echo).await;
    let listener = tls_listener(
        &[&server],
        &format!(
            "      client_auth: optional\n      client_ca_file: \"{}\"\n      client_consumer: {{ from: san_uri, strip_prefix: \"spiffe://test/\" }}\n",
            ca.ca_file.display()
        ),
    );
    let yaml = format!(
        "{listener}access_log: {{ path: access.log }}\nservices:\n  - name: s\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  \
         - {{ id: acl, match: {{ path: /acl }}, upstream: s, plugins: [{{ name: acl, config: {{ allow_consumers: [alice] }} }}] }}\n  \
         - {{ id: limited, match: {{ path: /limited }}, upstream: s, plugins: [{{ name: rate-limit, config: {{ limits: [{{ name: per-consumer, scope: consumer, limit: 2, window: 1m }}] }} }}] }}\n  \
         - {{ id: plain, match: {{ path: /plain }}, upstream: s }}\n",
        up.url()
    );
    let gw = TestGateway::start_with_plugins(
        &yaml,
        &[
            ("acl", &plugin_path("acl")),
            ("rate-limit", &plugin_path("rate-limit")),
        ],
    )
    .await;
    let status = async |client: Option<&crate::support::tls::Issued>, path: &str| -> u16 {
        let s = connect(
            &ca.connector(&["http/1.1"], client),
            gw.addr,
            "api.example.com",
        )
        .await
        .unwrap();
        get_with(s, "api.example.com", path, &[("x-consumer", "alice")])
            .await
            .unwrap()
            .1
    };
    // acl reads the certificate's consumer as it reads a token's.
    assert_eq!(status(Some(&alice), "/acl").await, 200);
    assert_eq!(status(Some(&bob), "/acl").await, 403);
    assert_eq!(status(None, "/acl").await, 401, "anonymous: no consumer");
    assert_eq!(
        status(Some(&outsider), "/acl").await,
        401,
        "a URI outside the prefix names no consumer"
    );
    // Counters by consumer: alice's two, then 429; bob counts on his own.
    assert_eq!(status(Some(&alice), "/limited").await, 200);
    assert_eq!(status(Some(&alice), "/limited").await, 200);
    assert_eq!(status(Some(&alice), "/limited").await, 429);
    assert_eq!(status(Some(&bob), "/limited").await, 200);
    // A route without plugins still logs who it was.
    assert_eq!(status(Some(&bob), "/plain").await, 200);
    let lines = gw.access_log_lines(9).await;
    assert_eq!(lines.len(), 9);
    let consumers: Vec<_> = lines.iter().map(|l| l["consumer"].clone()).collect();
    assert_eq!(
        consumers,
        [
            "alice", "bob", "null", "null", "alice", "alice", "alice", "bob", "bob"
        ]
        .map(|c| if c == "null" {
            serde_json::Value::Null
        } else {
            c.into()
        })
    );
    gw.stop().await;
}
