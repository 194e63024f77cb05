//! Route matching cost at 10, 1,000 and 10,000 routes (mixed exact, param and
//! prefix patterns over several hosts). Target: median < 1 µs at 10,000.

// Benchmark harness code: criterion macros generate undocumented items.
#![allow(missing_docs, clippy::unwrap_used)]

use std::fmt::Write;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::router::{RequestKey, Router};
use http::{HeaderMap, Method};

fn config(n: usize) -> String {
    let mut y = String::from(
        "services:\n  - name: s\n    instances: [{ url: \"http://127.0.0.1:1\" }]\nroutes:\n",
    );
    for i in 0..n {
        let host = if i % 3 == 0 {
            format!(", hosts: [h{}.example.com]", i % 10)
        } else {
            String::new()
        };
        let path = match i % 3 {
            0 => format!("/svc{i}/items"),
            1 => format!("/svc{i}/items/{{id}}/detail"),
            _ => format!("/svc{i}/static/*"),
        };
        let _ = writeln!(
            y,
            "  - {{ id: r{i}, match: {{ path: \"{path}\"{host} }}, upstream: s }}"
        );
    }
    y
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let cfg =
            gatehouse::config::parse(Path::new("bench.yaml"), &config(n)).expect("valid config");
        let router = Router::build(&cfg.routes).expect("router");
        let headers = HeaderMap::new();
        let mid = n / 2;
        let param_path = format!("/svc{}/items/12345/detail", mid - mid % 3 + 1);
        let prefix_path = format!("/svc{}/static/js/app.js", mid - mid % 3 + 2);
        for (kind, path) in [("param", param_path), ("prefix", prefix_path)] {
            let key = RequestKey {
                host: "api.example.com",
                method: &Method::GET,
                path: &path,
                query: None,
                headers: &headers,
            };
            assert!(router.match_request(&key).is_some(), "{path} must match");
            group.bench_with_input(BenchmarkId::new(kind, n), &key, |b, key| {
                b.iter(|| std::hint::black_box(router.match_request(std::hint::black_box(key))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
