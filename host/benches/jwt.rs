//! jwt-auth's cost per request inside Wasm next to the same verification done
//! natively with jsonwebtoken, for HS256, RS256, ES256 (and ES384, EdDSA);
//! `wasm` verifies every time (cache off), `wasm-cached` is a token seen before.
//! The bar: Wasm at most 3× native, or verification moves to the host.

// Benchmark harness code: criterion macros generate undocumented items.
#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::plugin::pool::{Call, Outcome};
use gatehouse::plugin::{PluginRuntime, RequestAction};
use http::HeaderValue;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use support::{attachment, build, exchange};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/jwt")
            .join(name),
    )
    .unwrap()
}

/// (signing key, verifying key, the key's place in the plugin config).
fn keys(alg: Algorithm) -> (EncodingKey, DecodingKey, serde_json::Value) {
    let pem = |f: &str| fixture(f);
    match alg {
        Algorithm::HS256 => (
            EncodingKey::from_secret(SECRET.as_bytes()),
            DecodingKey::from_secret(SECRET.as_bytes()),
            serde_json::json!({ "secret": SECRET }),
        ),
        Algorithm::RS256 => (
            EncodingKey::from_rsa_pem(pem("rsa.key").as_bytes()).unwrap(),
            DecodingKey::from_rsa_pem(pem("rsa.pub").as_bytes()).unwrap(),
            serde_json::json!({ "public_key": pem("rsa.pub") }),
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(pem("ec256.key").as_bytes()).unwrap(),
            DecodingKey::from_ec_pem(pem("ec256.pub").as_bytes()).unwrap(),
            serde_json::json!({ "public_key": pem("ec256.pub") }),
        ),
        Algorithm::ES384 => (
            EncodingKey::from_ec_pem(pem("ec384.key").as_bytes()).unwrap(),
            DecodingKey::from_ec_pem(pem("ec384.pub").as_bytes()).unwrap(),
            serde_json::json!({ "public_key": pem("ec384.pub") }),
        ),
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(pem("ed25519.key").as_bytes()).unwrap(),
            DecodingKey::from_ed_pem(pem("ed25519.pub").as_bytes()).unwrap(),
            serde_json::json!({ "public_key": pem("ed25519.pub") }),
        ),
        other => panic!("no bench key for {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let wasm = build("jwt-auth");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = PluginRuntime::new().expect("runtime");
    let compiled = runtime.compile("jwt-auth", &wasm).expect("compile");
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({ "sub": "alice", "exp": exp });
    let mut g = c.benchmark_group("jwt_verify");
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let (enc, dec, key) = keys(alg);
        let token = encode(&Header::new(alg), &claims, &enc).unwrap();
        let validation = Validation::new(alg);
        g.bench_with_input(
            BenchmarkId::new("native", format!("{alg:?}")),
            &(),
            |b, _| b.iter(|| decode::<serde_json::Value>(&token, &dec, &validation).unwrap()),
        );
        let mut config = key;
        config["algorithms"] = serde_json::json!([format!("{alg:?}")]);
        let bearer = HeaderValue::try_from(format!("Bearer {token}")).unwrap();
        // Verification itself (cache off), then a token seen before (the default).
        for (label, cache_size) in [("wasm", 0), ("wasm-cached", 100)] {
            config["cache_size"] = serde_json::json!(cache_size);
            let cfg = attachment("jwt-auth", &config.to_string());
            let pool = rt
                .block_on(runtime.start_pool(&compiled, &cfg))
                .expect("pool");
            g.bench_with_input(BenchmarkId::new(label, format!("{alg:?}")), &(), |b, _| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let mut ex = exchange(0);
                            ex.req.headers.insert("authorization", bearer.clone());
                            let r = pool.invoke(&mut ex, Call::Request).await;
                            match r.expect("call") {
                                Outcome::Request(RequestAction::Continue) => {}
                                other => panic!("{alg:?}: token refused: {other:?}"),
                            }
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
