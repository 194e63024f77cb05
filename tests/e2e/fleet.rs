//! A fleet: several `gatehouse run --bootstrap` processes serving one config
//! from a real etcd cluster. Writes on any node reach every node; etcd
//! elections and outages do not stop serving; a node restarted while etcd is
//! down starts from its local copy; concurrent writers never lose an edit;
//! a pushed plugin reaches every node, a corrupt one none.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sha2::Digest;

use crate::support::fleet::{FleetNode, TOKEN, cli, document, push_config};
use crate::support::{
    Behavior, DnsServer, EtcdCluster, Load, Upstream, eventually, get, plugin_path, request,
};

fn auth() -> (&'static str, String) {
    ("authorization", format!("Bearer {TOKEN}"))
}

/// `POST /routes` on `node`: route `id` serving `path` from `up`.
async fn add_route(node: &FleetNode, id: &str, path: &str) -> crate::support::client::Reply {
    let (k, v) = auth();
    let body = json!({ "id": id, "match": { "path": path }, "upstream": "up" });
    request(
        Method::POST,
        &node.admin_url("/routes"),
        &[(k, &v), ("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

async fn admin_get(node: &FleetNode, path: &str) -> Value {
    let (k, v) = auth();
    request(Method::GET, &node.admin_url(path), &[(k, &v)], "")
        .await
        .json()
}

/// Waits until every node answers `path` with 200; returns how long it took.
async fn converged(nodes: &[&FleetNode], path: &str, within: Duration) -> Duration {
    let started = Instant::now();
    for n in nodes {
        let url = n.url(path);
        let ok = eventually(within, async || get(&url).await.status == 200).await;
        assert!(ok, "node {} does not serve {path} after {within:?}", n.id);
    }
    started.elapsed()
}

fn base(up: &Upstream) -> String {
    document(&format!(
        "services:\n  - name: up\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: v0\n    match: {{ path: /v0 }}\n    upstream: up\n",
        up.url()
    ))
}

/// Whether requests to `url` reach both `a` and `b` within 5 s.
async fn both_take_traffic(url: &str, a: &Upstream, b: &Upstream) -> bool {
    eventually(Duration::from_secs(5), async || {
        for _ in 0..4 {
            get(url).await;
        }
        a.hits() > 0 && b.hits() > 0
    })
    .await
}

/// Whether, within `within`, six requests to `url` (each answered 200) stop
/// reaching `up`.
async fn stops_taking_traffic(url: &str, up: &Upstream, within: Duration) -> bool {
    eventually(within, async || {
        let before = up.hits();
        for _ in 0..6 {
            assert_eq!(get(url).await.status, 200);
        }
        up.hits() == before
    })
    .await
}

/// An etcd cluster of `members`, an echo upstream `up`, a directory for the
/// nodes, and the base config pushed as version 1.
struct Fleet {
    etcd: EtcdCluster,
    eps: String,
    up: Upstream,
    root: tempfile::TempDir,
}

async fn fleet(members: usize) -> Fleet {
    let etcd = EtcdCluster::start(members);
    let eps = etcd.endpoints();
    let up = Upstream::start("up", Behavior::Echo).await;
    let root = tempfile::tempdir().expect("tmp");
    let pushed = push_config(&eps, root.path(), &base(&up));
    assert!(pushed.starts_with("version 1 written"), "{pushed}");
    Fleet {
        etcd,
        eps,
        up,
        root,
    }
}

impl Fleet {
    /// Nodes `node-1` … `node-n`, unlabelled.
    fn nodes(&self, n: usize) -> Vec<FleetNode> {
        (1..=n)
            .map(|i| FleetNode::spawn(self.root.path(), &format!("node-{i}"), &self.eps, &[]))
            .collect()
    }
}

/// `gatehouse plugin push <file> --name <name>`, which must succeed.
fn push_plugin(eps: &str, file: &std::path::Path, name: &str) {
    let out = cli(
        eps,
        &[
            "plugin",
            "push",
            file.to_str().expect("path"),
            "--name",
            name,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds route `id` through `node` until it is accepted or `within` passes
/// (etcd may be electing or coming back); every refusal must be `503`.
async fn write_until_accepted(node: &FleetNode, id: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let r = add_route(node, id, &format!("/{id}")).await;
        match r.status.as_u16() {
            200 => return started.elapsed(),
            503 => {}
            s => panic!("write {id}: {s} {}", r.text()),
        }
        assert!(
            started.elapsed() < within,
            "no write landed within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_on_any_node_reach_every_node_under_load() {
    let f = fleet(3).await;
    let nodes = f.nodes(3);
    let all: Vec<&FleetNode> = nodes.iter().collect();
    converged(&all, "/v0", Duration::from_secs(10)).await;

    let r = add_route(&nodes[0], "v1", "/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    let first = converged(&all, "/v1", Duration::from_secs(10)).await;

    let loads: Vec<Load> = nodes.iter().map(|n| Load::start(n.url("/v0"), 2)).collect();
    let mut slowest = Duration::ZERO;
    for k in 2..22 {
        let writer = &nodes[k % 3];
        let r = add_route(writer, &format!("v{k}"), &format!("/v{k}")).await;
        assert_eq!(r.status, 200, "write {k} on {}: {}", writer.id, r.text());
        slowest = slowest.max(converged(&all, &format!("/v{k}"), Duration::from_secs(10)).await);
    }
    let mut total = (0, 0);
    for l in loads {
        let (ok, failed, first) = l.finish().await;
        assert_eq!(failed, 0, "first failure: {first:?}");
        total = (total.0 + ok, total.1 + failed);
    }
    eprintln!(
        "fleet convergence: first write {first:?}, slowest of 20 under load {slowest:?}; {} requests, {} failed",
        total.0, total.1
    );

    // Every node reports what it serves; none lags.
    let fleet = admin_get(&nodes[2], "/nodes").await;
    assert_eq!(fleet["config_version"], 22, "{fleet}");
    let listed = fleet["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 3, "{fleet}");
    for n in &listed {
        assert_eq!(n["config"]["version"], 22, "{n}");
        assert_eq!(n["lagging"], false, "{n}");
        assert_eq!(n["failed"], false, "{n}");
        assert!(n["requests"].as_u64().unwrap_or(0) > 0, "{n}");
    }
    // The durable history is the fleet's, on every node.
    let versions = admin_get(&nodes[1], "/config/versions").await;
    let list = versions.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 22);
    assert_eq!(list[0]["author"], "cli");
    assert_eq!(list[1]["author"], "ops");
    assert_eq!(list[1]["summary"], "routes: +v1");

    // Rolling back to version 1 (through any node) is version 23 everywhere.
    let (k, v) = auth();
    let rb = request(
        Method::POST,
        &nodes[1].admin_url("/config/rollback/1"),
        &[(k, &v)],
        "",
    )
    .await;
    assert_eq!(rb.status, 200, "{}", rb.text());
    assert_eq!(rb.json()["version"], 23);
    for n in &nodes {
        let url = n.url("/v1");
        let gone = eventually(Duration::from_secs(10), async || {
            get(&url).await.status == 404
        })
        .await;
        assert!(gone, "node {} still serves /v1 after the rollback", n.id);
    }

    // A node that stops leaves the registry at once (its lease is revoked).
    let mut nodes = nodes;
    nodes[2].stop();
    let gone = eventually(Duration::from_secs(3), async || {
        admin_get(&nodes[0], "/nodes").await["nodes"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    })
    .await;
    assert!(gone, "a stopped node is still listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_continue_when_the_etcd_leader_dies() {
    let mut f = fleet(3).await;
    let nodes = f.nodes(2);
    let all: Vec<&FleetNode> = nodes.iter().collect();
    converged(&all, "/v0", Duration::from_secs(10)).await;
    let load = Load::start(nodes[1].url("/v0"), 2);
    let leader = f.etcd.leader();
    f.etcd.kill(leader);
    // The write may meet the election; it lands once a new leader is up.
    let landed = write_until_accepted(&nodes[0], "v1", Duration::from_secs(10)).await;
    // A node whose watch ran through the killed member learns it only from
    // the client's keep-alive (5 s interval, 3 s timeout), then reconnects:
    // 4.5-10 s alone here, more under the full suite's load.
    converged(&all, "/v1", Duration::from_secs(20)).await;
    let (ok, failed, first) = load.finish().await;
    assert_eq!(failed, 0, "first failure: {first:?}");
    eprintln!(
        "etcd leader killed: a write landed {landed:?} later; {ok} requests served meanwhile, none failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_serve_through_an_etcd_outage_and_converge_after() {
    let mut f = fleet(1).await;
    let mut nodes = f.nodes(2);
    converged(
        &nodes.iter().collect::<Vec<_>>(),
        "/v0",
        Duration::from_secs(10),
    )
    .await;

    f.etcd.kill_all();
    let disconnected = eventually(Duration::from_secs(10), async || {
        get(&nodes[0].admin_url("/ready")).await.json()["fleet"]["connected"] == false
    })
    .await;
    assert!(disconnected, "node-1 does not notice etcd is gone");
    assert_eq!(get(&nodes[0].url("/v0")).await.status, 200);
    let refused = add_route(&nodes[0], "v1", "/v1").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "etcd_unavailable");

    // A node restarted meanwhile starts from its local copy, and says so.
    nodes[1].kill();
    nodes[1].start();
    assert_eq!(get(&nodes[1].url("/v0")).await.status, 200);
    let ready = get(&nodes[1].admin_url("/ready")).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["fleet"]["stale"], true, "{}", ready.text());
    assert_eq!(ready.json()["fleet"]["version"], 1, "{}", ready.text());

    f.etcd.restart_all();
    let back = Instant::now();
    write_until_accepted(&nodes[0], "v1", Duration::from_secs(15)).await;
    converged(
        &nodes.iter().collect::<Vec<_>>(),
        "/v1",
        Duration::from_secs(15),
    )
    .await;
    let fresh = eventually(Duration::from_secs(10), async || {
        get(&nodes[1].admin_url("/ready")).await.json()["fleet"]["stale"] == false
    })
    .await;
    assert!(fresh, "node-2 still says it serves a stale copy");
    eprintln!(
        "etcd back: fleet converged {:?} after it returned",
        back.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_one_wins_and_nothing_is_lost() {
    let f = fleet(1).await;
    let (eps, up, root) = (&f.eps, &f.up, &f.root);

    // Two writers on the same base: etcd's transaction lets exactly one in.
    let b = gatehouse::fleet::Bootstrap::from_flags(eps, None).expect("flags");
    let store = gatehouse::fleet::Store::connect(&b).await.expect("etcd");
    let (live, _) = store.config().await.expect("read");
    let live = live.expect("pushed");
    let mut one = live.document.clone();
    one["workers"] = json!(1);
    let mut two = live.document.clone();
    two["workers"] = json!(2);
    let (a, b) = tokio::join!(
        store.write_config(one, "a", Some(&live)),
        store.write_config(two, "b", Some(&live))
    );
    let wins = [a.is_ok(), b.is_ok()];
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a };
    assert!(
        matches!(
            loser,
            Err(gatehouse::fleet::FleetError::Conflict {
                base: 1,
                current: 2
            })
        ),
        "{loser:?}"
    );

    // The CLI's --if-version guard refuses a stale push and writes nothing.
    let file = root.path().join("stale.yaml");
    std::fs::write(&file, base(up)).expect("write");
    let out = cli(
        eps,
        &[
            "config",
            "push",
            file.to_str().expect("path"),
            "--if-version",
            "1",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("live version is 2"));
    assert_eq!(
        store.config().await.expect("read").0.map(|r| r.version),
        Some(2)
    );

    // Admin writers on two nodes at once: each gets 200 or 409, and every
    // write that got 200 is in the final config.
    let nodes = f.nodes(2);
    let writes = (0..16).map(|i| {
        let node = &nodes[i % 2];
        async move {
            (
                i,
                add_route(node, &format!("c{i}"), &format!("/c{i}")).await,
            )
        }
    });
    let results = futures_util::future::join_all(writes).await;
    let mut won = Vec::new();
    for (i, r) in &results {
        match r.status.as_u16() {
            200 => won.push(format!("c{i}")),
            409 => assert_eq!(r.json()["error"], "conflict", "{}", r.text()),
            s => panic!("write c{i}: {s} {}", r.text()),
        }
    }
    assert!(!won.is_empty());
    let (live, _) = store.config().await.expect("read");
    let live = live.expect("config");
    let mut ids: Vec<String> = live.document["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .filter(|id| id.starts_with('c'))
        .collect();
    ids.sort();
    won.sort();
    assert_eq!(
        ids, won,
        "the config holds exactly the writes that were accepted"
    );
    assert_eq!(live.version, 2 + won.len() as u64);
    eprintln!(
        "16 concurrent admin writes on 2 nodes: {} accepted, {} got 409",
        won.len(),
        16 - won.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_plugin_reaches_every_node_and_a_corrupt_one_none() {
    let etcd = EtcdCluster::start(1);
    let eps = etcd.endpoints();
    let up = Upstream::start("up", Behavior::Echo).await;
    let root = tempfile::tempdir().expect("tmp");
    let (a, b) = (plugin_path("tag-a"), plugin_path("tag-b"));
    push_plugin(&eps, &a, "tag");
    push_config(
        &eps,
        root.path(),
        &document(&format!(
            "services:\n  - name: up\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: up\n    plugins: [{{ name: tag }}]\n",
            up.url()
        )),
    );
    let nodes: Vec<FleetNode> = (1..=2)
        .map(|i| FleetNode::spawn(root.path(), &format!("node-{i}"), &eps, &[]))
        .collect();
    let tag = async |n: &FleetNode| {
        get(&n.url("/probe")).await.json()["headers"]["x-tag"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    for n in &nodes {
        assert_eq!(
            tag(n).await,
            "a",
            "node {} installed the pushed plugin at start",
            n.id
        );
    }

    let loads: Vec<Load> = nodes
        .iter()
        .map(|n| Load::start(n.url("/load"), 2))
        .collect();
    let (k, v) = auth();
    let bytes = std::fs::read(&b).expect("tag-b");
    let pushed = request(
        Method::PUT,
        &nodes[1].admin_url("/plugins/tag"),
        &[(k, &v)],
        bytes,
    )
    .await;
    assert_eq!(pushed.status, 200, "{}", pushed.text());
    let started = Instant::now();
    for n in &nodes {
        let ok = eventually(Duration::from_secs(15), async || tag(n).await == "b").await;
        assert!(ok, "node {} did not swap to the pushed plugin", n.id);
    }
    let swapped = started.elapsed();
    for l in loads {
        let (ok, failed, first) = l.finish().await;
        assert_eq!(failed, 0, "first failure: {first:?}");
        assert!(ok > 0);
    }
    eprintln!("plugin push: every node swapped within {swapped:?}, no request failed");

    // A record whose blob does not hash to its name is refused on every node.
    let mut client = etcd_client::Client::connect(eps.split(',').collect::<Vec<_>>(), None)
        .await
        .expect("etcd");
    let fake = "00".repeat(32);
    client
        .put(
            format!("/gatehouse/plugins/blobs/{fake}/000000"),
            b"\0asm-not-this".to_vec(),
            None,
        )
        .await
        .expect("put");
    let record =
        json!({ "sha256": fake, "size": 13, "chunks": 1, "at": "now", "author": "mallory" });
    client
        .put("/gatehouse/plugins/names/tag", record.to_string(), None)
        .await
        .expect("put");
    let reported = eventually(Duration::from_secs(10), async || {
        let fleet = admin_get(&nodes[0], "/nodes").await;
        fleet["nodes"].as_array().is_some_and(|list| {
            list.len() == 2
                && list.iter().all(|n| {
                    n["failed"] == true
                        && n["plugin_errors"]["tag"]
                            .as_str()
                            .is_some_and(|e| e.contains("refused"))
                })
        })
    })
    .await;
    assert!(reported, "{}", admin_get(&nodes[0], "/nodes").await);
    for n in &nodes {
        assert_eq!(tag(n).await, "b", "node {} keeps the good version", n.id);
    }
}

/// `POST /config/rollout` on `node`: `document` to the nodes labelled `canary: "true"`.
async fn start_rollout(
    node: &FleetNode,
    document: Value,
    auto: Value,
) -> crate::support::client::Reply {
    let (k, v) = auth();
    let body =
        json!({ "document": document, "labels": { "canary": "true" }, "auto_rollback": auto });
    request(
        Method::POST,
        &node.admin_url("/config/rollout"),
        &[(k, &v), ("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// The fleet's live document, from etcd through `node`.
async fn live_document(node: &FleetNode) -> Value {
    admin_get(node, "/config").await
}

fn with_route(mut doc: Value, id: &str, path: &str, upstream: &str) -> Value {
    if let Some(routes) = doc["routes"].as_array_mut() {
        routes.push(json!({ "id": id, "match": { "path": path }, "upstream": upstream }));
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_reaches_the_canary_first_then_is_promoted_or_rolled_back() {
    let etcd = EtcdCluster::start(1);
    let eps = etcd.endpoints();
    let up = Upstream::start("up", Behavior::Echo).await;
    let broken = Upstream::start("broken", Behavior::Status(500)).await;
    let root = tempfile::tempdir().expect("tmp");
    push_config(
        &eps,
        root.path(),
        &base(&up).replace(
            "services:\n",
            &format!(
                "services:\n  - name: broken\n    instances: [{{ url: \"{}\" }}]\n",
                broken.url()
            ),
        ),
    );
    let canary = FleetNode::spawn(root.path(), "canary-1", &eps, &[("canary", "true")]);
    let others: Vec<FleetNode> = (2..=3)
        .map(|i| {
            FleetNode::spawn(
                root.path(),
                &format!("node-{i}"),
                &eps,
                &[("canary", "false")],
            )
        })
        .collect();
    converged(
        &[&canary, &others[0], &others[1]],
        "/v0",
        Duration::from_secs(10),
    )
    .await;

    // Version 2 (+/v1) goes to the canary only.
    let doc = live_document(&others[0]).await;
    let r = start_rollout(
        &others[0],
        with_route(doc.clone(), "v1", "/v1", "up"),
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    converged(&[&canary], "/v1", Duration::from_secs(10)).await;
    for n in &others {
        assert_eq!(
            get(&n.url("/v1")).await.status,
            404,
            "node {} took the canary's version",
            n.id
        );
    }
    let fleet = admin_get(&canary, "/nodes").await;
    for n in fleet["nodes"].as_array().into_iter().flatten() {
        let is_canary = n["id"] == "canary-1";
        assert_eq!(n["canary"], is_canary, "{n}");
        assert_eq!(n["config"]["version"], if is_canary { 2 } else { 1 }, "{n}");
        assert_eq!(n["lagging"], false, "{n}");
    }
    // No other write while it is under way.
    let refused = add_route(&others[1], "x", "/x").await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.json()["error"], "rollout_active");

    // Promote (CLI): every node serves version 2.
    let out = cli(&eps, &["rollout", "promote"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    converged(
        &[&canary, &others[0], &others[1]],
        "/v1",
        Duration::from_secs(10),
    )
    .await;

    // Version 3 (+/v2), aborted: the canary returns to version 2.
    let doc = live_document(&others[0]).await;
    let r = start_rollout(
        &canary,
        with_route(doc.clone(), "v2", "/v2", "up"),
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    converged(&[&canary], "/v2", Duration::from_secs(10)).await;
    let (k, v) = auth();
    let aborted = request(
        Method::POST,
        &canary.admin_url("/config/rollout/abort"),
        &[(k, &v)],
        "",
    )
    .await;
    assert_eq!(aborted.status, 200, "{}", aborted.text());
    let back = eventually(Duration::from_secs(10), async || {
        get(&canary.url("/v2")).await.status == 404
    })
    .await;
    assert!(back, "the canary still serves the aborted version");
    assert_eq!(get(&canary.url("/v1")).await.status, 200);

    // Version 4 sends /v0 to a broken service with auto-rollback on: the
    // canary's 5xx rate rolls it back without anyone promoting or aborting.
    let mut bad = doc.clone();
    bad["routes"][0]["upstream"] = json!("broken");
    let r = start_rollout(
        &others[0],
        bad,
        json!({ "max_error_rate": 0.2, "window_seconds": 30, "min_requests": 20 }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let started = Instant::now();
    let mut saw_500 = false;
    let rolled_back = eventually(Duration::from_secs(20), async || {
        let status = get(&canary.url("/v0")).await.status;
        saw_500 |= status == 500;
        saw_500 && status == 200
    })
    .await;
    assert!(saw_500, "the canary never served the broken version");
    assert!(rolled_back, "no automatic rollback within 20 s");
    let state = admin_get(&others[1], "/config/rollout").await;
    assert!(state["active"].is_null(), "{state}");
    assert_eq!(state["last"]["outcome"], "rolled_back", "{state}");
    assert_eq!(state["last"]["by"], "auto-rollback", "{state}");
    assert!(
        state["last"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("5xx rate")),
        "{state}"
    );
    for n in &others {
        assert_eq!(
            get(&n.url("/v0")).await.status,
            200,
            "node {} was never affected",
            n.id
        );
    }
    eprintln!(
        "auto-rollback: canary back on the good version {:?} after the rollout started",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_registered_in_etcd_join_and_leave_with_their_leases() {
    let etcd = EtcdCluster::start(1);
    let eps = etcd.endpoints();
    let (a, b) = (
        Upstream::start("a", Behavior::Echo).await,
        Upstream::start("b", Behavior::Echo).await,
    );
    let yaml = format!(
        "services:\n  - name: disc\n    discovery: {{ etcd: {{ prefix: /services/disc/, endpoints: [\"{}\"] }} }}\nroutes:\n  - id: d\n    match: {{ path: /d }}\n    upstream: disc\n",
        eps.split(',').next().expect("endpoint")
    );
    let gw = crate::support::TestGateway::start(&yaml).await;
    // Nothing registered: no instance to send to.
    let none = get(&gw.url("/d")).await;
    assert_eq!(none.status, 503, "{}", none.text());
    assert_eq!(none.json()["error"], "no_healthy_upstream");

    let mut client = etcd_client::Client::connect(eps.split(',').collect::<Vec<_>>(), None)
        .await
        .expect("etcd");
    let lease_a = client.lease_grant(2, None).await.expect("lease").id();
    let lease_b = client.lease_grant(60, None).await.expect("lease").id();
    let put = |lease| Some(etcd_client::PutOptions::new().with_lease(lease));
    let registered = Instant::now();
    client
        .put(
            "/services/disc/a",
            json!({ "url": a.url() }).to_string(),
            put(lease_a),
        )
        .await
        .expect("put");
    client
        .put("/services/disc/b", b.url(), put(lease_b))
        .await
        .expect("put");
    let both = both_take_traffic(&gw.url("/d"), &a, &b).await;
    assert!(
        both,
        "registered instances take no traffic (a {}, b {})",
        a.hits(),
        b.hits()
    );
    let joined = registered.elapsed();

    // Instance a's lease is not kept alive: it expires and a leaves.
    let expired = Instant::now();
    let left = stops_taking_traffic(&gw.url("/d"), &a, Duration::from_secs(10)).await;
    assert!(left, "an instance whose lease expired still takes traffic");
    eprintln!(
        "discovery: two instances took traffic {joined:?} after registering; the one on a 2 s lease (granted at registration) took none {:?} after that",
        expired.elapsed()
    );
    // Only b: nothing more reaches a.
    let hits = a.hits();
    for _ in 0..10 {
        assert_eq!(get(&gw.url("/d")).await.status, 200);
    }
    assert_eq!(a.hits(), hits);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_records_become_instances_and_changes_follow_their_ttl() {
    let (a, b, c) = (
        Upstream::start("a", Behavior::Echo).await,
        Upstream::start("b", Behavior::Echo).await,
        Upstream::start("c", Behavior::Echo).await,
    );
    let port = |u: &Upstream| u.url().rsplit(':').next().expect("port").to_string();
    let srv = |ups: &[&Upstream]| -> Vec<String> {
        let mut r = vec!["--host-record=host.svc.test,127.0.0.1".to_string()];
        r.extend(ups.iter().map(|u| {
            format!(
                "--srv-host=_http._tcp.svc.test,host.svc.test,{},0,1",
                port(u)
            )
        }));
        r
    };
    let mut dns = DnsServer::start(&srv(&[&a, &b]));
    let yaml = format!(
        "services:\n  - name: by-srv\n    discovery: {{ dns: {{ name: _http._tcp.svc.test, type: SRV, refresh: 5s, servers: [\"{0}\"] }} }}\n  - name: by-a\n    discovery: {{ dns: {{ name: host.svc.test, type: A, port: {1}, servers: [\"{0}\"] }} }}\nroutes:\n  - id: srv\n    match: {{ path: /srv }}\n    upstream: by-srv\n  - id: a\n    match: {{ path: /a }}\n    upstream: by-a\n",
        dns.addr(),
        port(&c)
    );
    let gw = crate::support::TestGateway::start(&yaml).await;
    let both = both_take_traffic(&gw.url("/srv"), &a, &b).await;
    assert!(
        both,
        "SRV targets take no traffic (a {}, b {})",
        a.hits(),
        b.hits()
    );
    let via_a = eventually(Duration::from_secs(5), async || {
        get(&gw.url("/a")).await.status == 200
    })
    .await;
    assert!(via_a, "the A record's address takes no traffic");
    assert!(c.hits() > 0);

    // b's record goes away: within the 1 s TTL (+ the next lookup) b takes no more.
    dns.serve(&srv(&[&a]));
    let changed = Instant::now();
    let gone = stops_taking_traffic(&gw.url("/srv"), &b, Duration::from_secs(8)).await;
    assert!(
        gone,
        "an instance whose SRV record went away still takes traffic"
    );
    eprintln!(
        "dns discovery: a removed SRV target stopped taking traffic {:?} after the change (TTL 1 s)",
        changed.elapsed()
    );

    // The DNS server gone: lookups fail and the last list keeps serving.
    drop(dns);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..4 {
        assert_eq!(get(&gw.url("/srv")).await.status, 200);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_keeps_a_pushed_plugin_out_until_the_config_moves_it() {
    use sha2::Digest;
    let etcd = EtcdCluster::start(1);
    let eps = etcd.endpoints();
    let up = Upstream::start("up", Behavior::Echo).await;
    let root = tempfile::tempdir().expect("tmp");
    let (a, b) = (plugin_path("tag-a"), plugin_path("tag-b"));
    let sha =
        |p: &std::path::Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).expect("read")));
    let pinned = |p: &std::path::Path| {
        document(&format!(
            "services:\n  - name: up\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: r\n    match: {{ path: /* }}\n    upstream: up\n    plugins: [{{ name: tag, sha256: \"{}\" }}]\n",
            up.url(),
            sha(p)
        ))
    };
    let push = |p: &std::path::Path| push_plugin(&eps, p, "tag");
    push(&a);
    push_config(&eps, root.path(), &pinned(&a));
    let mut node = FleetNode::spawn(root.path(), "node-1", &eps, &[]);
    let tag = async |n: &FleetNode| {
        get(&n.url("/probe")).await.json()["headers"]["x-tag"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(tag(&node).await, "a");

    // b pushed while a is pinned: not installed, reported, a serves, also after a restart.
    push(&b);
    let reported = eventually(Duration::from_secs(10), async || {
        admin_get(&node, "/nodes").await["nodes"][0]["plugin_errors"]["tag"]
            .as_str()
            .is_some_and(|e| e.contains("pins"))
    })
    .await;
    assert!(reported, "{}", admin_get(&node, "/nodes").await);
    assert_eq!(tag(&node).await, "a");
    node.kill();
    node.start();
    assert_eq!(tag(&node).await, "a", "a restart serves the pinned plugin");

    // The config moves the pin to b: installed and served.
    push_config(&eps, root.path(), &pinned(&b));
    let moved = eventually(Duration::from_secs(10), async || tag(&node).await == "b").await;
    assert!(moved, "moving the pin did not bring in the pushed plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_refused_for_a_missing_plugin_is_applied_once_the_plugin_is_pushed() {
    let f = fleet(1).await;
    let node = &f.nodes(1)[0];
    converged(&[node], "/v0", Duration::from_secs(10)).await;
    // Version 2 attaches a plugin no node has: refused, version 1 keeps serving.
    let mut doc = live_document(node).await;
    doc["routes"][0]["plugins"] = json!([{ "name": "tag" }]);
    let store = gatehouse::fleet::Store::connect(
        &gatehouse::fleet::Bootstrap::from_flags(&f.eps, None).expect("flags"),
    )
    .await
    .expect("etcd");
    let (live, _) = store.config().await.expect("read");
    store
        .write_config(doc, "test", live.as_ref())
        .await
        .expect("write");
    let refused = eventually(Duration::from_secs(10), async || {
        let n = &admin_get(node, "/nodes").await["nodes"][0];
        n["config"]["rejected"]["version"] == 2 && n["lagging"] == true && n["failed"] == true
    })
    .await;
    assert!(refused, "{}", admin_get(node, "/nodes").await);
    let r = get(&node.url("/v0")).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"]["x-tag"].is_null(), "{}", r.text());

    // The plugin pushed: version 2 builds now, without another write.
    let a = plugin_path("tag-a");
    push_plugin(&f.eps, &a, "tag");
    let applied = eventually(Duration::from_secs(15), async || {
        get(&node.url("/v0")).await.json()["headers"]["x-tag"] == "a"
    })
    .await;
    assert!(applied, "{}", admin_get(node, "/nodes").await);
    let n = &admin_get(node, "/nodes").await["nodes"][0];
    assert_eq!(n["config"]["version"], 2, "{n}");
    assert!(n["config"]["rejected"].is_null(), "{n}");
    assert_eq!(n["lagging"], false, "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_in_etcd_reach_every_node_and_outlive_an_etcd_outage() {
    let mut etcd = EtcdCluster::start(1);
    let eps = etcd.endpoints();
    let up = Upstream::start("up", Behavior::Echo).await;
    let root = tempfile::tempdir().expect("tmp");
    push_plugin(&eps, &plugin_path("api-key"), "api-key");
    push_config(
        &eps,
        root.path(),
        &document(&format!(
            "services:\n  - name: up\n    instances: [{{ url: \"{}\" }}]\nroutes:\n  - id: api\n    match: {{ path: /api }}\n    upstream: up\n    plugins: [{{ name: api-key, config: {{ keys_from_consumers: true }} }}]\n",
            up.url()
        )),
    );
    let mut nodes: Vec<FleetNode> = (1..=2)
        .map(|i| FleetNode::spawn(root.path(), &format!("node-{i}"), &eps, &[]))
        .collect();
    let (k, v) = auth();
    let made = request(
        Method::POST,
        &nodes[0].admin_url("/consumers/alice/keys"),
        &[(k, &v)],
        "",
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let key = made.json()["key"].as_str().expect("key").to_string();
    let id = made.json()["id"].as_str().expect("id").to_string();
    let status = async |n: &FleetNode, key: &str| {
        request(Method::GET, &n.url("/api"), &[("x-api-key", key)], "")
            .await
            .status
            .as_u16()
    };
    for n in &nodes {
        let open = eventually(Duration::from_secs(10), async || {
            status(n, &key).await == 200
        });
        assert!(open.await, "node {} accepts the key", n.id);
    }
    assert_eq!(up.last().headers["x-consumer-id"], "alice");
    // No config version for a key: the document stays version 1.
    assert_eq!(
        admin_get(&nodes[1], "/config/versions")
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // 5,000 keys by hash in one import on node 1, found on node 2.
    let n = 5_000;
    let hash = |i: usize| hex::encode(sha2::Sha256::digest(format!("key-{i}").as_bytes()));
    let body: String = (0..n)
        .map(|i| {
            format!(
                "{{\"consumer\":\"c{i}\",\"hash\":\"sha256:{}\"}}\n",
                hash(i)
            )
        })
        .collect();
    let started = Instant::now();
    let imported = request(
        Method::POST,
        &nodes[0].admin_url("/consumers/import"),
        &[(k, &v)],
        body,
    )
    .await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    let last = format!("key-{}", n - 1);
    let arrived = eventually(Duration::from_secs(20), async || {
        status(&nodes[1], &last).await == 200
    });
    assert!(arrived.await, "node-2 has the imported keys");
    eprintln!(
        "fleet: {n} keys imported on node-1 and served by node-2 after {:?}",
        started.elapsed()
    );

    let revoked = request(
        Method::POST,
        &nodes[1].admin_url(&format!("/consumers/alice/keys/{id}/disable")),
        &[(k, &v)],
        "",
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    for n in &nodes {
        let closed = eventually(Duration::from_secs(10), async || {
            status(n, &key).await == 401
        });
        assert!(closed.await, "node {} refuses the revoked key", n.id);
    }

    // A node restarted while etcd is down serves the keys it had.
    etcd.kill_all();
    nodes[1].kill();
    nodes[1].start();
    assert_eq!(
        status(&nodes[1], "key-17").await,
        200,
        "from the local copy"
    );
    assert_eq!(status(&nodes[1], &key).await, 401, "still revoked");
}
