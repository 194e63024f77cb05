//! Route matching cost at 10, 1,000 and 10,000 routes (mixed exact, param and
//! prefix patterns over several hosts; one route in 100 a regex, so 100 of
//! them at 10,000). Target: median < 1 µs at 10,000 for the trie's routes;
//! `regex` and `regex_miss` measure a request that reaches the regex tier
//! (matching one, matching none).

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
            _ if i % 100 == 98 => {
                let _ = writeln!(
                    y,
                    "  - {{ id: r{i}, match: {{ path_regex: \"/rx{i}/(?P<id>[0-9]+)/v[0-9]+\" }}, upstream: s }}"
                );
                continue;
            }
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
        let mut cases = vec![("param", param_path), ("prefix", prefix_path)];
        if n >= 100 {
            cases.push(("regex", format!("/rx{}/12345/v2", mid - mid % 100 + 98)));
        }
        for (kind, path) in cases {
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
        // Nothing matches: every tier is searched, the regex sets included.
        let miss = RequestKey {
            host: "api.example.com",
            method: &Method::GET,
            path: "/rx-none/12345/v2",
            query: None,
            headers: &headers,
        };
        assert!(router.match_request(&miss).is_none());
        group.bench_with_input(BenchmarkId::new("regex_miss", n), &miss, |b, key| {
            b.iter(|| std::hint::black_box(router.match_request(std::hint::black_box(key))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
