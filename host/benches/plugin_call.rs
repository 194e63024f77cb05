//! Cost of crossing into a plugin: one `on-request` call of a header-only plugin
//! (with 0 and 50 request headers), a chain of three, and a fresh instance per
//! request against a pooled one. Target: < 5 µs per call.

// Benchmark harness code: criterion macros generate undocumented items.
#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::plugin::PluginRuntime;
use gatehouse::plugin::pool::{Call, Pool};
use support::{attachment, build, exchange};

/// Runs `iters` calls through `pools` in order on one runtime, returning the total time.
fn run_chain(
    rt: &tokio::runtime::Runtime,
    pools: &[Arc<Pool>],
    headers: usize,
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let mut ex = exchange(headers);
        let start = Instant::now();
        for _ in 0..iters {
            for p in pools {
                p.invoke(&mut ex, Call::Request).await.expect("call");
            }
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let wasm = build("tag-a");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = PluginRuntime::new().expect("runtime");
    let compiled = runtime.compile("tag", &wasm).expect("compile");
    let cfg = attachment("tag", "{}");
    let pool = rt
        .block_on(runtime.start_pool(&compiled, &cfg))
        .expect("pool");
    let chain: Vec<Arc<Pool>> = (0..3)
        .map(|_| {
            rt.block_on(runtime.start_pool(&compiled, &cfg))
                .expect("pool")
        })
        .collect();

    let mut g = c.benchmark_group("plugin_call");
    for headers in [0usize, 50] {
        g.bench_with_input(
            BenchmarkId::new("on_request_pooled", headers),
            &headers,
            |b, &h| b.iter_custom(|iters| run_chain(&rt, std::slice::from_ref(&pool), h, iters)),
        );
    }
    g.bench_function("chain_of_3_pooled", |b| {
        b.iter_custom(|iters| run_chain(&rt, &chain, 0, iters))
    });
    g.bench_function("fresh_instance_per_request", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    // A new pool starts (instantiates + inits) one instance, then serves the call.
                    let p = runtime.start_pool(&compiled, &cfg).await.expect("pool");
                    let r = p.invoke(&mut exchange(0), Call::Request).await;
                    r.expect("call");
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
